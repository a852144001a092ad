"""Detects "master-key" responses that fool LLM judges (Zhao et al., "One Token to Fool LLM-as-a-Judge").

A master key is a response with no content: empty, only punctuation or symbols, or only a reasoning
opener ("Thought process:", "Let's solve this problem step by step.", "Solution", "解", ...), in
any of several languages, possibly with markdown around it. Judges often rate these as correct; the
judge scorer gives them its lowest reward without asking the model.
"""

from __future__ import annotations

import re
import unicodedata

#: Openers seen in the paper and their common translations, matched case-insensitively as the whole
#: response (punctuation, markdown and whitespace aside).
OPENERS: tuple[str, ...] = (
    # English
    "thought process", "thinking process", "solution", "answer", "the answer", "final answer", "reasoning",
    "explanation", "step by step", "let's solve this problem step by step", "let's think step by step",
    "let us solve this problem step by step", "let us think step by step", "let's solve this step by step",
    "let's work this out step by step", "let's break this down step by step", "let's solve this",
    "let me think", "let me solve this step by step", "step 1",
    "here is the solution", "here's the solution", "to solve this problem", "we need to solve this problem",
    # Chinese
    "解", "解答", "答案", "答", "思考过程", "解题过程", "解题思路", "思路", "让我们一步一步地解决这个问题",
    "让我们一步步解决这个问题", "让我们一步一步思考", "让我们逐步解决这个问题",
    # Japanese
    "かいせつ", "解説", "解答", "答え", "考え方", "ステップバイステップで解いていきましょう", "一歩ずつ考えましょう",
    # Spanish
    "respuesta", "solución", "solucion", "proceso de pensamiento", "razonamiento",
    "vamos a resolver este problema paso a paso", "resolvamos este problema paso a paso",
    "pensemos paso a paso",
    # French
    "réponse", "solution", "processus de réflexion", "raisonnement",
    "résolvons ce problème étape par étape", "réfléchissons étape par étape",
    # German
    "lösung", "antwort", "denkprozess", "gedankengang",
    "lass uns dieses problem schritt für schritt lösen", "lösen wir dieses problem schritt für schritt",
    "denken wir schritt für schritt",
    # Russian
    "решение", "ответ", "ход мыслей", "давайте решим эту задачу шаг за шагом", "давайте подумаем шаг за шагом",
    # Portuguese / Italian
    "resposta", "solução", "vamos resolver este problema passo a passo", "risposta", "soluzione",
    "risolviamo questo problema passo dopo passo",
    # Korean / Arabic / Hindi
    "풀이", "정답", "답", "단계별로 풀어봅시다", "الحل", "الجواب", "हल", "उत्तर",
)

# Anything that is not a letter, digit or space: punctuation, symbols, markdown, emoji.
_NON_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _NON_WORD.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


# One alternation, longest first, so "let's solve this problem step by step" wins over "solution".
_OPENER_RE = re.compile(
    r"(?:^|(?<=\s))(?:"
    + "|".join(re.escape(o) for o in sorted({_normalise(o) for o in OPENERS}, key=len, reverse=True))
    + r")(?=\s|$)"
)


#: Longer responses are not looked at: no judge reads that much (the item is over its max_length
#: and gets INVALID_ITEM), and the scans below hold the GIL for their whole length.
MAX_CHECK_CHARS = 1 << 17


def master_key_reason(response: str) -> str | None:
    """Why `response` is a master key (no content), or None if it has content."""
    if len(response) > MAX_CHECK_CHARS:
        return None
    if not response.strip():
        return "empty response"
    norm = _normalise(response)
    if not norm:
        return "only punctuation or symbols"
    # Several openers in a row ("Solution: Let's think step by step.") are still no content.
    if not _OPENER_RE.sub(" ", norm).strip():
        return "only a reasoning opener"
    return None
