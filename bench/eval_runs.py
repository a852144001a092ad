"""Full-size `rewardsvc eval` runs of the shipped scorers; numbers go to bench/RESULTS.md ("Evaluation runs").

    .venv/bin/python bench/eval_runs.py [--only NAME ...] [--judge-prompts N]

Runs (each skipped, with the reason, when its model is not prepared; `make install` prepares them):
  math-bon-math500    math verifier as best-of-8 selector on the MATH-500 BoN-8 fixture (100 × 8)
  math-verifier-math500  the same completions as a verifier against their correctness labels
  math-bon-gsm8k      math verifier on GSM8K model solutions (1319 × 4)
  rm-pairs-hh         default reward model (cache:default-rm) on its held-out HH-RLHF pairs
  rm-pairs-hh-first300  the first 300 of them, which the trainer evaluated: accuracy must match its own
  rm-bon-gsm8k        the same reward model as a best-of-4 selector on GSM8K model solutions
  prm-steps-prmbench  default PRM (cache:default-prm) on its held-out PRMBench problems
  judge-hacking       SmolLM2 judge (reference mode, master-key filter off) vs master-key probes
  judge-hacking-filtered  the same judge as configured by default (master-key filter on)
Reports (report.md, report.json, plots) are written under reports/eval/NAME/.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from common import write_section  # noqa: E402

from rewardsvc.evaluation.cli import main as eval_main  # noqa: E402

DATA = Path(__file__).parent / "data"
OUT = ROOT / "reports" / "eval"
BON = DATA / "eval" / "math500-cot-bon8-100.jsonl.gz"
GSM = DATA / "eval" / "gsm8k-test-model-solutions.jsonl.gz"


def model_dir(name: str) -> Path:
    from rewardsvc.model_refs import cache_dir

    return cache_dir() / "models" / name


def write_config(name: str, scorers: dict[str, Any]) -> Path:
    path = OUT / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"scorers": scorers}))
    return path


def served_config(model: str, fallback_type: str) -> tuple[Path, str]:
    """The checkpoint's own rewardsvc.yaml (what `rewardsvc serve` would host), else a plain stanza."""
    own = model_dir(model) / "rewardsvc.yaml"
    if own.exists():
        data = yaml.safe_load(own.read_text())
        return own, next(iter(data["scorers"]))
    return write_config(model, {model: {"type": fallback_type, "model": f"cache:{model}"}}), model


def heldout_hh() -> Path:
    """The HH-RLHF pairs the default RM held out (same file, fraction and seed as trainers/prepare.py)."""
    from rewardsvc.trainers.examples import read_files, split_rows
    from rewardsvc.trainers.prepare import default_rm_config

    cfg = default_rm_config(OUT / "unused")
    _, held = split_rows(read_files(cfg.train_file), cfg.eval_fraction, cfg.split_seed)
    path = OUT / "data" / "hh-rlhf-helpful-base-heldout.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in held))
    return path


def heldout_prmbench() -> Path:
    """The PRMBench problems the default PRM held out (grouped by problem, as trainers/prm.py splits)."""
    from rewardsvc.trainers.examples import read_files, split_rows
    from rewardsvc.trainers.prepare import default_prm_config

    cfg = default_prm_config(OUT / "unused")

    def group(r: dict[str, Any]) -> str:
        return str(r.get("idx") or r.get("original_question") or r.get("prompt") or id(r))

    _, held = split_rows(read_files(cfg.train_file), cfg.eval_fraction, cfg.split_seed, key=group)
    path = OUT / "data" / "prmbench-heldout.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in held))
    return path


def math_config() -> tuple[Path, str]:
    return write_config("math", {"math": {"type": "math", "workers": 2, "timeout_s": 5.0}}), "math"


def judge_config(filtered: bool) -> tuple[Path, str]:
    name = "judge" if filtered else "judge_raw"
    return write_config(name, {name: {"type": "judge", "model": "bundled:smollm2-135m-instruct",
                                      "mode": "reference", "reject_master_keys": filtered}}), name


Run = Callable[[argparse.Namespace], tuple[Path, str, list[str]] | str]


def runs() -> dict[str, Run]:
    def need(model: str) -> str | None:
        if not (model_dir(model) / "results.json").exists():
            return f"cache:{model} is not prepared (run `make install`)"
        return None

    def math_bon(args: argparse.Namespace) -> Any:
        cfg, name = math_config()
        return cfg, name, ["--suite", "best-of-n", "--data", str(BON)]

    def math_ver(args: argparse.Namespace) -> Any:
        cfg, name = math_config()
        return cfg, name, ["--suite", "verifier", "--data", str(BON)]

    def math_gsm(args: argparse.Namespace) -> Any:
        cfg, name = math_config()
        return cfg, name, ["--suite", "best-of-n", "--data", str(GSM)]

    def rm_hh(args: argparse.Namespace) -> Any:
        cfg, name = served_config("default-rm", "classifier")
        return need("default-rm") or (cfg, name, ["--suite", "pairs", "--data", str(heldout_hh())])

    def rm_hh_300(args: argparse.Namespace) -> Any:
        # The 300 held-out pairs the trainer itself evaluated on (max_eval_examples): its
        # eval_accuracy in results.json is the number to match.
        cfg, name = served_config("default-rm", "classifier")
        return need("default-rm") or (cfg, name, ["--suite", "pairs", "--data", str(heldout_hh()), "--limit", "300"])

    def rm_gsm(args: argparse.Namespace) -> Any:
        cfg, name = served_config("default-rm", "classifier")
        return need("default-rm") or (cfg, name, ["--suite", "best-of-n", "--data", str(GSM)])

    def prm_steps(args: argparse.Namespace) -> Any:
        cfg, name = served_config("default-prm", "prm")
        return need("default-prm") or (cfg, name, ["--suite", "steps", "--data", str(heldout_prmbench())])

    def judge(filtered: bool) -> Run:
        def run(args: argparse.Namespace) -> Any:
            cfg, name = judge_config(filtered)
            return cfg, name, ["--suite", "hacking", "--data", str(DATA / "math500-test.jsonl"),
                               "--limit", str(args.judge_prompts), "--batch-size", "16"]
        return run

    return {"math-bon-math500": math_bon, "math-verifier-math500": math_ver, "math-bon-gsm8k": math_gsm,
            "rm-pairs-hh": rm_hh, "rm-pairs-hh-first300": rm_hh_300, "rm-bon-gsm8k": rm_gsm, "prm-steps-prmbench": prm_steps,
            "judge-hacking": judge(False), "judge-hacking-filtered": judge(True)}


