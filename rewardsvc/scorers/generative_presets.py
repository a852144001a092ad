"""Prompt templates and verdict formats of the generative scorer, per published judge.

A preset maps each mode it supports to a `ModeFormat`: the judge's system and user turns, the start
of its reply, and where its verdict is (scorers/verdicts.py). A stanza picks one with `preset:` and
may replace any part per mode with `formats: {MODE: {...}}` (unset fields keep the preset's).

Template fields: pointwise {prompt} {response}; reference {prompt} {response} {reference};
pairwise {prompt} {a} {b} (asked in both orders); step {prompt} {steps} (the steps written with
`step_line`, one per line). Literal braces are doubled: \\boxed{{x}}.

Sources (the exact prompt text where a repository has it; licences in brackets):
  rm-r1, rm-r1-reasoning  RM-R1 `eval/RM-Bench/rewardbench/generative.py` @9f5adf9: RM_R1_INSTRUCT_SYSTEM_PROMPT
                          + RM_R1_SINGLE_TURN_INSTRUCT_USER_PROMPT, and RM_R1_SINGLE_TURN_REASONING_USER_PROMPT;
                          verdict <answer>[[A]]</answer>, both letters present = error ("Prevent Hacking")
                          [Apache-2.0]
  deepseek-grm            DeepSeek-GRM (arXiv 2504.02495, App. G): the template's structure and output format; the
                          criteria text is shortened (no official code); last \\boxed{...} [paper]
  thinkprm                ThinkPRM `utils/helper.py` @214cce9 (format_verification_cot_for_thinkprm), prefill
                          "\\nLet's verify step by step:", step verdicts \\boxed{correct}/\\boxed{incorrect}
                          [the repository has no top-level licence; only the prompt and format are used]
  j1                      J1 (arXiv 2505.10320, Fig. 3 and 5): <think>...</think> then <score>N</score> (0-10) or
                          <answer>[[A]]</answer>; instruction text abbreviated (no official code) [paper]
  prometheus              Prometheus 2 `libs/prometheus-eval/prometheus_eval/prompts.py` @485d2b4:
                          ABSOLUTE_PROMPT(_WO_REF), RELATIVE_PROMPT_WO_REF with HELPFULNESS_RUBRIC; the parser
                          regexes of `parser.py` @dcfb442 (anchored at the end) [Apache-2.0]
  default                 this project's own short formats for every mode
GenPRM is not a preset: it is a multi-turn dialogue per step read from log-probabilities (and runs code).
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardsvc.dataclass_dict import option
from rewardsvc.scorers.verdicts import VerdictFormat

MODES = ("pointwise", "pairwise", "reference", "step")
#: Template fields per mode: (required, optional).
MODE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pointwise": (("response",), ("prompt",)),
    "reference": (("response", "reference"), ("prompt",)),
    "pairwise": (("a", "b"), ("prompt",)),
    "step": (("steps",), ("prompt",)),
}


@dataclass
class ModeFormat:
    """One mode's prompt and verdict format. Unset fields come from the preset."""

    template: str | None = option(None, "the user turn; fields per mode: pointwise {prompt} {response}, "
                                        "reference + {reference}, pairwise {prompt} {a} {b}, step {prompt} {steps}")
    system: str | None = option(None, "the system turn (empty: none)")
    prefill: str | None = option(None, "the judge's reply starts with this (in-process and /v1/completions)")
    step_line: str | None = option(None, "step mode: how each step is written into {steps}; fields {i} {step}")
    verdict: VerdictFormat | None = option(None, "where the verdict is and what it means (scorers/verdicts.py)")


CORRECT_INCORRECT = {"correct": 1.0, "incorrect": 0.0}
BOXED_STEP = VerdictFormat(pattern=r"\\boxed\{\s*(?:\\text\{\s*)?(correct|incorrect)\s*\}", labels=CORRECT_INCORRECT,
                           scale=[0.0, 1.0])

# ---- default ----------------------------------------------------------------------------------------

