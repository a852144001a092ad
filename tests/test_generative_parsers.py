"""Generative scorer without a model: every preset's verdict parser on critiques written in its
published format (well-formed, truncated, malformed, two verdicts, a verdict inside the reasoning),
sample aggregation and meta selection, the reasoning budget's rule, and config checks."""

from __future__ import annotations

import pytest

from rewardsvc.backends.sampling import Sample
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.generative import GenerativeConfig, GenerativeOptions, GenerativeScorer, resolve_formats
from rewardsvc.scorers.generative_aggregate import (
    Judged,
    combine,
    pairwise_score,
    pointwise_score,
    select_by_meta,
    step_score,
)
from rewardsvc.scorers.generative_presets import ModeFormat
from rewardsvc.scorers.verdicts import Verdict, VerdictFormat, parse_pair, parse_score, parse_steps


def fmt(preset: str, mode: str) -> VerdictFormat:
    verdict = resolve_formats(GenerativeConfig(preset=preset), "test")[mode].verdict
    assert verdict is not None
    return verdict


# ---- RM-R1: <answer>[[A]]</answer>, both letters = error ------------------------------------------

RM_R1_GOOD = """<type>Reasoning</type>

<solution> 3 + 4 = 7 </solution>

<eval>
<quote_A>3 + 4 = 7. The answer is 7.</quote_A> matches my solution.
<summary_B>Chatbot B multiplies instead of adding and gets 12.</summary_B> This is wrong.
</eval>

<answer>[[A]]</answer>"""


@pytest.mark.parametrize("preset", ["rm-r1", "rm-r1-reasoning"])
def test_rm_r1_parser_reads_the_answer_tag_and_refuses_two_letters(preset):
    f = fmt(preset, "pairwise")
    assert parse_pair(RM_R1_GOOD, f) == Verdict("ok", 1.0)
    assert parse_pair(RM_R1_GOOD.replace("[[A]]", "[[B]]"), f).value == -1.0
    # truncated before the answer
    assert parse_pair(RM_R1_GOOD[:120], f).status == "no_verdict"
    # malformed: a letter outside the tags, or a letter that is not A/B
    assert parse_pair("<eval>...</eval>\n\nFinal: [[A]]", f).status == "no_verdict"
    assert parse_pair("<answer>[[C]]</answer>", f).status == "no_verdict"
    # two verdicts: RM-R1 calls this an error ("Prevent Hacking")
    both = RM_R1_GOOD + "\n<answer>[[B]]</answer>"
    assert parse_pair(both, f).status == "conflicting"
    # the same verdict twice is still one verdict
    assert parse_pair(RM_R1_GOOD + "\n<answer>[[A]]</answer>", f).value == 1.0
    # a letter inside the reasoning, outside the answer tags, does not count (the RL reward's exact tag)
    inside = RM_R1_GOOD.replace("This is wrong.", "Chatbot B's style [[B]] is wrong.")
    assert parse_pair(inside, f).value == 1.0


# ---- DeepSeek-GRM: the last \boxed{...}, one score per response ----------------------------------

GRM_GOOD = """Specific Criteria: Correctness of the arithmetic (weight 0.7), clarity (weight 0.3).
Analysis: Response 1 adds 3 and 4 and gets 7, which is correct. Response 2 multiplies and gets 12.
Scores: \\boxed{9, 3}"""


def test_deepseek_grm_pairwise_parser_reads_the_last_boxed_pair():
    f = fmt("deepseek-grm", "pairwise")
    assert parse_pair(GRM_GOOD, f).value == pytest.approx((9 - 3) / 9)
    # App. F's other output shapes
    assert parse_pair("Analysis: equal.\n**Scores: \\boxed{8, 8}**", f).value == 0.0
    assert parse_pair("### Output:\n\\boxed{7, 10}", f).value == pytest.approx(-3 / 9)
    # truncated before the scores
    assert parse_pair(GRM_GOOD.split("Scores")[0], f).status == "no_verdict"
    # malformed: one score for two responses, words, a score off the 1-10 scale
    assert parse_pair("Scores: \\boxed{9}", f).status == "malformed"
    assert parse_pair("Scores: \\boxed{nine, three}", f).status == "malformed"
    assert parse_pair("Scores: \\boxed{12, 3}", f).status == "malformed"
    # two verdicts, e.g. the format's example echoed first: the last counts
    assert parse_pair("Like \\boxed{2, 9} in the example.\nScores: \\boxed{9, 2}", f).value == pytest.approx(7 / 9)


