"""Cross-check: on the same per-example scores, our pairs and best-of-N numbers equal the `rewardbench`
package's own aggregation code.

rewardbench 0.1.4 cannot be imported as a package next to transformers 5 (its model zoo imports
names transformers removed), so its scoring functions are taken from the installed source by name
and compiled alone, with the modules they use; nothing of it is copied into this repository.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardsvc.evaluation import metrics as M

DATA = Path(__file__).parent / "data" / "eval"
SCORING_FUNCTIONS = ("calculate_scores_per_section", "reroll_and_score_dataset", "sample_stats",
                     "process_single_model")


def _rewardbench_dir() -> Path:
    spec = importlib.util.find_spec("rewardbench")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("rewardbench is not installed: `make install` installs rewardbench==0.1.4 (--no-deps)")
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="module")
def rb() -> ModuleType:
    """rewardbench.utils' scoring functions and rewardbench.constants, loaded from the installed files."""
    import numpy as np
    import pandas as pd
    from datasets import Dataset

    root = _rewardbench_dir()
    tree = ast.parse((root / "utils.py").read_text())
    wanted = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in SCORING_FUNCTIONS]
    assert sorted(n.name for n in wanted) == sorted(SCORING_FUNCTIONS), "rewardbench.utils changed"
    module = ModuleType("rewardbench_scoring")
    module.__dict__.update(np=np, pd=pd, math=math, Dataset=Dataset)
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(root / "utils.py"), "exec"), module.__dict__)
    constants = ModuleType("rewardbench_constants")
    exec(compile((root / "constants.py").read_text(), str(root / "constants.py"), "exec"), constants.__dict__)
    module.constants = constants  # type: ignore[attr-defined]
    return module


def test_our_rewardbench_tables_equal_the_package_constants(rb: ModuleType) -> None:
    assert M.REWARDBENCH_SECTIONS == rb.constants.SUBSET_MAPPING
    assert M.REWARDBENCH_EXAMPLE_COUNTS == rb.constants.EXAMPLE_COUNTS


subset_names = st.sampled_from(sorted(M.REWARDBENCH_EXAMPLE_COUNTS))
# Scores on a coarse grid so that ties are common.
grid_score = st.integers(min_value=-3, max_value=3).map(lambda x: x / 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(subset_names, grid_score, grid_score), min_size=1, max_size=60))
def test_pairs_sections_equal_rewardbench(rb: ModuleType, pairs: list[tuple[str, float, float]]) -> None:
    subsets = [s for s, _, _ in pairs]
    credit = [float(M.pair_correct(c, r)) for _, c, r in pairs]
    ours = M.pairs_summary(subsets, credit)
    # rewardbench.py: results.append(1) if chosen > rejected else 0, then per-subset mean.
    metrics: dict[str, float] = {}
    for s in set(subsets):
        results = [1 if c > r else 0 for sub, c, r in pairs if sub == s]
        metrics[s] = sum(results) / len(results)
    for s, v in metrics.items():
        assert ours["subsets"][s]["accuracy"] == pytest.approx(v)
    theirs = rb.calculate_scores_per_section(rb.constants.EXAMPLE_COUNTS, rb.constants.SUBSET_MAPPING, metrics)
    for section, value in ours["sections"].items():
        assert value == pytest.approx(theirs[section])
    # Sections without data: rewardbench reports 0, we leave them out.
    assert all(theirs[s] == 0 for s in theirs if s not in ours["sections"])


def _their_best_of_4(rb: ModuleType, rows: list[list[float]]) -> list[float]:
    """rewardbench's reroll_and_score_dataset: the first completion of each group is the correct one."""
    from datasets import Dataset

    flat = [{"text": f"t{i}-{j}", "scores": s, "id": i} for i, row in enumerate(rows) for j, s in enumerate(row)]
    ds = Dataset.from_list(flat)
    out = rb.reroll_and_score_dataset(ds, [len(r) for r in rows], cols_to_combine=["text", "scores"])
    return [float(x) for x in out["results"]]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(grid_score, min_size=4, max_size=4), min_size=1, max_size=25))
def test_best_of_4_equals_rewardbench_2(rb: ModuleType, rows: list[list[float]]) -> None:
    theirs = _their_best_of_4(rb, rows)
    ours = [M.best_of_n_score([r[0]], r[1:]) for r in rows]
    assert ours == pytest.approx(theirs)
    rankings = [M.Ranking("Math", [r[0]], r[1:], str(i)) for i, r in enumerate(rows)]
    assert M.best_of_n_summary(rankings, {})["subsets"]["Math"]["score"] == pytest.approx(sum(theirs) / len(theirs))


def test_best_of_4_on_real_reward_model_scores(rb: ModuleType) -> None:
    """Best-of-4 sets (one correct, three incorrect) cut from the MATH-500 BoN-8 fixture, scored by
    the 72B reward model that ships with it."""
    rows = []
    for line in (DATA / "math500-bon8-rm-scores.jsonl").read_text().splitlines():
        rec = json.loads(line)
        good = [s for s, ok in zip(rec["scores"], rec["labels"]) if ok]
        bad = [s for s, ok in zip(rec["scores"], rec["labels"]) if not ok]
        if len(bad) >= 3:
            rows += [[g, *(bad[(k + j) % len(bad)] for j in range(3))] for k, g in enumerate(good)]
    assert len(rows) >= 20
    theirs = _their_best_of_4(rb, rows)
    ours = [M.best_of_n_score([r[0]], r[1:]) for r in rows]
    assert ours == pytest.approx(theirs)


def _their_ties(rb: ModuleType, rows: list[tuple[str, int, list[float], int]]) -> float:
    from datasets import Dataset

    ds = Dataset.from_list([{"id": f"{kind}:{pid}", "scores": scores, "num_correct": nc}
                            for kind, pid, scores, nc in rows])
    _, overall = rb.process_single_model(ds)
    return float(overall)


ties_prompt = st.tuples(
    st.lists(grid_score, min_size=1, max_size=3), st.lists(grid_score, min_size=1, max_size=3),  # ref
    st.lists(grid_score, min_size=2, max_size=4), st.lists(grid_score, min_size=1, max_size=3),  # tied
)


@settings(max_examples=30, deadline=None)
@given(st.lists(ties_prompt, min_size=1, max_size=8))
def test_ties_subset_equals_rewardbench_2(rb: ModuleType, prompts: list[Any]) -> None:
    rows_theirs: list[tuple[str, int, list[float], int]] = []
    rows_ours: list[tuple[str, str, M.Ranking]] = []
    for pid, (rc, ri, tc, ti) in enumerate(prompts):
        rows_theirs += [("ref", pid, rc + ri, len(rc)), ("tied", pid, tc + ti, len(tc))]
        rows_ours += [("ref", str(pid), M.Ranking("ties", rc, ri)), ("tied", str(pid), M.Ranking("ties", tc, ti))]
    assert M.ties_score(rows_ours)["score"] == pytest.approx(_their_ties(rb, rows_theirs))


def test_ties_subset_with_ref_only_prompts(rb: ModuleType) -> None:
    rows_theirs = [("ref", 0, [1.0, 0.5], 1), ("ref", 1, [0.2, 0.5], 1), ("tied", 0, [1.0, 0.7, 0.1], 2)]
    rows_ours = [("ref", "0", M.Ranking("ties", [1.0], [0.5])), ("ref", "1", M.Ranking("ties", [0.2], [0.5])),
                 ("tied", "0", M.Ranking("ties", [1.0, 0.7], [0.1]))]
    assert M.ties_score(rows_ours)["score"] == pytest.approx(_their_ties(rb, rows_theirs))
