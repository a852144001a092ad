"""PRM trainer: solutions graded only by their final answer (outcome_file) label what they can.

A right answer labels every step correct; a wrong one labels its last step wrong and leaves the
steps before it without a label (-100: no loss), since nobody knows where the error started.
"""

from __future__ import annotations

from pathlib import Path

from rewardsvc.model_refs import resolve_model_path
from rewardsvc.trainers.prm import PRMConfig, PRMTask


def test_outcome_graded_solutions_label_only_what_the_grade_says(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    task = PRMTask(PRMConfig(output_dir=str(tmp_path), max_length=512))
    task.tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("bundled:all-minilm-l6-v2"))
    rows = [
        {"prompt": "What is 2 + 3?", "response": "2 + 3 = <<2+3=5>>5\nA: 5", "verdict": "yes"},
        {"prompt": "What is 6 * 7?", "response": "6 * 7 = 48\nSo it is 48\nA: 48", "verdict": "no"},
        {"prompt": "Half of 10?", "response": "10 / 2 = 5", "label": True},
    ]
    right, wrong, single = task._encode_outcomes(rows)
    assert right.labels == [True, True] and single.labels == [True]
    assert wrong.labels == [None, None, False]
    assert "<<" not in task.tokenizer.decode(right.ids), "GSM8K calculator annotations are removed"
    batch = task.collate([right, wrong])
    labels = batch["labels"]
    assert labels[0, right.positions].tolist() == [1, 1]
    assert labels[1, wrong.positions].tolist() == [-100, -100, 0]
    assert int((labels != -100).sum()) == 3