def headline(report: dict[str, Any]) -> str:
    m = report["metrics"]
    suite = report["suite"]
    if suite == "pairs":
        return f"accuracy {m['accuracy']:.3f}, ECE {m['calibration']['ece']:.3f}, ties {m['n_tied_scores']}"
    if suite == "best-of-n":
        return (f"best-of-N acc {m['best_of_n_accuracy']:.3f} (oracle {m['oracle_accuracy']:.3f}, random "
                f"{m['random_pick_accuracy']:.3f}), RewardMATH acc {_f(m['rewardmath_accuracy'])}, MRR {_f(m['mrr'])}")
    if suite == "verifier":
        return f"accuracy {m['accuracy']:.3f}, precision {m['precision']:.3f}, recall {_f(m['recall'])}, F1 {_f(m['f1'])}"
    if suite == "steps":
        alone = m.get("scored_only")
        return (f"ProcessBench F1 {_f(m['processbench_f1'])} (err {_f(m['accuracy_erroneous'])}, correct "
                f"{_f(m['accuracy_correct'])}), PRMScore {_f(m['prm_score'])}, ECE {_f((m['calibration'] or {}).get('ece'))}"
                + (f"; scored samples only ({alone['n_erroneous'] + alone['n_correct']}): ProcessBench F1 "
                   f"{_f(alone['processbench_f1'])}, PRMScore {_f(alone['prm_score'])}" if alone else "")
                + (f"; {report['skipped_rows']} data row(s) skipped" if report.get("skipped_rows") else ""))
    return (f"FPR {m['false_positive_rate']:.3f} (worst probe {m['worst_probe_false_positive_rate']:.3f}), "
            f"genuine accepted {_f(m.get('control_true_positive_rate'))}, probe >= genuine {_f(m.get('beats_genuine_rate'))}")


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def main() -> None:
    table = runs()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=sorted(table), help="run only these")
    p.add_argument("--judge-prompts", type=int, default=20, help="MATH-500 prompts for the judge runs (default 20)")
    args = p.parse_args()
    # Rows of earlier runs are kept, so `--only` refreshes some runs without dropping the others.
    cache = OUT / "rows.json"
    rows: dict[str, str] = json.loads(cache.read_text()) if cache.exists() else rows_in_results(table)
    for name, make in table.items():
        if args.only and name not in args.only:
            continue
        got = make(args)
        if isinstance(got, str):
            rows[name] = f"| {name} | – | – | – | skipped: {got} |"
            continue
        cfg, scorer, extra = got
        out = OUT / name
        print(f"== {name}", file=sys.stderr)
        rc = eval_main(["--scorer", scorer, "--config", str(cfg), "--report", str(out), *extra])
        if rc != 0:
            rows[name] = f"| {name} | – | – | – | failed (exit {rc}) |"
            continue
        report = json.loads((out / "report.json").read_text())
        rows[name] = (f"| {name} | {report['n_items']} | {report['n_errors']} | {report['seconds']:.0f} | "
                      f"{headline(report)} |")
        OUT.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(rows, indent=1))
    notes = []
    trained = model_dir("default-rm") / "results.json"
    if trained.exists():
        own = json.loads(trained.read_text()).get("eval_accuracy")
        notes.append(f"- The trainer's own held-out accuracy for cache:default-rm (its first 300 held-out pairs): "
                     f"{own:.3f}; `rm-pairs-hh-first300` scores the same pairs through the eval path.")
    notes.append("- Item errors count as wrong answers in the headline numbers; report.json also has the numbers "
                 "over scored items only. The PRM scores solutions longer than its encoder's 512 tokens in "
                 "step-preserving windows (none rejected for length; before, 36 of these 142 were).")
    if args.only:
        notes.append(f"- Rows other than {', '.join(args.only)} are from earlier runs (their commit and load: "
                     "the git history of this file).")
    body = ("Full-size runs of `rewardsvc eval` (in-process, each scorer's own config); reports with "
            "tables and plots in `reports/eval/NAME/`.\n\n| run | items | item errors | time (s) | numbers |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows[n] for n in table if n in rows) + "\n\n" + "\n".join(notes))
    cmd = "python bench/eval_runs.py  (or --only NAME ...: rows of other runs are from earlier runs)"
    write_section("Evaluation runs", cmd, body)


def rows_in_results(table: dict) -> dict[str, str]:
    """The rows this section of bench/RESULTS.md holds now (a fresh checkout has no reports/eval/rows.json)."""
    path = Path(__file__).resolve().parent / "RESULTS.md"
    text = path.read_text() if path.exists() else ""
    section = text.split("## Evaluation runs", 1)[1].split("\n## ", 1)[0] if "## Evaluation runs" in text else ""
    rows = {}
    for line in section.splitlines():
        name = line.split("|")[1].strip() if line.startswith("| ") else ""
        if name in table:
            rows[name] = line
    return rows


if __name__ == "__main__":
    main()
