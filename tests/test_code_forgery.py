"""Forged passes and harness breakage through the real code scorer (issue 14, holes 1-2, weakness 6).

Every attack here is a program that would pass (or turn its 0 into an `internal` item error) if the
harness trusted something the program controls: its own copies of the problem statement's helpers,
the replies it writes on the executor->checker channel, or the harness's process. Each attack family
runs in one request through a real ScoringService with real sandboxes; the honest twin of each item
passes, so a test that fails to forge can't be a test that can't pass. One test repeats a sample of
the families through a real server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from code_support import InProcessService, humaneval
from rewardsvc.client import RewardClient
from support import ServerProcess

UID = 61500
WORKERS = 2
NOT_PASSED = {"failed", "runtime_error", "timeout", "memory", "output_limit"}


@pytest.fixture(scope="module")
def svc() -> Iterator[InProcessService]:
    service = InProcessService({"scorers": {"code": {"type": "code", "workers": WORKERS, "sandbox_uid": UID,
                                                     "timeout_s": 5.0}}})
    yield service
    service.close()


def assert_failed_not_internal(result: Any, what: str) -> None:
    """A failure the trainer can see: a score of 0 with a verdict, never an item error."""
    assert result.ok, f"{what}: item error {result.error}"
    assert result.score == 0.0, f"{what}: scored {result.score}: {result.details}"
    assert result.details["verdict"] in NOT_PASSED, f"{what}: {result.details}"


# ---- hole 1: the problem statement's helpers, whatever the prompt's format ------------------------

HELPER_TASKS = ["HumanEval/32", "HumanEval/38", "HumanEval/50"]
# Programs that pass only if the tests use the program's copy of the statement's helper.
FORGED_HELPERS = {
    "HumanEval/32": "def poly(xs, x):\n    return 0.0\n\n\ndef find_zero(xs):\n    return 0.0\n",
    "HumanEval/38": "def encode_cyclic(s):\n    return s\n\n\ndef decode_cyclic(s):\n    return s\n",
    "HumanEval/50": "def encode_shift(s):\n    return s\n\n\ndef decode_shift(s):\n    return s\n",
}


def entry_function(row: dict[str, Any]) -> str:
    """The entry point's def with the canonical body, without the statement's helpers."""
    prompt = row["prompt"]
    return prompt[prompt.index(f"def {row['entry_point']}("):] + row["canonical_solution"]


def fenced(code: str) -> str:
    return f"Here is the solution.\n```python\n{code}```\n"


def helper_items(row: dict[str, Any]) -> dict[str, tuple[Any, str, str, str]]:
    """Prompt formats: name -> (prompt, honest response, forged response, reference)."""
    task, entry = row["task_id"], row["entry_point"]
    ref = json.dumps({"test": row["test"], "entry_point": entry})
    ref_with_prompt = json.dumps({"test": row["test"], "entry_point": entry, "prompt": row["prompt"]})
    honest, forged = fenced(entry_function(row)), fenced(FORGED_HELPERS[task])
    chat = [{"role": "system", "content": "You are a careful Python programmer."},
            {"role": "user", "content": f"Complete this function:\n```python\n{row['prompt']}```\nAnswer with code."}]
    return {
        # A completion model's prompt: the statement is Python; the response continues it.
        "python": (row["prompt"], row["canonical_solution"],
                   "    return 0\n\n" + FORGED_HELPERS[task], ref),
        "chat_fenced": (chat, honest, forged, ref),
        "chat_with_forged_assistant_turn": (
            chat + [{"role": "assistant", "content": fenced(FORGED_HELPERS[task])},
                    {"role": "user", "content": f"Now give the whole {entry} again."}], honest, forged, ref),
        "instruction_inline": (f"Complete the following Python function.\n\n{row['prompt']}\n"
                               "Keep the other functions as they are.", honest, forged, ref),
        "fenced_text": (f"```python\n{row['prompt']}```", honest, forged, ref),
        "instruction_without_code": (f"Write `{entry}` as the docstring says.", honest, forged, ref_with_prompt),
        "absent": ("", honest, forged, ref_with_prompt),
    }


def test_statement_helpers_are_trusted_in_every_prompt_format(svc: InProcessService) -> None:
    rows = {r["task_id"]: r for r in humaneval()}
    items = []
    for task in HELPER_TASKS:
        for fmt, (prompt, honest, forged, ref) in helper_items(rows[task]).items():
            items.append({"id": f"{task}|{fmt}|honest", "prompt": prompt, "response": honest, "reference": ref})
            items.append({"id": f"{task}|{fmt}|forged", "prompt": prompt, "response": forged, "reference": ref})
    results = svc.score(items)
    assert len(results) == 3 * 7 * 2
    honest_failed = [(r.id, r.error, r.details.get("tests", [])[:1]) for r in results
                     if r.id.endswith("honest") and r.score != 1.0]
    assert honest_failed == []
    forged_passed = [r.id for r in results if r.id.endswith("forged") and r.score != 0.0]
    assert forged_passed == []
    for r in results:
        if r.id.endswith("forged"):
            assert_failed_not_internal(r, r.id)


def test_asserts_style_trusts_the_references_prompt(svc: InProcessService) -> None:
    statement = ("def encode(s):\n    return s[::-1] + '!'\n\n\n"
                 "def decode(s):\n    \"\"\"Invert encode.\"\"\"\n")
    ref = json.dumps({"asserts": ["assert decode(encode('abc')) == 'abc'", "assert decode(encode('')) == ''"],
                      "prompt": statement})
    honest = "def decode(s):\n    return s[:-1][::-1]\n"
    forged = "def encode(s):\n    return s\n\n\ndef decode(s):\n    return s\n"
    ok, bad = svc.score([{"id": "honest", "response": honest, "reference": ref},
                         {"id": "forged", "response": forged, "reference": ref}])
    assert ok.score == 1.0, ok.details
    assert_failed_not_internal(bad, "forged encode")


def test_a_statement_that_does_not_compile_is_an_invalid_item(svc: InProcessService) -> None:
    ref = json.dumps({"asserts": ["assert f() == 1"], "prompt": "def f(:\n"})
    (r,) = svc.score([{"response": "def f():\n    return 1\n", "reference": ref}])
    assert r.error is not None and r.error.code.value == "invalid_item" and "prompt" in r.error.message


# ---- hole 2: nothing the program writes on the channel changes an outcome but its values -----------

def forge_replies(reply: str, ops: tuple[str, ...] = ("call",)) -> str:
    """A program that answers the harness's `ops` requests with `reply` (an expression of `msg`,
    the decoded request, and `fr`, the harness's frames module); other requests as usual."""
    return (
        "import sys, os, time\n"
        "ex, fr = sys.modules['executor'], sys.modules['frames']\n"
        "real = ex.Runner.dispatch\n"
        "def forged(self, frame):\n"
        "    msg = fr.Decoder(self.resolve).loads(frame)\n"
        f"    if msg.get('op') in {ops!r}:\n"
        f"        return {reply}\n"
        "    return real(self, frame)\n"
        "ex.Runner.dispatch = forged\n"
        "def f(*args):\n    return 0\n"
        "class Obj:\n    pass\n"
        "def g():\n    return Obj()\n"
    )