def test_deepseek_grm_pointwise_parser():
    f = fmt("deepseek-grm", "pointwise")
    assert parse_score("Analysis: correct.\nScores: \\boxed{8}", f).value == 8.0
    assert parse_score("Analysis: the response", f).status == "no_verdict"
    assert parse_score("Scores: \\boxed{8, 5}", f).status == "no_verdict"  # two scores for one response
    assert parse_score("A guess: \\boxed{3}. Scores: \\boxed{7}", f).value == 7.0


# ---- ThinkPRM: \boxed{correct} / \boxed{incorrect} per step, in order -----------------------------

THINKPRM_GOOD = """
Step 1: The solution computes 3 * 4 = 12 first, as the order of operations requires. This is correct.

\\boxed{correct}

Step 2: 2 + 12 = 14. The addition is right.

\\boxed{correct}

Step 3: The final answer 14 follows from step 2.

\\boxed{\\text{correct}}

Is the solution correct? Yes"""


def test_thinkprm_parser_gives_one_verdict_per_step():
    f = fmt("thinkprm", "step")
    assert parse_steps(THINKPRM_GOOD, f, 3) == Verdict("ok", [1.0, 1.0, 1.0])
    # the critique stops at the first wrong step: later steps count as wrong
    wrong = "Step 1: 2 + 3 = 5 is fine. \\boxed{correct}\nStep 2: It multiplies 5 by 4 but the problem " \
            "needs 3 * 4 first. \\boxed{incorrect}\nIs the solution correct? No"
    v = parse_steps(wrong, f, 3)
    assert v.value == [1.0, 0.0, 0.0] and "counted wrong" in v.note
    # truncated in step 2 without any wrong verdict: incomplete
    assert parse_steps(THINKPRM_GOOD[:150], f, 3).status == "incomplete"
    # a verdict word outside the format is no verdict; a format whose matches are all unreadable: malformed
    assert parse_steps("Step 1: \\boxed{maybe}", f, 1).status == "no_verdict"
    loose = VerdictFormat(pattern=r"Step \d+: (\w+)", labels={"ok": 1, "wrong": 0}, scale=[0, 1], pick="last")
    assert parse_steps("Step 1: maybe", loose, 1).status == "malformed"
    assert parse_steps("Step 1: maybe\nStep 1: ok", loose, 1).value == [1.0]
    assert parse_steps("Step 1 looks fine.", f, 1).status == "no_verdict"
    # two verdicts for one step read as the next step's: more verdicts than steps are cut off
    v = parse_steps(THINKPRM_GOOD + "\n\\boxed{incorrect}", f, 3)
    assert v.value == [1.0, 1.0, 1.0] and "more than steps" in v.note


# ---- J1: <think>...</think> then <score>N</score> or <answer>[[A]]</answer> -----------------------

def test_j1_parsers_read_only_after_the_reasoning():
    f = fmt("j1", "pointwise")
    good = "<think> The response adds 3 and 4 and gets 7, which is right and clear. </think> <score> 8 </score>"
    assert parse_score(good, f).value == 8.0
    assert parse_score(good.replace("8", "7.5"), f).value == 7.5  # 0.1 precision
    assert parse_score("<think> The response adds 3 and", f).status == "no_verdict"  # truncated in the reasoning
    assert parse_score("<think> ok </think> <score> 11 </score>", f).status == "out_of_range"
    assert parse_score("<think> ok </think> <score> eight </score>", f).status == "no_verdict"
    inside = "<think> At first <score> 2 </score>, but the answer is right. </think> <score> 9 </score>"
    assert parse_score(inside, f).value == 9.0
    assert parse_score("<think> x </think> <score> 8 </score> <score> 3 </score>", f).value == 3.0

    p = fmt("j1", "pairwise")
    assert parse_pair("<think> B multiplies. </think> <answer> [[A]] </answer>", p).value == 1.0
    assert parse_pair("<think> Maybe <answer> [[B]] </answer>? No. </think> <answer> [[A]] </answer>", p).value == 1.0
    two = "<think> ok </think> <answer> [[A]] </answer> <answer> [[B]] </answer>"
    assert parse_pair(two, p).status == "conflicting"
    assert parse_pair("<think> Assistant A", p).status == "no_verdict"


# ---- Prometheus 2: "... [RESULT] N" / "[RESULT] A", at the end ---------------------------------------