DEFAULT = {
    "pointwise": ModeFormat(
        template=("Here is a question and a response to it.\n\n[Question]\n{prompt}\n\n[Response]\n{response}\n\n"
                  "Check whether the response is correct and helpful. Write a short critique, then a last line "
                  "\"Score: N/10\", N an integer from 1 (wrong or useless) to 10 (correct and complete)."),
        system="", prefill="",
        verdict=VerdictFormat(pattern=r"(?i)score\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", scale=[1.0, 10.0]),
    ),
    "reference": ModeFormat(
        template=("Here is a question, its reference answer, and a response.\n\n[Question]\n{prompt}\n\n"
                  "[Reference answer]\n{reference}\n\n[Response]\n{response}\n\nDoes the response reach the "
                  "reference answer? Write a short critique, then a last line \"Verdict: correct\" or "
                  "\"Verdict: incorrect\"."),
        system="", prefill="",
        verdict=VerdictFormat(pattern=r"(?i)verdict\s*[:=]\s*\**\s*(correct|incorrect)\b", labels=CORRECT_INCORRECT,
                              scale=[0.0, 1.0]),
    ),
    "pairwise": ModeFormat(
        template=("Here is a question and two responses to it.\n\n[Question]\n{prompt}\n\n[Response A]\n{a}\n\n"
                  "[Response B]\n{b}\n\nWhich response answers the question better? Write a short critique of "
                  "both, then a last line \"Verdict: A\" or \"Verdict: B\"."),
        system="", prefill="",
        verdict=VerdictFormat(pattern=r"[Vv]erdict\s*[:=]\s*\**\s*\[*\s*([AB])\b"),
    ),
    "step": ModeFormat(
        template=("Here is a problem and a step-by-step solution.\n\n[Problem]\n{prompt}\n\n[Solution]\n{steps}\n\n"
                  "Check the steps in order. For each step write \"Step i:\", a short critique, and "
                  "\\boxed{{correct}} or \\boxed{{incorrect}}. Stop at the first incorrect step."),
        system="", prefill="", step_line="Step {i}: {step}", verdict=BOXED_STEP,
    ),
}

# ---- RM-R1 ------------------------------------------------------------------------------------------

RM_R1_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI Chatbots to the "
    "Client's question displayed below.\n\n"
    "First, classify the task into one of two categories: <type>Reasoning</type> or <type>Chat</type>.\n"
    "- Use <type>Reasoning</type> for tasks that involve math, coding, or require domain knowledge, multi-step "
    "inference, logical deduction, or combining information to reach a conclusion.\n"
    "- Use <type>Chat</type> for tasks that involve open-ended or factual conversation, stylistic rewrites, safety "
    "questions, or general helpfulness requests without deep reasoning.\n\n"
    "If the task is Reasoning:\n"
    "1. Solve the Client's question yourself and present your final answer within <solution>...</solution> tags.\n"
    "2. Evaluate the two Chatbot responses based on correctness, completeness, and reasoning quality, referencing "
    "your own solution.\n"
    "3. Include your evaluation inside <eval>...</eval> tags, quoting or summarizing the Chatbots using the "
    "following tags:\n"
    "   - <quote_A>...</quote_A> for direct quotes from Chatbot A\n"
    "   - <summary_A>...</summary_A> for paraphrases of Chatbot A\n"
    "   - <quote_B>...</quote_B> for direct quotes from Chatbot B\n"
    "   - <summary_B>...</summary_B> for paraphrases of Chatbot B\n"
    "4. End with your final judgment in the format: <answer>[[A]]</answer> or <answer>[[B]]</answer>\n\n"
    "If the task is Chat:\n"
    "1. Generate evaluation criteria (rubric) tailored to the Client's question and context, enclosed in "
    "<rubric>...</rubric> tags.\n"
    "2. Assign weights to each rubric item based on their relative importance.\n"
    "3. Inside <rubric>, include a <justify>...</justify> section explaining why you chose those rubric criteria "
    "and weights.\n"
    "4. Compare both Chatbot responses according to the rubric.\n"
    "5. Provide your evaluation inside <eval>...</eval> tags, using <quote_A>, <summary_A>, <quote_B>, and "
    "<summary_B> as described above.\n"
    "6. End with your final judgment in the format: <answer>[[A]]</answer> or <answer>[[B]]</answer>\n\n"
    "Important Notes:\n"
    "- Be objective and base your evaluation only on the content of the responses.\n"
    "- Do not let response order, length, or Chatbot names affect your judgment.\n"
    "- Follow the response format strictly depending on the task type.\n\n"
    "Your output must follow one of the two formats below:\n\n"
    "For Reasoning:\n"
    "<type>Reasoning</type>\n\n"
    "<solution> your own solution for the problem </solution>\n\n"
    "<eval>\n"
    "  include direct comparisons supported by <quote_A>...</quote_A> or <summary_A>...</summary_A>, and "
    "<quote_B>...</quote_B>, or <summary_B>...</summary_B>\n"
    "</eval>\n\n"
    "<answer>[[A/B]]</answer>\n\n"
    "For Chat:\n"
    "<type>Chat</type>\n\n"
    "<rubric>\n"
    "  detailed rubric items\n"
    "  <justify> justification for the rubric </justify>\n"
    "</rubric>\n\n"
    "<eval>\n"
    "  include direct comparisons supported by <quote_A>...</quote_A> or <summary_A>...</summary_A>, and "
    "<quote_B>...</quote_B>, or <summary_B>...</summary_B> tags\n"
    "</eval>\n\n"
    "<answer>[[A/B]]</answer>"
)
RM_R1_BLOCKS = (
    "[Client Question]\n{prompt}\n\n[The Start of Chatbot A's Response]\n{a}\n[The End of Chatbot A's Response]\n\n"
    "[The Start of Chatbot B's Response]\n{b}\n[The End of Chatbot B's Response]"
)
RM_R1_VERDICT = VerdictFormat(pattern=r"<answer>\s*\[\[([AB])\]\]\s*</answer>", pick="only")

