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
        if isinstance(node, (_ast.Import, _ast.ImportFrom)) and any(
                (a.asname or a.name.split(".")[0]) == name for a in node.names):
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


# ---- the problem statement's code ----------------------------------------------------------------
#
# Tests may call helpers that the problem statement defines (HumanEval/38's `encode_cyclic` next to
# the `decode_cyclic` asked for). The tests must see the statement's own helpers, never the
# program's copies, whatever form the statement came in: Python (a completion prompt), code fenced
# or inlined in a chat or instruction prompt, or the reference's `prompt` field.

_FENCE = ("```", "~~~")
_PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3"})
_CODE_STARTS = ("def ", "async def ", "class ", "import ", "from ", "@")
_DEFINITIONS = (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef, _ast.Import, _ast.ImportFrom)


def statement_code(text: str) -> str:
    """The Python a problem statement defines: all of it when the text is Python, else the
    definitions (def, class, import, constant assignment) found in its fenced blocks and in
    unfenced code in its prose. Text that isn't code is skipped, never guessed at."""
    if not text.strip():
        return ""
    if _parses(text):
        return text
    pieces = [kept for block in _code_regions(text) if (kept := _definitions(block))]
    return "\n\n\n".join(pieces) + "\n" if pieces else ""


def _code_regions(text: str):
    """Fenced python (or untagged) blocks, and runs of unfenced lines that start like code at
    column 0 and continue with indented or blank lines."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        fence = next((f for f in _FENCE if stripped.startswith(f)), None)
        if fence is not None:
            tag = stripped.lstrip(fence[0]).strip().split(" ")[0].lower()
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i])
                i += 1
            i += 1
            if tag in _PYTHON_TAGS:
                yield _dedent(body)
            continue
        if line.startswith(_CODE_STARTS):
            body = [line]
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i][0] in " \t)]}"
                                      or lines[i].startswith(_CODE_STARTS)):
                if lines[i].strip().startswith(_FENCE):
                    break
                body.append(lines[i])
                i += 1
            yield "\n".join(body) + "\n"
            continue
        i += 1


def _dedent(lines: list[str]) -> str:
    indents = [len(s) - len(s.lstrip()) for s in lines if s.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(s[cut:] for s in lines) + "\n"


def _definitions(block: str) -> str:
    """The top-level definitions of a block of code; a block that doesn't parse as a whole is tried
    one definition at a time."""
    try:
        tree = _parse(block)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        parts = []
        for chunk in _split_at_definitions(block):
            try:
                parts.append(_kept_source(_parse(chunk), chunk))
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
        return "\n\n".join(p for p in parts if p)
    return _kept_source(tree, block)


def _split_at_definitions(block: str) -> list[str]:
    chunks: list[list[str]] = []
    for line in block.splitlines():
        if line.startswith(_CODE_STARTS) and not (chunks and chunks[-1][-1].startswith("@")):
            chunks.append([])
        if chunks:
            chunks[-1].append(line)
    return ["\n".join(c) + "\n" for c in chunks]


def _kept_source(tree, source: str) -> str:
    lines = source.splitlines()
    kept = []
    for node in tree.body:
        if isinstance(node, _DEFINITIONS) or (isinstance(node, (_ast.Assign, _ast.AnnAssign))
                                             and node.value is not None and _is_literal(node.value)):
            first = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
            kept.append("\n".join(lines[first - 1:node.end_lineno]))
    return "\n\n".join(kept)


def _is_literal(node) -> bool:
    return all(isinstance(n, (_ast.Constant, _ast.Tuple, _ast.List, _ast.Set, _ast.Dict, _ast.UnaryOp,
                              _ast.BinOp, _ast.expr_context, _ast.operator, _ast.unaryop)) for n in _walk(node))


def statement_names(source: str, entry_point: str | None) -> tuple[set[str], set[str]]:
    """(trusted, provided): the statement's top-level names the tests must see as the statement
    defines them, and those the program provides: the entry point and stubs (a def whose body is
    only a docstring, `pass`, `...` or `raise NotImplementedError`; a class of nothing but stubs)."""
    try:
        tree = _parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set(), set()
    stubs = {n.name for n in tree.body if isinstance(n, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef))
             and _is_stub(n)}
    provided = stubs | ({entry_point} if entry_point else set())
    return _top_level_names(source) - provided, provided


def _is_stub(node) -> bool:
    body = node.body
    if body and isinstance(body[0], _ast.Expr) and isinstance(body[0].value, _ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    for stmt in body:
        if isinstance(stmt, _ast.Pass) or (isinstance(stmt, _ast.Expr) and isinstance(stmt.value, _ast.Constant)):
            continue
        if isinstance(stmt, _ast.Raise) and stmt.exc is not None and "NotImplementedError" in {
                n.id for n in _walk(stmt.exc) if isinstance(n, _ast.Name)}:
            continue
        if isinstance(node, _ast.ClassDef) and (
                (isinstance(stmt, (_ast.FunctionDef, _ast.AsyncFunctionDef)) and _is_stub(stmt))
                or (isinstance(stmt, _ast.AnnAssign) and stmt.value is None)):
            continue
        return False
    return True


def compose_program(prompt: str, code: str, entry_point: str) -> str:
    """HumanEval/MBPP: prompt + completion, unless the response defines the entry point itself.

    `prompt` is the item's prompt when it is Python, else the statement's code (statement_code):
    the program can use the statement's imports and helpers either way."""
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

    def __init__(self, names: list[str], broken=None) -> None:
        self.names = names
        self.outcomes: list[tuple[bool, str | None] | None] = [None] * len(names)
        self.current: int | None = None
        # Why the program's process can no longer answer (None while it can): a test that swallowed
        # that (a bare `except:`) and went on has not passed.
        self.broken = broken

    def begin(self, index: int) -> None:
        self.current = index

    def passed(self, index: int) -> None:
        why = self.broken() if self.broken is not None else None
        self.outcomes[index] = (True, None) if why is None else (False, why)
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