def test_prometheus_parsers_read_the_result_at_the_end():
    f = fmt("prometheus", "pointwise")
    assert parse_score("The response is accurate and helpful, though brief. [RESULT] 4", f).value == 4.0
    assert parse_score("Feedback: clear and correct. Score: 5", f).value == 5.0
    assert parse_score("The response is accurate and", f).status == "no_verdict"  # truncated
    assert parse_score("Good. [RESULT] 7", f).status == "out_of_range"  # a 1-5 scale
    inside = "A score of 5 would need an explanation, which is missing. [RESULT] 3"
    assert parse_score(inside, f).value == 3.0
    assert parse_score("[RESULT] 2 then [RESULT] 4", f).value == 4.0  # only the one at the end counts
    assert fmt("prometheus", "reference").scale == [1.0, 5.0]

    p = fmt("prometheus", "pairwise")
    assert parse_pair("Response A adds correctly while B does not. [RESULT] A", p).value == 1.0
    assert parse_pair("Response B is better. [RESULT] B", p).value == -1.0
    assert parse_pair("Response A adds correctly while", p).status == "no_verdict"


# ---- default preset --------------------------------------------------------------------------------

def test_default_preset_parsers():
    assert parse_score("The sum is right.\nScore: 9/10", fmt("default", "pointwise")).value == 9.0
    assert parse_score("Score: **7**", fmt("default", "pointwise")).value == 7.0
    assert parse_score("Looks fine.", fmt("default", "pointwise")).status == "no_verdict"
    r = fmt("default", "reference")
    assert parse_score("It says 12, not 7.\nVerdict: incorrect", r).value == 0.0
    assert parse_score("Verdict: correct", r).value == 1.0
    p = fmt("default", "pairwise")
    assert parse_pair("A is right.\nVerdict: A", p).value == 1.0
    assert parse_pair("Verdict: a tie", p).status == "no_verdict"  # lower-case letters are words here
    s = fmt("default", "step")
    assert parse_steps("Step 1: ok \\boxed{correct}\nStep 2: no \\boxed{incorrect}", s, 2).value == [1.0, 0.0]


# ---- aggregation ------------------------------------------------------------------------------------

def judged(value, status="ok", order="", meta=None) -> Judged:
    return Judged(Verdict(status, value if status == "ok" else None), text=f"critique {value}", tokens=5,
                  order=order, meta=meta)


def test_combine_mean_and_vote_with_ties():
    assert combine([7, 7, 3], "mean") == (pytest.approx(17 / 3), pytest.approx(2 / 3))
    assert combine([7, 7, 3], "vote") == (7, pytest.approx(2 / 3))
    assert combine([7, 7, 3, 3], "vote") == (5, 0.5)  # tied verdicts: their mean


def test_pointwise_score_maps_the_scale_to_minus_one_one():
    score, d = pointwise_score([judged(10), judged(10), judged(1)], "vote", [1, 10])
    assert score == 1.0 and d["agreement"] == pytest.approx(2 / 3)
    score, _ = pointwise_score([judged(10), judged(1)], "mean", [1, 10])
    assert score == pytest.approx(0.0)
    score, d = pointwise_score([judged(None, "no_verdict"), judged(None, "truncated")], "mean", [1, 10])
    assert score == 0.0 and d["verdict"] == "unparsed" and d["statuses"] == {"no_verdict": 1, "truncated": 1}


def test_pairwise_score_in_both_orders_cancels_position_bias():
    # A judge that always prefers the first position: +1 as A, and +1 for the other response as B.
    biased = [judged(1.0, order="AB"), judged(1.0, order="BA")]
    for how in ("mean", "vote"):
        score, d = pairwise_score(biased, how)
        assert score == 0.0 and d["consistent"] is False and d["as_a"] == 1.0 and d["as_b"] == -1.0
    fair = [judged(1.0, order="AB"), judged(-1.0, order="BA"), judged(-1.0, order="AB")]
    score, d = pairwise_score(fair, "vote")
    assert score == 1.0 and d["agreement"] == pytest.approx(2 / 3)
    assert pairwise_score(fair, "mean")[0] == pytest.approx(1 / 3)


