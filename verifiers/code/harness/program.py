"""Programs and tests on the harness's side: assembling the program, splitting `check` into tests.

Uses the C parser (`_ast` with compile's PyCF_ONLY_AST) directly: `import ast` pulls in enum and
contextlib, which would be a third of a run's startup.
"""

from __future__ import annotations

import _ast

_NAME_LIMIT = 300
_ERROR_LIMIT = 1000


def _parse(source: str, filename: str = "<unknown>"):
    return compile(source, filename, "exec", _ast.PyCF_ONLY_AST)


def _walk(node):
    todo = [node]
    while todo:
        node = todo.pop()
        yield node
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, _ast.AST):
                todo.append(value)
            elif isinstance(value, list):
                todo.extend(v for v in value if isinstance(v, _ast.AST))


def _segment(lines: list[bytes], node) -> str:
    """The source text of `node` (AST column offsets count UTF-8 bytes)."""
    try:
        first, last = node.lineno - 1, node.end_lineno - 1
        if first == last:
            text = lines[first][node.col_offset:node.end_col_offset]
        else:
            text = b"".join([lines[first][node.col_offset:], *lines[first + 1:last], lines[last][:node.end_col_offset]])
        return text.decode("utf-8", "replace")
    except (AttributeError, IndexError, TypeError):
        return ""


def _parses(source: str) -> bool:
    try:
        _parse(source)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def defines(code: str, name: str) -> bool:
    """Whether `code` defines `name` at top level (def, class, assignment or import)."""
    try:
        tree = _parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        import re

        return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(|^{re.escape(name)}\s*=", code, re.M) is not None
    for node in tree.body:
        if isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (_ast.Assign, _ast.AnnAssign)):
            targets = node.targets if isinstance(node, _ast.Assign) else [node.target]
            if any(isinstance(t, _ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, (_ast.Import, _ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return True
    return False


def _referenced_names(tree) -> set[str]:
    return {n.id for n in _walk(tree) if isinstance(n, _ast.Name)}


def _top_level_names(source: str) -> set[str]:
    """Names a (Python) prompt defines at top level; empty when it isn't Python."""
    if not source.strip():
        return set()
    try:
        tree = _parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (_ast.Assign, _ast.AnnAssign)):
            targets = node.targets if isinstance(node, _ast.Assign) else [node.target]
            out.update(t.id for t in targets if isinstance(t, _ast.Name))
        elif isinstance(node, (_ast.Import, _ast.ImportFrom)):
            out.update((a.asname or a.name.split(".")[0]) for a in node.names)
    return out


def compose_program(prompt: str, code: str, entry_point: str) -> str:
    """HumanEval/MBPP: prompt + completion, unless the response defines the entry point itself."""
    if defines(code, entry_point):
        # The prompt (imports, helpers) goes first when it is Python; the response's def wins.
        return (prompt.rstrip() + "\n\n" if prompt.strip() and _parses(prompt) else "") + code
    return prompt + code


def _is_test(stmt) -> bool:
    if isinstance(stmt, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
        return False
    if isinstance(stmt, _ast.Assert) and isinstance(stmt.test, _ast.Constant):
        return False  # `assert True, "..."` filler in HumanEval checks: not a test
    return any(isinstance(n, _ast.Assert) for n in _walk(stmt))


_WRAP = (
    "__harness__.begin(0)\n"
    "try:\n    pass\n"
    "except Exception as __harness_exc__:\n    __harness__.failed(0, __harness_exc__)\n"
    "else:\n    __harness__.passed(0)\n"
)


def _relocate(nodes, ref) -> None:
    """Give the wrapper's nodes the wrapped statement's position (tracebacks point at the test)."""
    for top in nodes:
        for node in _walk(top):
            if "lineno" in node._attributes:
                node.lineno, node.col_offset = ref.lineno, ref.col_offset
                node.end_lineno, node.end_col_offset = ref.end_lineno, ref.end_col_offset


def split_check(tree, source: str) -> list[str]:
    """Turn each top-level assert-bearing statement of `check` into its own recorded test.

    Returns the tests' names (their source); an empty list leaves `check` as one test.
    """
    check = None
    for node in tree.body:
        if isinstance(node, _ast.FunctionDef) and node.name == "check":
            check = node
    if check is None:
        return []
    lines = source.encode("utf-8", "surrogatepass").splitlines(keepends=True)
    names: list[str] = []
    body: list = []
    for stmt in check.body:
        if not _is_test(stmt):
            body.append(stmt)
            continue
        index = len(names)
        names.append(_clip(_segment(lines, stmt) or f"test {index}", _NAME_LIMIT))
        begin, wrapped = _parse(_WRAP).body
        _relocate([begin, wrapped], stmt)
        begin.value.args[0].value = index
        wrapped.body = [stmt]
        wrapped.handlers[0].body[0].value.args[0].value = index
        wrapped.orelse[0].value.args[0].value = index
        body.extend([begin, wrapped])
    if names:
        check.body = body
    return names


class Recorder:
    """`__harness__` in the tests' namespace: records each test's outcome as it happens."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.outcomes: list[tuple[bool, str | None] | None] = [None] * len(names)
        self.current: int | None = None

    def begin(self, index: int) -> None:
        self.current = index

    def passed(self, index: int) -> None:
        self.outcomes[index] = (True, None)
        self.current = None

    def failed(self, index: int, exc: BaseException) -> None:
        self.outcomes[index] = (False, describe(exc))
        self.current = None

    def fill(self, error: str) -> None:
        """Mark the test in progress and every test not run as failed with `error`."""
        for i, outcome in enumerate(self.outcomes):
            if outcome is None:
                self.outcomes[i] = (False, error if i == self.current or self.current is None else f"not run: {error}")

    def tests(self) -> list[dict]:
        return [{"name": n, "passed": bool(o and o[0]), "error": None if o is None else o[1]}
                for n, o in zip(self.names, self.outcomes)]


def describe(exc: BaseException) -> str:
    name = getattr(exc, "remote_type", None) or type(exc).__name__
    try:
        message = str(exc)
    except Exception:
        message = ""
    text = f"{name}: {message}" if message else name
    tb = getattr(exc, "remote_traceback", "")
    if tb and not isinstance(exc, AssertionError):
        text += "\n" + tb
    return _clip(text, _ERROR_LIMIT)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