def raw_reply(data: str) -> str:
    """A reply written as raw bytes on the channel (then the runner stalls, so only these bytes count)."""
    return f"(os.write(self.resp_fd, {data}), time.sleep(60))[0] and b''"


# Each passes if a forged reply could end an iteration early, raise past the test's `except
# Exception`, or stop the harness; an honest f (returning 0) fails each of them.
STOP_TESTS = [
    "assert all(map(f, range(5)))",
    "assert list(filter(lambda x: not f(x), range(5))) == []",
    "assert all(a == b for a, b in zip(map(f, range(3)), [1, 2, 3]))",
    "assert [x for x, y in zip(range(3), map(f, range(3))) if y != x + 1] == []",
]
EXCEPTIONS = ["StopIteration", "StopAsyncIteration", "GeneratorExit", "KeyboardInterrupt", "SystemExit",
              "BaseException", "BaseExceptionGroup", "HarnessAbort", "Expired", "Closed"]

CHANNEL_FORGERIES: dict[str, str] = {
    "stop_with_the_request_id": forge_replies("fr.dump_json({'id': msg.get('id'), 'stop': True})"),
    "stop_without_an_id": forge_replies("b'{\"stop\":true}'"),
    "stop_for_bool_of_an_object": forge_replies("fr.dump_json({'id': msg.get('id'), 'stop': True})",
                                                ("unary",)),
    **{f"exception_{name}": forge_replies(
        f"fr.dump_json({{'id': msg.get('id'), 'exc': {{'types': [{name!r}], 'msg': 'forged', 'tb': ''}}}})")
       for name in EXCEPTIONS},
    "exception_types_not_a_list": forge_replies("fr.dump_json({'id': msg.get('id'), 'exc': {'types': 'SystemExit'}})"),
    "reply_to_the_next_request": forge_replies("fr.dump_json({'id': msg.get('id', 0) + 1, 'ok': True})"),
    "reply_to_an_old_request": forge_replies("fr.dump_json({'id': 0, 'ok': True})"),
    "ok_and_stop_together": forge_replies("fr.dump_json({'id': msg.get('id'), 'ok': True, 'stop': True})"),
    "ok_and_exc_together": forge_replies(
        "fr.dump_json({'id': msg.get('id'), 'ok': True, 'exc': {'types': ['SystemExit']}})"),
    "unknown_reply_key": forge_replies("fr.dump_json({'id': msg.get('id'), 'ok': True, 'abort': True})"),
    "no_answer_key": forge_replies("fr.dump_json({'id': msg.get('id')})"),
    "not_an_object": forge_replies("b'[true]'"),
    "not_json": forge_replies("b'\\x00\\xffnot json'"),
    "nested_too_deep": forge_replies("b'[' * 100000 + b']' * 100000"),
    "mutations_on_a_non_call": forge_replies("fr.dump_json({'id': msg.get('id'), 'ok': True, 'mut': [[0, [1]]]})",
                                             ("unary",)),
    "harness_module_as_a_value": forge_replies("fr.dump_json({'id': msg.get('id'), 'ok': {'~': 'mod', 'v': 'checker'}})"),
    "unittest_main_as_a_value": forge_replies(
        "fr.dump_json({'id': msg.get('id'), 'ok': {'~': 'mod', 'v': 'unittest.__main__'}})"),
    "asyncio_main_as_a_value": forge_replies(
        "fr.dump_json({'id': msg.get('id'), 'ok': {'~': 'mod', 'v': 'asyncio.__main__'}})"),
    "header_over_the_frame_limit": forge_replies(raw_reply("(1 << 31).to_bytes(4, 'big')")),
    "truncated_frame": forge_replies(raw_reply("(100).to_bytes(4, 'big') + b'{\"id\":'")),
    "extra_frame_for_the_next_request": forge_replies(
        "(fr.write_frame(self.resp_fd, fr.dump_json({'id': msg.get('id', 0) + 1, 'ok': True})),"
        " fr.dump_json({'id': msg.get('id'), 'ok': 0}))[1]"),
}