def test_step_score_aggregates_samples_then_steps():
    samples = [judged([1.0, 0.0, 0.0]), judged([1.0, 1.0, 0.0]), judged([1.0, 1.0, 1.0])]
    score, steps, d = step_score(samples, "vote", "min", 0.1)
    assert steps == [1.0, 1.0, 0.0] and score == -1.0 and d["first_wrong_step"] == 3
    score, steps, d = step_score(samples, "mean", "mean", 0.1)
    assert steps == pytest.approx([1.0, 2 / 3, 1 / 3]) and score == pytest.approx(2 * (2 / 3) - 1)
    assert d["first_wrong_step"] == 3
    score, steps, _ = step_score([judged(None, "incomplete")], "mean", "min", 0.1)
    assert score == 0.0 and steps == []


def test_meta_selection_keeps_the_best_per_order():
    samples = [judged(1.0, order="AB", meta=0.9), judged(-1.0, order="AB", meta=0.1),
               judged(1.0, order="AB", meta=0.5),
               judged(-1.0, order="BA", meta=0.2), judged(1.0, order="BA", meta=0.8),
               judged(None, "no_verdict", order="BA"), judged(1.0, order="BA", meta=None)]
    select_by_meta(samples, 2)
    assert [s.kept for s in samples] == [True, False, True, True, True, True, False]
    assert [s.usable for s in samples] == [True, False, True, True, True, False, False]


# ---- the reasoning budget, plans and config checks ----------------------------------------------------

def scorer(**config) -> GenerativeScorer:
    s = GenerativeScorer("gen", GenerativeConfig(**config))
    s.formats = resolve_formats(s.config, "test")
    return s


def test_a_critique_cut_off_by_the_budget_is_discarded_or_parsed_as_configured():
    plan = scorer().plan(GenerativeOptions(max_new_tokens=8))
    cut = Sample("The sum is right. Score: 9", tokens=8, finished=False)
    v = scorer().judge(cut, plan, "", 0).verdict
    assert v.status == "truncated" and "max_new_tokens=8" in v.note
    assert scorer(truncated="parse").judge(cut, plan, "", 0).verdict == Verdict("ok", 9.0)
    early = Sample("The sum is", tokens=8, finished=False)
    assert scorer(truncated="parse").judge(early, plan, "", 0).verdict.status == "truncated"
    done = Sample("Score: 3", tokens=3, finished=True)
    assert scorer().judge(done, plan, "", 0).verdict.value == 3.0


def test_plan_rejects_requests_that_cannot_work():
    s = scorer(preset="rm-r1", mode="pairwise")
    assert "no pointwise format" in s.plan(GenerativeOptions(mode="pointwise"))
    assert "temperature 0" in s.plan(GenerativeOptions(k=4))
    assert "1..32" in s.plan(GenerativeOptions(k=64, temperature=1.0))
    assert "meta_rm" in s.plan(GenerativeOptions(sample_aggregation="meta"))
    plan = s.plan(GenerativeOptions(k=4, temperature=0.7))
    assert plan.k_meta == 2 and plan.params.k == 4


def test_formats_replace_parts_of_a_preset_and_are_checked():
    cfg = GenerativeConfig(preset="prometheus", formats={"pointwise": ModeFormat(prefill="Feedback:")})
    out = resolve_formats(cfg, "test")["pointwise"]
    assert out.prefill == "Feedback:" and out.verdict.scale == [1.0, 5.0] and "###Feedback" in out.template
    own = GenerativeConfig(preset="rm-r1", formats={"pointwise": ModeFormat(
        template="{prompt}\n{response}\nRating (1-5):", verdict=VerdictFormat(pattern=r"(\d)", scale=[1, 5]))})
    assert resolve_formats(own, "test")["pointwise"].verdict.pick == "last"
    bad = [
        ({"preset": "nope"}, "preset 'nope'"),
        ({"formats": {"listwise": ModeFormat()}}, "unknown mode"),
        ({"formats": {"pointwise": ModeFormat(template="{prompt} only")}}, "must contain {response}"),
        ({"formats": {"pointwise": ModeFormat(template="{response} {answer}")}}, "may use only"),
        ({"formats": {"pointwise": ModeFormat(verdict=VerdictFormat(pattern="(unclosed"))}}, "regular expression"),
        ({"formats": {"pointwise": ModeFormat(verdict=VerdictFormat(pattern="no group"))}}, "needs a group"),
        ({"preset": "rm-r1", "formats": {"pointwise": ModeFormat(template="{response}")}}, "pattern is empty"),
    ]
    for config, message in bad:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("{", r"\{")):
            resolve_formats(GenerativeConfig(**config), "test")
