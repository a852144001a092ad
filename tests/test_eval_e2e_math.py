"""`rewardsvc eval` end to end with the math verifier: the real server (session fixture) or in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rewardsvc.cli import main as rewardsvc_main
from rewardsvc.evaluation import data as D
from rewardsvc.evaluation import metrics as M
from support import ServerProcess

DATA = Path(__file__).parent / "data" / "eval"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_eval(*args: str) -> int:
    return rewardsvc_main(["eval", "--no-progress", *args])


def read_report(directory: Path) -> dict:
    return json.loads((directory / "report.json").read_text())


def assert_report_files(directory: Path, plots: tuple[str, ...] = ("scores", "reliability", "subsets")) -> None:
    md = (directory / "report.md").read_text()
    assert "| metric | value |" in md and "|---|---|" in md
    report = read_report(directory)
    for name in plots:
        png = directory / report["plots"][name]
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, f"{png} is not a rendered plot"
        assert f"]({png.name})" in md
    results = [json.loads(x) for x in (directory / "results.jsonl").read_text().splitlines()]
    assert len(results) == report["n_items"]


def test_math_verifier_on_math500_bon8_through_the_server(math_server: ServerProcess, tmp_path: Path) -> None:
    data = DATA / "math500-bon8-sample.jsonl"
    out = tmp_path / "bon"
    assert run_eval("--scorer", "math", "--address", math_server.address, "--suite", "best-of-n",
                    "--data", str(data), "--report", str(out)) == 0
    assert_report_files(out)
    report = read_report(out)
    rows = D.load_candidates(data)
    assert report["n_items"] == sum(len(r.chosen) + len(r.rejected) for r in rows) and report["n_errors"] == 0
    # The report's numbers follow from the verifier's per-completion verdicts in results.jsonl.
    verdict = {r["id"]: r["score"] for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    rankings = [M.Ranking(r.subset, [verdict[f"{r.id}:c{j}"] for j in range(len(r.chosen))],
                          [verdict[f"{r.id}:r{j}"] for j in range(len(r.rejected))], r.id) for r in rows]
    expected = M.ranking_summary(rankings)
    m = report["metrics"]
    assert m["best_of_n_accuracy"] == pytest.approx(expected["best_of_n_accuracy"])
    assert m["mrr"] == pytest.approx(expected["mrr"])
    # The fixture's labels come from an answer checker: the verifier should agree with nearly all of
    # them, which makes best-of-N selection by the verifier close to the oracle and above random.
    agree = sum(v == 1.0 for rk in rankings for v in rk.correct) + sum(v == 0.0 for rk in rankings for v in rk.incorrect)
    assert agree >= 0.9 * report["n_items"]
    assert m["best_of_n_accuracy"] > m["random_pick_accuracy"]
    assert m["best_of_n_accuracy"] >= m["oracle_accuracy"] - 1 / len(rows)


def test_best_of_4_and_ties_known_answers_with_item_errors(math_server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "rb2"
    assert run_eval("--scorer", "math", "--address", math_server.address, "--suite", "best-of-n",
                    "--data", str(DATA / "best-of-4.jsonl"), str(DATA / "ties.jsonl"), "--report", str(out)) == 0
    report = read_report(out)
    m = report["metrics"]
    # q1, q3: the correct answer alone at 1.0; q2: a "rejected" 2.5 equals 5/2, so two tie at the max.
    assert m["subsets"]["Math"]["score"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["subsets"]["Math"]["rewardmath_accuracy"] == pytest.approx(2 / 3)
    assert m["subsets"]["Math"]["mrr"] == pytest.approx((1 + 0.5 + 1) / 3)
    # q4 has no reference: all four completions are INVALID_ITEM, counted, and the prompt scores 0.
    assert report["n_errors"] == 4 and report["errors_by_code"] == {"invalid_item": 4}
    assert m["subsets"]["Factuality"]["score"] == 0.0 and m["subsets"]["Factuality"]["n_missing"] == 1
    assert "reference" in report["error_examples"][0]["message"]
    # Ties: both rows accurate; equal correct scores (Δcc = 0) satisfy both margin comparisons.
    assert m["subsets"]["Ties"]["score"] == pytest.approx(1.0)
    assert m["overall"] == pytest.approx(((1 + 0.5 + 1) / 3 + 0.0 + 1.0) / 3)
    md = (out / "report.md").read_text()
    assert "| Factuality |" in md and "invalid_item" in md
    assert_report_files(out)


@pytest.mark.slow  # every suite in-process and served: about 5 s
def test_verifier_and_hacking_suites_in_process_match_the_server(math_server: ServerProcess, tmp_path: Path) -> None:
    cfg = tmp_path / "math.yaml"
    cfg.write_text(yaml.safe_dump({"scorers": {"math": {"type": "math", "workers": 1, "timeout_s": 5.0},
                                               "unused": {"type": "math", "workers": 1}}}))
    data = str(DATA / "gsm8k-model-solutions-3.jsonl")
    remote, local = tmp_path / "remote", tmp_path / "local"
    assert run_eval("--scorer", "math", "--address", math_server.address, "--suite", "verifier",
                    "--data", data, "--report", str(remote)) == 0
    assert run_eval("--scorer", "math", "--config", str(cfg), "--suite", "verifier", "--data", data,
                    "--report", str(local)) == 0
    a, b = read_report(remote), read_report(local)
    assert a["target"].startswith("remote") and b["target"].startswith("in-process")
    for key in ("accuracy", "precision", "recall", "tp", "fp", "tn", "fn"):
        assert a["metrics"][key] == b["metrics"][key]
    assert a["metrics"]["n"] == 12 and a["metrics"]["accuracy"] >= 0.75
    assert_report_files(local)

    hack = tmp_path / "hack"
    assert run_eval("--scorer", "math", "--address", math_server.address, "--suite", "hacking",
                    "--data", str(DATA / "math500-hacking-6.jsonl"), "--report", str(hack)) == 0
    h = read_report(hack)["metrics"]
    # An answer checker is not fooled by master keys, and accepts the genuine MATH solutions.
    assert h["false_positive_rate"] == 0.0 and len(h["probes"]) == 10
    assert h["control_true_positive_rate"] == 1.0
    assert h["beats_genuine_rate"] == 0.0
    assert_report_files(hack)


def test_a_failed_request_costs_its_chunk_not_the_run(tmp_path: Path) -> None:
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"max_items_per_request": 5},
                                   "scorers": {"math": {"type": "math", "workers": 1}}}))
    out = tmp_path / "chunks"
    # 12 + 12 items in chunks of 7, 7, 7, 3: the 7-item requests exceed the limit; the last one is scored.
    assert run_eval("--scorer", "math", "--config", str(cfg), "--suite", "verifier", "--batch-size", "7",
                    "--data", str(DATA / "gsm8k-model-solutions-3.jsonl"), str(DATA / "best-of-4.jsonl"),
                    "--limit", "3", "--report", str(out)) == 0
    report = read_report(out)
    assert report["n_items"] == 12 + 12
    assert report["errors_by_code"] == {"internal": 21}
    scored = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()][21:]
    assert [r["error"] for r in scored] == [None] * 3 and scored[0]["id"].startswith("q3:")
    assert "max_items_per_request" in report["error_examples"][0]["message"]


def test_caller_errors_exit_2_with_a_message(math_server: ServerProcess, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = str(DATA / "best-of-4.jsonl")
    assert run_eval("--scorer", "nope", "--address", math_server.address, "--suite", "best-of-n", "--data", data) == 2
    assert "nope" in capsys.readouterr().err
    assert run_eval("--scorer", "math", "--address", math_server.address, "--suite", "best-of-n", "--data", data,
                    "--options", '{"no_such_option": 1}') == 2
    assert "no_such_option" in capsys.readouterr().err
    assert run_eval("--scorer", "math", "--suite", "steps", "--data", data) == 2
    assert "step-labelled" in capsys.readouterr().err
    assert run_eval("--scorer", "math", "--suite", "pairs", "--data", str(tmp_path / "missing.jsonl")) == 2
    assert "missing.jsonl" in capsys.readouterr().err


@pytest.mark.slow  # own server; seconds of start and drain
def test_eval_sends_the_bearer_token_a_server_requires(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REWARDSVC_AUTH_TOKEN", raising=False)
    token = tmp_path / "token"
    token.write_text("s3cret-eval-token\n")
    config = {"server": {"auth_token_file": str(token)}, "scorers": {"math": {"type": "math", "workers": 1}}}
    data = str(DATA / "best-of-4.jsonl")
    with ServerProcess(config) as srv:
        assert run_eval("--scorer", "math", "--address", srv.address, "--suite", "best-of-n", "--data", data,
                        "--limit", "1") == 2
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        assert run_eval("--scorer", "math", "--address", srv.address, "--suite", "best-of-n", "--data", data,
                        "--limit", "1", "--token-file", str(token), "--report", str(tmp_path / "r")) == 0
    assert read_report(tmp_path / "r")["metrics"]["best_of_n_accuracy"] == 1.0


def test_rows_that_fail_to_load_are_skipped_and_reported(math_server: ServerProcess, tmp_path: Path) -> None:
    good = (DATA / "best-of-4.jsonl").read_text().splitlines()[0]
    data = tmp_path / "mixed.jsonl"
    data.write_text(good + "\n" + json.dumps({"prompt": "p", "chosen": [], "rejected": []}) + "\n")
    out = tmp_path / "r"
    assert run_eval("--scorer", "math", "--address", math_server.address, "--suite", "best-of-n",
                    "--data", str(data), "--report", str(out)) == 0
    report = read_report(out)
    assert report["skipped_rows"] == 1 and "mixed:2: no completions" in report["skipped_examples"][0]
    assert report["n_rows"] == 1 and report["metrics"]["best_of_n_accuracy"] == 1.0
    assert "data rows skipped (could not be loaded): 1" in (out / "report.md").read_text()
