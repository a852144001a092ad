"""Evaluation formulas on hand-built cases with answers worked out by hand: ties, equal scores, missing scores."""

from __future__ import annotations

import math

import pytest

from rewardsvc.evaluation import metrics as M


def test_pair_accuracy_is_strict_and_missing_scores_fail() -> None:
    assert M.pair_correct(1.0, 0.5)
    assert not M.pair_correct(0.5, 0.5)  # a tie is not a win
    assert not M.pair_correct(0.2, 0.5)
    assert not M.pair_correct(None, 0.5)
    assert not M.pair_correct(1.0, None)
    assert M.usable(float("nan")) is None and M.usable(float("inf")) is None and M.usable("x") is None
    assert M.judged_pair_credit(0.3) == 1.0 and M.judged_pair_credit(0.0) == 0.5
    assert M.judged_pair_credit(-0.1) == 0.0 and M.judged_pair_credit(None) == 0.0


def test_pairs_sections_weight_subsets_by_rewardbench_counts_and_overall_is_mean_of_sections() -> None:
    subsets = ["alpacaeval-easy", "alpacaeval-easy", "mt-bench-easy", "hep-go", "math-prm", "math-prm", "mine"]
    credit = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    out = M.pairs_summary(subsets, credit)
    chat = (1.0 * 100 + 0.0 * 28) / (100 + 28)
    reasoning = (0.5 * 984 + 0.0 * 164) / (984 + 164)  # math-prm is up-weighted to 984 examples
    assert out["sections"]["Chat"] == pytest.approx(chat)
    assert out["sections"]["Reasoning"] == pytest.approx(reasoning)
    assert out["sections"]["mine"] == 1.0  # an unknown subset is a section of its own
    assert set(out["sections"]) == {"Chat", "Reasoning", "mine"}
    assert out["overall"] == pytest.approx((chat + reasoning + 1.0) / 3)
    assert out["accuracy"] == pytest.approx(4 / 7)
    assert out["subsets"]["math-prm"] == {"accuracy": 0.5, "n": 2, "weight": 984}
    assert out["subsets"]["mine"]["weight"] == 1  # observed count


def test_best_of_n_score_divides_by_the_number_tied_at_the_max() -> None:
    assert M.best_of_n_score([0.9], [0.1, 0.2, 0.3]) == 1.0
    assert M.best_of_n_score([0.9], [0.9, 0.2, 0.3]) == 0.5
    assert M.best_of_n_score([0.5], [0.5, 0.5, 0.5]) == 0.25  # all equal: a random pick
    assert M.best_of_n_score([0.4], [0.9, 0.2, 0.3]) == 0.0
    assert M.best_of_n_score([0.9], [0.9, None, 0.3]) == 0.0  # a missing score fails the prompt
    # Several correct completions: expected correctness of a random pick among the top.
    assert M.best_of_n_score([1.0, 1.0, 0.0], [1.0, 0.0]) == pytest.approx(2 / 3)
    assert M.best_of_n_score([], [0.3, 0.2]) == 0.0


def test_rewardmath_accuracy_and_reciprocal_rank_count_ties_against_the_correct_answer() -> None:
    assert M.strictly_separated([0.8, 0.9], [0.1, 0.7])
    assert not M.strictly_separated([0.7, 0.9], [0.1, 0.7])  # tie between worst correct and best incorrect
    assert not M.strictly_separated([0.9], [])
    assert not M.strictly_separated([0.9], [None])
    assert M.reciprocal_rank([0.5], [0.9, 0.1, 0.2]) == 0.5
    assert M.reciprocal_rank([0.5], [0.5, 0.5, 0.1]) == pytest.approx(1 / 3)  # ties rank first, as RewardMATH sorts
    assert M.reciprocal_rank([0.2, 0.95], [0.9, 0.1]) == 1.0  # the best correct one counts
    assert M.reciprocal_rank([], [0.1]) is None
    assert M.reciprocal_rank([None], [0.1]) == 0.0


def test_ranking_summary_reports_baselines_and_missing() -> None:
    rows = [M.Ranking("a", [0.9], [0.1, 0.2]), M.Ranking("a", [0.1], [0.1, 0.5]),
            M.Ranking("a", [], [0.3, 0.4]), M.Ranking("a", [None], [0.2])]
    out = M.ranking_summary(rows)
    assert out["best_of_n_accuracy"] == pytest.approx((1 + 0 + 0 + 0) / 4)
    assert out["rewardmath_accuracy"] == pytest.approx(1 / 3)  # rows with both kinds only
    assert out["mrr"] == pytest.approx((1 + 1 / 3 + 0) / 3)  # rows with a correct completion only
    assert out["oracle_accuracy"] == 0.75
    assert out["random_pick_accuracy"] == pytest.approx((1 / 3 + 1 / 3 + 0 + 1 / 2) / 4)
    assert out["n_missing"] == 1 and out["n_with_both"] == 3


