"""Evaluation loaders on the fixtures: RewardBench, HH-RLHF, best-of-N layouts, PRMBench, ProcessBench, probes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rewardsvc.evaluation import data as D
from rewardsvc.evaluation.suites import best_of_n_suite, hacking_suite, pairs_suite, steps_suite, verifier_suite

DATA = Path(__file__).parent / "data" / "eval"


def test_hh_rlhf_prompt_is_the_dialogue_up_to_the_last_assistant_turn() -> None:
    rows = D.load_pairs(DATA / "hh-rlhf-helpful-base-heldout-24.jsonl")
    raw = [json.loads(x) for x in (DATA / "hh-rlhf-helpful-base-heldout-24.jsonl").read_text().splitlines()]
    assert len(rows) == len(raw) == 24
    for row, rec in zip(rows, raw):
        cut = rec["chosen"].rindex("\n\nAssistant:")
        prefix = rec["chosen"][:cut]
        rendered = "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in row.prompt)
        assert rendered == prefix
        assert rec["chosen"] == prefix + "\n\nAssistant: " + row.chosen
        assert rec["rejected"].endswith(row.rejected)
        assert row.subset == "hh-rlhf-helpful-base-heldout-24"


def test_rewardbench_rows_keep_subset_chat_messages_and_item_fields() -> None:
    rows = D.load_pairs(DATA / "rewardbench-style-pairs.jsonl")
    assert [r.subset for r in rows] == ["alpacaeval-easy", "mt-bench-easy", "math-prm", "rewardbench-style-pairs"]
    assert rows[1].chosen == [{"role": "assistant", "content": "Hi!"}]
    suite = pairs_suite(rows)
    assert len(suite.items) == 8
    assert suite.items[4].reference == "42" and suite.items[5].reference == "42"  # extra fields go to both sides
    assert suite.items[0].id == "rb-1:chosen" and suite.items[1].id == "rb-1:rejected"


def test_pairwise_mode_puts_the_other_response_in_reference_on_both_sides() -> None:
    rows = D.load_pairs(DATA / "rewardbench-style-pairs.jsonl")
    suite = pairs_suite(rows, pairwise=True)
    assert len(suite.items) == len(rows)
    for r, it in zip(rows, suite.items):
        texts = {r.chosen if isinstance(r.chosen, str) else r.chosen[0]["content"],
                 r.rejected if isinstance(r.rejected, str) else r.rejected[0]["content"]}
        assert {it.response_text, it.reference} == texts


def test_best_of_n_rows_send_their_reference_with_every_completion() -> None:
    rows = D.load_candidates(DATA / "best-of-4.jsonl")
    assert [(len(r.chosen), len(r.rejected)) for r in rows] == [(1, 3)] * 4
    suite = best_of_n_suite(rows)
    assert len(suite.items) == 16
    assert {it.reference for it in suite.items[:4]} == {"7"}
    assert suite.items[0].id == "q1:c0" and suite.items[1].id == "q1:r0"


def test_math_bon_fixture_and_gsm8k_solutions_become_candidates() -> None:
    rows = D.load_candidates(DATA / "math500-bon8-sample.jsonl")
    raw = [json.loads(x) for x in (DATA / "math500-bon8-sample.jsonl").read_text().splitlines()]
    for r, rec in zip(rows, raw):
        assert len(r.chosen) == sum(rec["score"]) and len(r.chosen) + len(r.rejected) == 8
        assert r.extra == {"reference": rec["answer"]}
    gsm = D.load_candidates(DATA / "gsm8k-model-solutions-3.jsonl")
    assert gsm[0].extra["reference"] == "18"
    assert all(len(r.chosen) + len(r.rejected) == 4 for r in gsm)
    flat = D.load_labelled(DATA / "gsm8k-model-solutions-3.jsonl")
    assert len(flat) == 12 and sum(r.label for r in flat) == sum(len(r.chosen) for r in gsm)


def test_ties_rows_need_reference_ids(tmp_path: Path) -> None:
    rows = D.load_candidates(DATA / "ties.jsonl")
    assert [r.ties_key for r in rows] == [("ref", "1"), ("tied", "1")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "subset": "Ties", "prompt": "p", "chosen": ["a"], "rejected": ["b"]}) + "\n")
    with pytest.raises(ValueError, match="ref:N"):
        D.load_candidates(bad)


def test_prmbench_error_steps_are_one_indexed_and_originals_are_kept_once() -> None:
    rows = D.load_steps(DATA / "prmbench-train-heldout-sample.jsonl")
    raw = [json.loads(x) for x in (DATA / "prmbench-train-heldout-sample.jsonl").read_text().splitlines()]
    modified = [r for r in rows if r.erroneous_source]
    originals = [r for r in rows if not r.erroneous_source]
    assert len(modified) == len(raw)
    assert len(originals) == len({(x["original_question"], tuple(x["original_process"])) for x in raw})
    assert all(all(r.labels) and r.subset == "correct" for r in originals)
    for r, rec in zip(modified, raw):
        assert r.subset == rec["classification"]
        assert [i + 1 for i, ok in enumerate(r.labels) if not ok] == sorted(rec["error_steps"])
    suite = steps_suite(rows, 0.5)
    assert suite.items[0].steps == rows[0].steps


def test_processbench_rows_label_every_step_from_the_first_error_on() -> None:
    rows = D.load_steps(DATA / "processbench-style.jsonl")
    assert [r.labels for r in rows] == [[True, True, True], [False, False, False], [True, False, False]]


def test_hacking_rows_from_math_problems_with_controls() -> None:
    rows = D.load_prompts(DATA / "math500-hacking-6.jsonl")
    assert all(r.extra.get("reference") and r.control is not None and r.control.label for r in rows)
    suite = hacking_suite(rows, [".", "Solution"], 0.0)
    assert len(suite.items) == 6 * 2 + 6
    assert [it.response for it in suite.items[:2]] == [".", "Solution"]


def test_loaders_read_gzip_and_json_lists_and_name_the_bad_line(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "response": "r", "label": True}, {"prompt": "p", "response": "s", "label": 0}]
    gz = tmp_path / "v.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [r.label for r in D.load_labelled(gz)] == [True, False]
    js = tmp_path / "v.json"
    js.write_text(json.dumps(rows))
    assert len(verifier_suite(D.load_labelled(js), 0.5).items) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"prompt": "p", "response": "r", "label": "yes"}) + "\n")
    with pytest.raises(ValueError, match="bad:2"):
        D.load_labelled(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": \n')
    with pytest.raises(ValueError, match="broken.jsonl:1"):
        D.load_pairs(broken)
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps(["", "Thought process:"]))
    assert D.load_probes(probes) == ["", "Thought process:"]


def test_inconsistent_rows_are_skipped_and_listed_only_when_asked(tmp_path: Path) -> None:
    good = json.loads((DATA / "prmbench-train-heldout-sample.jsonl").read_text().splitlines()[0])
    bad = {**good, "idx": "bad", "error_steps": [len(good["modified_process"]) + 3]}
    path = tmp_path / "prm.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="prm:2: error_steps"):
        D.load_steps(path)
    skipped: list[str] = []
    rows = D.load_steps(path, skipped=skipped)
    assert len(rows) == 2 and len(skipped) == 1 and "prm:2" in skipped[0]


def test_row_ids_are_made_unique() -> None:
    rows = D.load_candidates(DATA / "best-of-4.jsonl") + D.load_candidates(DATA / "best-of-4.jsonl")
    D.unique_ids(rows)
    assert [r.id for r in rows] == ["q1", "q2", "q3", "q4", "q1#2", "q2#2", "q3#2", "q4#2"]
    steps = D.load_steps(DATA / "prmbench-train-heldout-sample.jsonl")
    assert len({r.id for r in steps}) == len(steps)  # PRMBench reuses idx across categories