RM_R1 = {"pairwise": ModeFormat(template=RM_R1_BLOCKS, system=RM_R1_SYSTEM, prefill="", verdict=RM_R1_VERDICT)}
RM_R1_REASONING = {"pairwise": ModeFormat(
    template=("Please act as an impartial judge and evaluate the quality of the responses provided by two AI Chatbots "
              "to the Client question displayed below. \n\n" + RM_R1_BLOCKS + "\n\n"
              "Output your final verdict at last by strictly following this format: '<answer>[[A]]</answer>' if "
              "Chatbot A is better, or '<answer>[[B]]</answer>' if Chatbot B is better."),
    system="", prefill="", verdict=RM_R1_VERDICT)}

# ---- DeepSeek-GRM -----------------------------------------------------------------------------------

GRM_HEAD = (
    "You are a skilled little expert at scoring responses. You should evaluate given responses based on the given "
    "judging criteria.\nGiven the context of the conversation (the last round is the User's query) and multiple "
    "responses from the Assistant, you need to refer to the [General Evaluation Criteria] to score the responses. "
    "Based on the general evaluation criteria, state potential other specific criteria to the query, the weights of "
    "different criteria, and then provide an overall comprehensive score upon them.\nEach score is an integer "
    "between 1 and 10, with a higher score indicating that the response meets the relevant criteria more closely. "
    "For example, a score of 1 means the response does not meet the criteria at all, a score of 6 means the "
    "response meets only some parts, and a score of 10 means the response perfectly meets the evaluation "
    "criteria.\nBefore scoring, please analyze step by step. Your scoring needs to be as strict as possible.\n\n"
    "#### Evaluation Criteria ####\n"
    "1. Instruction Adherence: whether the response fully follows the user's instructions and requirements.\n"
    "2. Usefulness: whether the response effectively addresses the user's needs.\n"
    "3. Level of Detail: whether the response gives sufficient relevant detail without padding.\n"
    "4. Relevance: whether the response stays relevant to the query and the conversation context.\n\n"
    "#### Conversation Context ####\n{prompt}\n\n"
    "#### Responses to be Scored ####\n"
)
GRM_FORMAT = (
    "#### Output Format Requirements ####\nOutput with three lines\n"
    "Specific Criteria: <Other potential criteria specific to the query and the context, and the weights of each "
    "criteria>.\nAnalysis: <Compare different responses based on given Criteria>.\n"
)
DEEPSEEK_GRM = {
    "pointwise": ModeFormat(
        template=(GRM_HEAD + "[The Begin of Response 1]\n{response}\n[The End of Response 1]\n\n" + GRM_FORMAT
                  + "Scores: <the overall comprehensive score of the response in the boxed, e.g., \\boxed{{x}}>."),
        system="", prefill="",
        verdict=VerdictFormat(pattern=r"\\boxed\{\s*(\d+)\s*\}", scale=[1.0, 10.0])),
    "pairwise": ModeFormat(
        template=(GRM_HEAD + "[The Begin of Response 1]\n{a}\n[The End of Response 1]\n"
                  "[The Begin of Response 2]\n{b}\n[The End of Response 2]\n\n" + GRM_FORMAT
                  + "Scores: <the overall comprehensive score of all responses in order, separate by comma in the "
                    "boxed, e.g., \\boxed{{x, x}} if there exists 2 responeses>."),
        system="", prefill="",
        verdict=VerdictFormat(pattern=r"\\boxed\{([^{}]*)\}", separator=",", scale=[1.0, 10.0])),
}