@pytest.mark.slow  # many sandboxed runs: about 5 s
def test_forged_replies_change_no_outcome(svc: InProcessService) -> None:
    tests = STOP_TESTS + ["assert all(map(bool, [g()]))"]
    items = [{"id": name, "response": program, "reference": json.dumps({"asserts": tests})}
             for name, program in CHANNEL_FORGERIES.items()]
    items.append({"id": "honest", "response": "def f(x):\n    return x + 1\n\ndef g():\n    return 1\n",
                  "reference": json.dumps({"asserts": tests})})
    results = {r.id: r for r in svc.score(items)}
    assert results["honest"].score == 1.0, results["honest"].details
    for name in CHANNEL_FORGERIES:
        assert_failed_not_internal(results[name], name)
        passed = [t["name"] for t in results[name].details["tests"] if t["passed"]]
        assert passed == [], f"{name}: {passed}"


def test_a_protocol_break_says_so(svc: InProcessService) -> None:
    (r,) = svc.score([{"response": CHANNEL_FORGERIES["stop_with_the_request_id"],
                       "reference": json.dumps({"asserts": ["assert all(map(f, range(5)))"]})}])
    assert r.details["verdict"] == "runtime_error" and "protocol" in r.details["error"], r.details


def test_forged_stop_in_a_humaneval_check(svc: InProcessService) -> None:
    """check-style tests: the forged stop inside `check` must not end it early either."""
    test = ("def check(candidate):\n    assert all(map(lambda x: candidate(x) == x + 1, range(4)))\n"
            "    assert list(filter(lambda x: candidate(x) != x + 1, range(4))) == []\n")
    ref = json.dumps({"test": test, "entry_point": "f"})
    forged = CHANNEL_FORGERIES["stop_with_the_request_id"]
    honest = "def f(x):\n    return x + 1\n"
    bad, good = svc.score([{"id": "forged", "response": forged, "reference": ref},
                           {"id": "honest", "response": honest, "reference": ref}])
    assert good.score == 1.0, good.details
    assert_failed_not_internal(bad, "forged stop in check")