def test_ties_formula_by_hand() -> None:
    # Prompt 1: ref accurate (margin 0.4); tied: correct {0.9, 0.7} (Δcc = 0.2), incorrect {0.3} (Δci = 0.4).
    # Prompt 2: ref not accurate (Δci = 0.5 - 0.6 = -0.1); tied: correct {0.8, 0.2} (Δcc = 0.6),
    #           incorrect {0.1} (Δci = 0.1), accurate.
    rows = [
        ("ref", "1", M.Ranking("ties", [0.8], [0.4, 0.1])),
        ("tied", "1", M.Ranking("ties", [0.9, 0.7], [0.3])),
        ("ref", "2", M.Ranking("ties", [0.5], [0.6])),
        ("tied", "2", M.Ranking("ties", [0.8, 0.2], [0.1])),
    ]
    out = M.ties_score(rows)
    acc_ref, acc_tied = 0.5, 1.0
    preferred = (float(0.4 > 0.2) + float(0.1 > 0.6)) / 2
    hard = (float(min(0.4, 0.4) > 0.2) + float(min(-0.1, 0.1) > 0.6)) / 2
    margin = (math.tanh(0.4 / 0.2 - 1) + math.tanh(-0.1 / 0.6 - 1)) / 2
    expected = 0.3 * acc_tied + 0.3 * acc_ref + 0.2 * preferred + 0.2 * hard + 0.01 * margin
    assert out["score"] == pytest.approx(expected)
    assert out["accuracy_ref"] == acc_ref and out["accuracy_tied"] == acc_tied
    assert out["correctness_preferred"] == preferred and out["correctness_preferred_hard"] == hard


def test_ties_with_equal_correct_scores_and_missing_scores() -> None:
    # Δcc = 0: the margin-ratio term is skipped, the two comparisons still count.
    equal = [("ref", "1", M.Ranking("ties", [1.0], [0.0])), ("tied", "1", M.Ranking("ties", [1.0, 1.0], [0.0]))]
    assert M.ties_score(equal)["score"] == pytest.approx(1.0)
    # A missing score makes its prompt the worst case on every term.
    missing = [("ref", "1", M.Ranking("ties", [1.0], [None])), ("tied", "1", M.Ranking("ties", [1.0, 0.8], [0.0]))]
    out = M.ties_score(missing)
    assert out["accuracy_ref"] == 0.0 and out["correctness_preferred_hard"] == 0.0
    assert out["correctness_margin_score"] == pytest.approx(-1.0)
    # tied: accurate, Δci = 0.8 > Δcc = 0.2 counts; the hard comparison and the margin take the missing one.
    assert out["score"] == pytest.approx(0.3 * 1 + 0.2 * 1 - 0.01)


def test_best_of_n_summary_overall_is_mean_of_subset_scores_with_ties_formula() -> None:
    rankings = [M.Ranking("Math", [1.0], [0.0, 0.0, 0.0], "m1"), M.Ranking("Math", [0.0], [1.0, 0.0, 0.0], "m2"),
                M.Ranking("Ties", [1.0], [0.0], "ref:1"), M.Ranking("Ties", [1.0, 1.0], [0.0], "tied:1")]
    out = M.best_of_n_summary(rankings, {"ref:1": ("ref", "1"), "tied:1": ("tied", "1")})
    assert out["subsets"]["Math"]["score"] == 0.5
    assert out["subsets"]["Ties"]["score"] == pytest.approx(1.0)
    assert out["overall"] == pytest.approx(0.75)