# ---- ThinkPRM ---------------------------------------------------------------------------------------

THINKPRM = {"step": ModeFormat(
    template=("You are given a math problem and a proposed step-by-step solution:\n\n[Math Problem]\n\n{prompt}\n\n"
              "[Solution]\n\n{steps}\n\nReview and critique each step in the proposed solution to determine whether "
              "each step is correct. If the solution is incomplete, only verify the provided steps."),
    system="", prefill="\nLet's verify step by step:", step_line="Step {i}: {step}", verdict=BOXED_STEP)}

# ---- J1 ---------------------------------------------------------------------------------------------

J1 = {
    "pointwise": ModeFormat(
        template=("You are given a user question and a response from an AI assistant. Your task is to act as an "
                  "impartial judge and evaluate how well the response fulfills the user's instructions. Think "
                  "carefully about how to assess the quality of the response, then assign the response a score from "
                  "0 to 10, where a higher score means a better response.\n\n"
                  "Format your output like this:\n<think> your_thinking_process </think>\n"
                  "<score> your_score </score>\n\n"
                  "[User Question]\n{prompt}\n\n[The Start of the Assistant's Answer]\n{response}\n"
                  "[The End of the Assistant's Answer]"),
        system="", prefill="",
        verdict=VerdictFormat(pattern=r"<score>\s*(\d+(?:\.\d+)?)\s*</score>", answer_after="</think>",
                              scale=[0.0, 10.0])),
    "pairwise": ModeFormat(
        template=("You are given a user question and two responses from two AI assistants. Your task is to act as an "
                  "impartial judge and evaluate which response better follows the user's instructions and provides "
                  "a higher-quality answer. Avoid any position biases and ensure that the order in which the "
                  "responses were presented does not influence your decision.\n\n"
                  "First, provide your reasoning within <think> and </think> tags. Finally, provide your verdict "
                  "within <answer> and </answer> tags, strictly following this format:\n"
                  "- <answer> [[A]] </answer> if Assistant A is better\n"
                  "- <answer> [[B]] </answer> if Assistant B is better\n\n"
                  "[User Question]\n{prompt}\n\n[The Start of Assistant A's Answer]\n{a}\n"
                  "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{b}\n"
                  "[The End of Assistant B's Answer]"),
        system="", prefill="",
        verdict=VerdictFormat(pattern=r"<answer>\s*\[\[([AB])\]\]\s*</answer>", answer_after="</think>",
                              pick="only")),
}

# ---- Prometheus 2 -----------------------------------------------------------------------------------

PROMETHEUS_ABS_SYSTEM = ("You are a fair judge assistant tasked with providing clear, objective feedback based on "
                         "specific criteria, ensuring each assessment reflects the absolute standards set for "
                         "performance.")
PROMETHEUS_REL_SYSTEM = ("You are a fair judge assistant assigned to deliver insightful feedback that compares "
                         "individual performances, highlighting how each stands relative to others within the same "
                         "cohort.")
