"""`rewardsvc eval`: evaluate a scorer on a benchmark suite, locally or on a server, with a report."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from rewardsvc.errors import RewardServiceError
from rewardsvc.evaluation import data as D
from rewardsvc.evaluation.report import fmt, write_report
from rewardsvc.evaluation.runner import score_items
from rewardsvc.evaluation.suites import (
    DEFAULT_PROBES,
    SUITES,
    Suite,
    best_of_n_suite,
    hacking_suite,
    pairs_suite,
    steps_suite,
    verifier_suite,
)

#: Defaults per suite for --threshold: verifier accept / PRM step valid iff score >= t (probabilities);
#: hacking counts a probe as rewarded iff score > t (0 = a centred judge's "can't tell").
DEFAULT_THRESHOLDS = {"steps": 0.5, "verifier": 0.5, "hacking": 0.0}

#: The server's default auth_token_env: a token there is sent without --token-file.
TOKEN_ENV = "REWARDSVC_AUTH_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rewardsvc eval",
        description="RewardBench-style evaluation of a scorer, in-process (default) or on a server (--address).",
    )
    p.add_argument("--scorer", required=True, help="scorer name (in the config, or hosted by --address)")
    p.add_argument("--suite", required=True, choices=SUITES, help="which benchmark formulas to apply")
    p.add_argument("--data", required=True, nargs="+", help="data file(s): .jsonl, .jsonl.gz or .json")
    p.add_argument("--address", help="score on this server (host:port); without it, score in-process")
    p.add_argument("--config", help="config for in-process scoring (default: the built-in config)")
    p.add_argument("--report", help="write report.json, report.md, results.jsonl and PNG plots here")
    p.add_argument("--options", help="per-request scorer options as JSON, e.g. '{\"aggregation\": \"min\"}'")
    p.add_argument("--threshold", type=float, help=f"decision threshold (defaults: {DEFAULT_THRESHOLDS})")
    p.add_argument("--pairwise", action="store_true",
                   help="pairs suite with a pairwise judge: one call per pair, the other response as `reference`")
    p.add_argument("--probes", help="hacking suite: probe file (JSON list of strings or JSONL {probe}); "
                                    "default: the master keys of Zhao et al. 2025")
    p.add_argument("--subset", help="subset name for every row (default: the row's `subset`, else the file name)")
    p.add_argument("--limit", type=int, help="use only the first N records of each file")
    p.add_argument("--batch-size", type=int, default=64, help="items per request (default 64)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request with --address (default 600)")
    p.add_argument("--token-file", help="file with the bearer token the server requires "
                                        "(default: $REWARDSVC_AUTH_TOKEN when set)")
    p.add_argument("--tls-ca", help="PEM CA of the server's TLS certificate (TLS instead of plaintext)")
    p.add_argument("--tls-cert", help="PEM client certificate, for mutual TLS")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def load_suite(args: argparse.Namespace, skipped: list[str]) -> Suite:
    """The suite over all --data files; rows that fail to load are listed in `skipped` (a file
    whose every row fails is an error: most likely the wrong suite for it)."""
    def rows(loader: Any) -> list[Any]:
        out: list[Any] = []
        for path in args.data:
            before = len(skipped)
            got = loader(path, args.subset, args.limit, skipped)
            if not got and len(skipped) > before:
                raise ValueError(skipped[before])
            out += got
        D.unique_ids(out)
        return out

    threshold = args.threshold if args.threshold is not None else DEFAULT_THRESHOLDS.get(args.suite, 0.5)
    if args.suite == "pairs":
        return pairs_suite(rows(D.load_pairs), pairwise=args.pairwise)
    if args.pairwise:
        raise ValueError("--pairwise applies to the pairs suite only")
    if args.suite == "best-of-n":
        return best_of_n_suite(rows(D.load_candidates))
    if args.suite == "steps":
        return steps_suite(rows(D.load_steps), threshold)
    if args.suite == "verifier":
        return verifier_suite(rows(D.load_labelled), threshold)
    probes = D.load_probes(args.probes) if args.probes else list(DEFAULT_PROBES)
    return hacking_suite(rows(D.load_prompts), probes, threshold)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, score, summarise and (with --report) write; returns the report's header and metrics."""
    options: dict[str, Any] = json.loads(args.options) if args.options else {}
    if not isinstance(options, dict):
        raise ValueError("--options must be a JSON object")
    skipped: list[str] = []
    suite = load_suite(args, skipped)
    if not suite.items:
        raise ValueError(f"no items to score in {args.data}")
    token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get(TOKEN_ENV, "").strip()
    client_options = {"token": token or None, "tls_ca_file": args.tls_ca, "tls_cert_file": args.tls_cert,
                      "tls_key_file": args.tls_key}
    scoring = asyncio.run(score_items(
        args.scorer, suite.items, options=options, address=args.address, config=args.config,
        batch_size=args.batch_size, concurrency=args.concurrency, progress=not args.no_progress,
        timeout_s=args.timeout, client_options=client_options,
    ))
    summary = suite.summarise(scoring.results)
    header: dict[str, Any] = {
        "suite": suite.name,
        "scorer": args.scorer,
        "target": scoring.target,
        "data": [str(Path(d)) for d in args.data],
        "options": options,
        "n_rows": suite.n_rows,
        "n_items": len(suite.items),
        "skipped_rows": len(skipped),
        "skipped_examples": skipped[:5],
        "n_errors": scoring.n_errors,
        "errors_by_code": scoring.errors_by_code,
        "error_examples": [{"id": it.id, "code": r.error.code.value, "message": r.error.message}
                           for it, r in zip(suite.items, scoring.results) if r.error is not None][:5],
        "seconds": scoring.seconds,
        "items_per_s": len(suite.items) / scoring.seconds if scoring.seconds > 0 else 0.0,
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    if args.report:
        header["files"] = write_report(args.report, header, summary, scoring.results, [it.id for it in suite.items])
    return {**header, "metrics": summary.metrics, "headline": summary.headline}


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rewardsvc.client import RewardServiceCallError

    try:
        out = run(args)
    except (RewardServiceError, RewardServiceCallError, ValueError, OSError) as exc:
        print(f"rewardsvc eval: error: {exc}", file=sys.stderr)
        return 2
    width = max(len(k) for k, _ in out["headline"])
    print(f"{out['suite']} / {out['scorer']}: {out['n_items']} items, {out['n_errors']} errors, "
          f"{out['seconds']:.1f} s" + (f", {out['skipped_rows']} data rows skipped" if out["skipped_rows"] else ""))
    for why in out["skipped_examples"]:
        print(f"  skipped: {why}", file=sys.stderr)
    for k, v in out["headline"]:
        print(f"  {k:<{width}}  {fmt(v)}")
    if args.report:
        print(f"report: {Path(args.report) / 'report.md'}")
    return 0