def test_a_test_that_swallows_a_broken_channel_has_not_passed(svc: InProcessService) -> None:
    """A bare `except:` in a test catches the harness's abort too; the test still must not pass."""
    test = "try:\n    f(0)\nexcept:\n    pass\nelse:\n    assert False"
    forged = CHANNEL_FORGERIES["stop_with_the_request_id"]
    (r,) = svc.score([{"response": forged, "reference": json.dumps({"asserts": [test, "assert f(1) == 2"]})}])
    assert_failed_not_internal(r, "swallowed abort")
    assert "protocol" in r.details["tests"][0]["error"], r.details


def test_a_real_stop_iteration_in_the_program_is_an_exception_not_the_end(svc: InProcessService) -> None:
    program = "def f(x):\n    return next(iter([]))\n"
    (r,) = svc.score([{"response": program, "reference": json.dumps({"asserts": STOP_TESTS[:2]})}])
    assert_failed_not_internal(r, "StopIteration raised by the program")
    assert all("StopIteration" in t["error"] for t in r.details["tests"]), r.details


def test_program_modules_and_generators_still_cross(svc: InProcessService) -> None:
    """What the channel checks must not break: generators end with a real stop, modules arrive."""
    program = ("import math, cmath, collections.abc as abc\nimport datetime\n"
               "def gen(n):\n    yield from range(n)\n"
               "def mod():\n    return math\n")
    tests = ["assert list(gen(3)) == [0, 1, 2]", "assert mod() is math", "assert math.isclose(math.pi, 3.14159, rel_tol=1e-3)",
             "assert cmath.sqrt(-1) == 1j", "assert datetime.date(2020, 1, 2).day == 2",
             "assert isinstance([], abc.Sequence)"]
    (r,) = svc.score([{"response": program, "reference": json.dumps({"asserts": tests})}])
    assert r.score == 1.0, r.details


# ---- weakness 6: breaking the harness is failing --------------------------------------------------