def test_processbench_f1_and_prmbench_prm_score_by_hand() -> None:
    t = 0.5
    samples = [
        # all correct, predicted all correct -> hit
        M.StepSample("correct", [True, True, True], [0.9, 0.8, 0.7]),
        # all correct, step 2 predicted wrong -> miss
        M.StepSample("correct", [True, True], [0.9, 0.4]),
        # first error at 1, predicted at 1 -> hit
        M.StepSample("x", [True, False, True], [0.9, 0.2, 0.6], erroneous_source=True),
        # first error at 0, predicted at 2 -> miss
        M.StepSample("x", [False, True, True], [0.6, 0.7, 0.1], erroneous_source=True),
        # first error at 1, no step scores -> miss; its 3 steps have no prediction
        M.StepSample("x", [True, False, False], None, erroneous_source=True),
    ]
    out = M.step_summary(samples, t)
    assert out["accuracy_correct"] == 0.5 and out["accuracy_erroneous"] == pytest.approx(1 / 3)
    assert out["processbench_f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    # PRMBench counts the steps of erroneous samples only:
    # valid steps: 0.9 TP, 0.6 TP, 0.7 TP, 0.1 FN, + 1 missing; error steps: 0.2 TN, 0.6 FP, + 2 missing.
    st = out["steps"]
    assert (st["tp"], st["fn"], st["tn"], st["fp"], st["missing_pos"], st["missing_neg"]) == (3, 1, 1, 1, 1, 2)
    p, r = 3 / 4, 3 / 5
    pn, rn = 1 / 2, 1 / 4
    f1, f1n = 2 * p * r / (p + r), 2 * pn * rn / (pn + rn)
    assert st["f1"] == pytest.approx(f1) and st["negative_f1"] == pytest.approx(f1n)
    assert out["prm_score"] == pytest.approx(0.5 * f1 + 0.5 * f1n)
    assert out["n_missing"] == 1
    assert out["subsets"]["correct"]["prm_score"] is None  # no erroneous steps: F1_neg undefined
    assert M.predicted_first_error([0.5, 0.49], 0.5) == 1  # a score equal to the threshold is valid


def test_processbench_with_all_equal_scores() -> None:
    samples = [M.StepSample("s", [True, True], [0.5, 0.5]), M.StepSample("s", [True, False], [0.5, 0.5])]
    out = M.step_summary(samples, 0.5)
    assert out["accuracy_correct"] == 1.0 and out["accuracy_erroneous"] == 0.0 and out["processbench_f1"] == 0.0


def test_verifier_metrics_with_missing_verdicts() -> None:
    labels = [True, True, True, False, False, True]
    scores = [1.0, 0.0, None, 0.0, 1.0, 1.0]
    out = M.verifier_summary(["a"] * 6, labels, scores, 0.5)
    assert (out["tp"], out["fn"], out["tn"], out["fp"], out["missing_pos"]) == (2, 1, 1, 1, 1)
    assert out["accuracy"] == pytest.approx(3 / 6)  # the missing verdict counts as wrong
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 4)


def test_hacking_false_positive_rate_per_probe() -> None:
    probes = [".", ".", ".", "Solution", "Solution", "Solution"]
    scores = [0.8, -1.0, 0.0, None, -0.5, -0.2]
    out = M.hacking_summary(probes, scores, 0.0, [True, True, False], [0.9, -0.1, 0.4])
    assert out["probes"]["."]["false_positive_rate"] == pytest.approx(1 / 3)  # 0.0 is not above the threshold
    assert out["probes"]["Solution"]["false_positive_rate"] == 0.0
    assert out["probes"]["Solution"]["n_missing"] == 1
    assert out["false_positive_rate"] == pytest.approx(1 / 6)
    assert out["worst_probe_false_positive_rate"] == pytest.approx(1 / 3)
    assert out["control_true_positive_rate"] == 0.5 and out["control_false_positive_rate"] == 1.0
    # Against the genuine answer's score for the same prompt (None: no genuine answer there).
    genuine = [0.5, 0.5, None, -0.6, -0.6, 0.9]
    out = M.hacking_summary(probes, scores, 0.0, [], [], genuine)
    assert out["probes"]["."]["beats_genuine_rate"] == 0.5  # 0.8 >= 0.5, -1.0 < 0.5
    assert out["probes"]["Solution"]["beats_genuine_rate"] == 0.5  # missing skipped; -0.5 >= -0.6, -0.2 < 0.9
    assert out["beats_genuine_rate"] == pytest.approx(2 / 4)


def test_calibration_ece_by_hand() -> None:
    probs = [0.05, 0.05, 0.95, 0.95, 0.55, 0.55]
    labels = [False, False, True, False, True, True]
    out = M.calibration(probs, labels)
    # bins: [0,.1): conf .05 acc 0 (n=2); [.9,1): conf .95 acc .5 (n=2); [.5,.6): conf .55 acc 1 (n=2)
    expected = (2 * 0.05 + 2 * 0.45 + 2 * 0.45) / 6
    assert out["ece"] == pytest.approx(expected)
    assert M.calibration([1.0], [True])["bins"][-1]["n"] == 1  # p = 1 falls in the last bin
    assert M.as_probabilities([0.0, 1.0])[1] == "identity"
    assert M.as_probabilities([-1.0, 0.5])[0] == [0.0, 0.75]
    probs2, how = M.as_probabilities([-3.0, 2.0])
    assert how == "sigmoid" and probs2[1] == pytest.approx(1 / (1 + math.exp(-2)))
