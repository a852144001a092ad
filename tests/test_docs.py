"""README.md's scorer reference is generated from the Config/Options dataclasses (issue 18): this fails
when a field, default or help text changed without `python -m rewardsvc.docs`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rewardsvc.docs import BEGIN, END, README, generate, replace_block
from rewardsvc.registry import SCORERS, scorer_class

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_block_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert replace_block(text, generate()) == text, "README's scorer reference is stale: run python -m rewardsvc.docs"


def test_every_scorer_says_what_it_reads_and_every_field_is_listed() -> None:
    block = generate()
    for type_name in SCORERS:
        cls = scorer_class(type_name)
        assert cls.item_format, f"{cls.__name__}.item_format is empty: say which item fields it reads"
        assert f"#### `{type_name}`" in block and cls.item_format in block
    assert "| `batching.max_batch_size` | int | `64` |" in block  # nested dataclasses expand
    assert "| `components[].weight` |" in block  # lists of dataclasses too
    assert '| `aggregation` | "" \\| "min" \\| "last" \\| "product" \\| "mean" \\| "pure" | `""` |' in block


def test_check_mode_says_what_to_run(tmp_path: Path) -> None:
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n")
    proc = subprocess.run([sys.executable, "-m", "rewardsvc.docs", "--check", "--readme", str(stale)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "python -m rewardsvc.docs" in proc.stderr
    subprocess.run([sys.executable, "-m", "rewardsvc.docs", "--readme", str(stale)], cwd=REPO, check=True,
                   capture_output=True)
    assert "#### `math`" in stale.read_text() and "\nold\n" not in stale.read_text()
