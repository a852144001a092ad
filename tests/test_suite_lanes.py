"""`make test-fast` skips importing files whose every test is slow by reading their text
(tests/conftest.py: pytest_ignore_collect); the text test must agree with what Python reads. The files it
does import bring in no model or plotting stack: every xdist worker imports every one of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import HEAVY, fast_lane, heavy_imports_by_file
from support import ALL_SLOW

TESTS = Path(__file__).parent


def _marks_all_slow(tree: ast.Module) -> bool:
    """A module-level `pytestmark = pytest.mark.slow`, as pytest applies it."""
    return any(isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["pytestmark"]
               and ast.unparse(node.value) == "pytest.mark.slow" for node in tree.body)


def test_the_text_check_finds_exactly_the_files_that_mark_every_test_slow() -> None:
    found = {p.name for p in TESTS.glob("test_*.py") if ALL_SLOW.search(p.read_text())}
    marked = {p.name for p in TESTS.glob("test_*.py") if _marks_all_slow(ast.parse(p.read_text()))}
    assert found == marked
    assert "test_ray_serve.py" in found and "test_server.py" not in found  # the check is not vacuous


def test_the_fast_lanes_test_files_import_no_model_or_plotting_stack(request: pytest.FixtureRequest) -> None:
    if not fast_lane(request.config):
        pytest.skip("the all-slow files import them at collection here: `make test-fast` checks this")
    assert heavy_imports_by_file == {}, (
        f"importing these test files imports some of {', '.join(HEAVY)}: {heavy_imports_by_file}. Each of make "
        "test-fast's workers imports every test file: import them inside the tests that use them")