HELPFULNESS_RUBRIC = (
    "[Does the model provide relevant and useful responses to the user's needs or questions?]\n"
    "Score 1: The model's responses are irrelevant or unhelpful to the user's needs or queries.\n"
    "Score 2: The model sometimes provides helpful information, but often fails to address the user's actual needs "
    "or questions.\n"
    "Score 3: The model generally provides helpful responses that address the user's needs, though it may "
    "occasionally miss the mark.\n"
    "Score 4: The model regularly provides helpful responses that are well-aligned with the user's inquiries, with "
    "only rare inaccuracies.\n"
    "Score 5: The model consistently offers highly relevant and useful responses that perfectly cater to the user's "
    "needs and inquiries."
)


def _prometheus_abs(with_reference: bool) -> str:
    given = ("a response to evaluate, a reference answer that gets a score of 5, and a score rubric"
             if with_reference else "a response to evaluate, and a score rubric")
    ref = "###Reference Answer (Score 5):\n{reference}\n\n" if with_reference else ""
    return (
        "###Task Description:\nAn instruction (might include an Input inside it), " + given
        + " representing a evaluation criteria are given.\n"
        "1. Write a detailed feedback that assess the quality of the response strictly based on the given score "
        "rubric, not evaluating in general.\n"
        "2. After writing a feedback, write a score that is an integer between 1 and 5. You should refer to the score "
        "rubric.\n"
        "3. The output format should look as follows: \"(write a feedback for criteria) [RESULT] (an integer number "
        "between 1 and 5)\"\n"
        "4. Please do not generate any other opening, closing, and explanations.\n\n"
        "###The instruction to evaluate:\n{prompt}\n\n###Response to evaluate:\n{response}\n\n" + ref
        + "###Score Rubrics:\n" + HELPFULNESS_RUBRIC + "\n\n###Feedback: "
    )


PROMETHEUS_ABS_VERDICT = VerdictFormat(
    pattern=(r"(?i)(?:\[RESULT\]|\[SCORE\]|Score:?|score:?|Result:?|\[Result\]:?|score\s+of)\s*(?:\(|\[|\s)*(\d+)"
             r"(?:(?:\)|\]|\s|$)|(?:/\s*5|\s*out\s*of\s*5))?(?:\s*$)"),
    pick="first", scale=[1.0, 5.0])
PROMETHEUS = {
    "pointwise": ModeFormat(template=_prometheus_abs(False), system=PROMETHEUS_ABS_SYSTEM, prefill="",
                            verdict=PROMETHEUS_ABS_VERDICT),
    "reference": ModeFormat(template=_prometheus_abs(True), system=PROMETHEUS_ABS_SYSTEM, prefill="",
                            verdict=PROMETHEUS_ABS_VERDICT),
    "pairwise": ModeFormat(
        template=(
            "###Task Description:\nAn instruction (might include an Input inside it), a response to evaluate, and a "
            "score rubric representing a evaluation criteria are given.\n"
            "1. Write a detailed feedback that assess the quality of two responses strictly based on the given score "
            "rubric, not evaluating in general.\n"
            "2. After writing a feedback, choose a better response between Response A and Response B. You should "
            "refer to the score rubric.\n"
            "3. The output format should look as follows: \"(write a feedback for criteria) [RESULT] (A or B)\"\n"
            "4. Please do not generate any other opening, closing, and explanations.\n\n"
            "###Instruction:\n{prompt}\n\n###Response A:\n{a}\n\n###Response B:\n{b}\n\n"
            "###Score Rubric:\n" + HELPFULNESS_RUBRIC.split("\n")[0] + "\n\n###Feedback: "),
        system=PROMETHEUS_REL_SYSTEM, prefill="",
        verdict=VerdictFormat(
            pattern=(r"(?im)(?:\[RESULT\]|\[RESULT:\s*|\[Response\s+|\[Result\](?:\s+Response)?|\[Result:\s*|"
                     r"(?:^|\n)Result:?\s*)\s*(A|B)(?:\])?(?:\s*$)"),
            pick="first")),
}

PRESETS: dict[str, dict[str, ModeFormat]] = {
    "default": DEFAULT,
    "rm-r1": RM_R1,
    "rm-r1-reasoning": RM_R1_REASONING,
    "deepseek-grm": DEEPSEEK_GRM,
    "thinkprm": THINKPRM,
    "j1": J1,
    "prometheus": PROMETHEUS,
}