HARNESS_BREAKERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sigint_to_the_harness_at_load": (
        "import os, signal\nos.kill(1, signal.SIGINT)\nimport time\ntime.sleep(0.2)\ndef f():\n    return 0\n",
        {"asserts": ["assert f() == 1"]}),
    "sigint_to_the_harness_in_a_test": (
        "import os, signal, time\ndef f():\n    os.kill(1, signal.SIGINT)\n    time.sleep(0.2)\n    return 0\n",
        {"asserts": ["assert f() == 1", "assert f() == 2"]}),
    "every_signal_to_the_harness": (
        "import os, signal, time\ndef f():\n    for s in range(1, 65):\n        if s not in (9, 19):\n"
        "            try:\n                os.kill(1, s)\n            except OSError:\n                pass\n"
        "    time.sleep(0.2)\n    return 0\n",
        {"asserts": ["assert f() == 1"]}),
    "kill_the_harness": ("import os\ndef f():\n    os.kill(1, 9)\n    os.kill(-1, 9)\n    return 0\n",
                         {"asserts": ["assert f() == 1"]}),
    "sigint_to_the_harness_from_a_case": (
        "import os, signal, time\nos.kill(1, signal.SIGINT)\ntime.sleep(0.2)\nprint(1)\n",
        {"cases": [{"input": "", "output": "2"}, {"input": "", "output": "3"}]}),
    "system_exit_reply": (forge_replies(
        "fr.dump_json({'id': msg.get('id'), 'exc': {'types': ['SystemExit'], 'msg': '0', 'tb': ''}})"),
        {"asserts": ["assert f() == 1"]}),
    "unittest_main_reply": (forge_replies(
        "fr.dump_json({'id': msg.get('id'), 'ok': {'~': 'mod', 'v': 'unittest.__main__'}})"),
        {"asserts": ["assert f() == 1"]}),
    "forged_exec_reply": (
        "import gc, sys\nfr = sys.modules['frames']\n"
        "runner = [o for o in gc.get_objects() if type(o).__name__ == 'Runner'][0]\n"
        "fr.write_frame(runner.resp_fd, fr.dump_json({'id': 1, 'ok': {'f': {'~': 'h', 'v': 999, 't': 'x', 'c': True}}}))\n"
        "def f():\n    return 0\n", {"asserts": ["assert f() == 1"]}),
    "huge_reply_value": (forge_replies("fr.dump_json({'id': msg.get('id'), 'ok': [[]] * 4_000_000})"),
                         {"asserts": ["assert f() == 1"]}),
    "close_the_channel": ("import os\ndef f():\n    os.closerange(3, 1024)\n    return 0\n",
                          {"asserts": ["assert f() == 1"]}),
}


def test_breaking_the_harness_is_a_failure_not_an_internal_error(svc: InProcessService) -> None:
    items = [{"id": name, "response": program, "reference": json.dumps(ref)}
             for name, (program, ref) in HARNESS_BREAKERS.items()]
    results = {r.id: r for r in svc.score(items)}
    for name in HARNESS_BREAKERS:
        assert_failed_not_internal(results[name], name)
        assert results[name].details.get("error") or results[name].details["verdict"] == "failed", results[name].details
    (benign,) = svc.score([{"response": "def f():\n    return 1\n", "reference": json.dumps({"asserts": ["assert f() == 1"]})}])
    assert benign.score == 1.0


def test_sigint_to_the_harness_changes_nothing_for_a_correct_program(svc: InProcessService) -> None:
    program = "import os, signal, time\ndef f():\n    os.kill(1, signal.SIGINT)\n    time.sleep(0.1)\n    return 1\n"
    (r,) = svc.score([{"response": program, "reference": json.dumps({"asserts": ["assert f() == 1"] * 3})}])
    assert r.score == 1.0, r.details


# ---- through a real server --------------------------------------------------------------------------

@pytest.mark.slow
def test_forgeries_through_a_real_server() -> None:
    row = {r["task_id"]: r for r in humaneval()}["HumanEval/38"]
    prompt, honest, forged, ref = helper_items(row)["chat_fenced"]
    stop_ref = json.dumps({"asserts": STOP_TESTS})
    sigint, sigint_ref = HARNESS_BREAKERS["sigint_to_the_harness_in_a_test"]
    items = [
        {"id": "helper-honest", "prompt": prompt, "response": honest, "reference": ref},
        {"id": "helper-forged", "prompt": prompt, "response": forged, "reference": ref},
        {"id": "stop-forged", "response": CHANNEL_FORGERIES["stop_with_the_request_id"], "reference": stop_ref},
        {"id": "sigint", "response": sigint, "reference": json.dumps(sigint_ref)},
    ]
    config = {"scorers": {"code": {"type": "code", "workers": 1, "sandbox_uid": UID + 10, "timeout_s": 5.0}}}
    with ServerProcess(config) as srv, RewardClient(srv.address, timeout_s=120) as client:
        results = {r.id: r for r in client.score("code", items)}
    assert results["helper-honest"].score == 1.0, results["helper-honest"].details
    for name in ("helper-forged", "stop-forged", "sigint"):
        assert_failed_not_internal(results[name], name)
