"""The copy-paste configs of README.md's "Trainer integrations" section, for the tests that run them."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def trainer_snippet(trainer: str, lang: str) -> str:
    """The first ```lang block under `### <trainer>` in "## Trainer integrations"."""
    text = README.read_text()
    section = text[text.index("## Trainer integrations"):]
    section = section[:section.index("\n## ", 1)]
    part = section[section.index(f"### {trainer}\n"):]
    m = re.search(rf"```{lang}\n(.*?)```", part, re.S)
    assert m, f"README: no ```{lang} block under ### {trainer}"
    return m.group(1)
