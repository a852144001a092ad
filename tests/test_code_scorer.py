"""The `code` scorer in-process through ScoringService: test styles, verdicts, details, limits, pool.

Real sandboxes throughout (bubblewrap, per-run namespaces, seccomp); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from code_support import InProcessService, eventually, processes_of, processes_with
from rewardsvc.config import parse_config
from rewardsvc.errors import ConfigError
from rewardsvc.types import ErrorCode, item_from_dict

UID = 61100
WORKERS = 2


@pytest.fixture(scope="module")
def svc() -> Iterator[InProcessService]:
    service = InProcessService({"scorers": {"code": {"type": "code", "workers": WORKERS, "sandbox_uid": UID,
                                                     "timeout_s": 5.0}}})
    yield service
    service.close()
    assert eventually(lambda: not processes_of(range(UID, UID + WORKERS)), 10), "sandbox processes left"


def asserts(*tests: str, **extra: Any) -> str:
    return json.dumps({"asserts": list(tests), **extra})


def one(svc: InProcessService, response: str, reference: str, prompt: str = "", **options: Any):
    (result,) = svc.score([{"id": "x", "prompt": prompt, "response": response, "reference": reference}], **options)
    return result


ADD_PROMPT = 'def add(a, b):\n    """Add two numbers."""\n'
ADD_TEST = json.dumps({"test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert True\n"
                               "    assert candidate(-1, 1) == 0\n    assert candidate('a', 'b') == 'ab'\n",
                       "entry_point": "add"})


def test_humaneval_style_completion_passes_with_per_test_details(svc: InProcessService) -> None:
    r = one(svc, "    print('adding')\n    return a + b\n", ADD_TEST, prompt=ADD_PROMPT)
    assert r.ok and r.score == 1.0
    d = r.details
    assert d["verdict"] == "passed" and d["tests_passed"] == d["tests_total"] == 3  # `assert True` is filler
    assert [t["name"] for t in d["tests"]] == ["assert candidate(1, 2) == 3", "assert candidate(-1, 1) == 0",
                                              "assert candidate('a', 'b') == 'ab'"]
    assert "adding" in d["stdout_tail"] and d["time_s"] > 0 and d["cpu_s"] >= 0 and d["memory_kb"] > 0


def test_partial_credit_and_all_or_nothing(svc: InProcessService) -> None:
    wrong = "    return a + b if isinstance(a, int) else None\n"
    r = one(svc, wrong, ADD_TEST, prompt=ADD_PROMPT)
    assert r.details["verdict"] == "failed" and r.score == pytest.approx(2 / 3)
    failed = [t for t in r.details["tests"] if not t["passed"]]
    assert len(failed) == 1 and failed[0]["error"] == "AssertionError"
    assert one(svc, wrong, ADD_TEST, prompt=ADD_PROMPT, all_or_nothing=True).score == 0.0


def test_fenced_full_definition_uses_the_prompts_imports(svc: InProcessService) -> None:
    prompt = "from typing import List\n\ndef total(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n"
    response = "Sure!\n```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```\nDone."
    ref = json.dumps({"test": "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n", "entry_point": "total"})
    assert one(svc, response, ref, prompt=prompt).details["verdict"] == "passed"


def test_asserts_style_each_assert_is_a_test(svc: InProcessService) -> None:
    r = one(svc, "def f(x):\n    return x * 2\n", asserts("assert f(1) == 2", "assert f(2) == 5", "assert f('a') == 'aa'"))
    assert [t["passed"] for t in r.details["tests"]] == [True, False, True]
    assert r.score == pytest.approx(2 / 3)


def test_stdin_stdout_cases_compare_tokens(svc: InProcessService) -> None:
    program = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b, end='  \\n\\n')\n"
    ref = json.dumps({"cases": [{"input": "1 2\n", "output": "3"}, {"input": "2 2", "output": "4\n"},
                                {"input": "5\n5\n", "output": "11"}]})
    r = one(svc, program, ref)
    assert [t["passed"] for t in r.details["tests"]] == [True, True, False]
    assert "expected '11', got '10'" in r.details["tests"][2]["error"]
    crash = one(svc, "raise ValueError('boom')", json.dumps({"cases": [{"input": "", "output": "1"}]}))
    assert crash.details["verdict"] == "failed" and "ValueError: boom" in crash.details["tests"][0]["error"]


def test_cases_each_get_a_fresh_tmp(svc: InProcessService) -> None:
    program = ("import os\nprint(sorted(os.listdir('/tmp')))\n"
               "open('/tmp/left-by-a-case', 'w').write('x')\n")
    ref = json.dumps({"cases": [{"output": "[]"}, {"output": "[]"}]})
    assert one(svc, program, ref).details["verdict"] == "passed"


def test_program_objects_generators_exceptions_and_in_place_changes(svc: InProcessService) -> None:
    program = (
        "class Node:\n"
        "    def __init__(self, v, nxt=None):\n        self.v, self.nxt = v, nxt\n"
        "def length(node):\n    return 0 if node is None else 1 + length(node.nxt)\n"
        "def count(n):\n    yield from range(n)\n"
        "def positive(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"
        "def sort_in_place(xs):\n    xs.sort()\n"
    )
    tests = [
        "assert length(Node(1, Node(2, Node(3)))) == 3",
        "n = Node(5)\nn.v = 7\nassert n.v == 7",
        "assert list(count(3)) == [0, 1, 2]",
        "try:\n    positive(-1)\n    raised = False\nexcept ValueError as e:\n    raised = 'negative' in str(e)\nassert raised",
        "xs = [3, 1, 2]\nsort_in_place(xs)\nassert xs == [1, 2, 3]",
        "assert Node(1) != Node(1)",  # program objects compare by identity on the harness's side
    ]
    r = one(svc, program, asserts(*tests))
    assert [t["passed"] for t in r.details["tests"]] == [True] * len(tests), r.details


def test_program_that_does_not_load_is_a_runtime_error(svc: InProcessService) -> None:
    r = one(svc, "def f(:\n    pass\n", asserts("assert f() == 1"))
    assert r.details["verdict"] == "runtime_error" and "SyntaxError" in r.details["error"] and r.score == 0.0


def test_missing_entry_point_fails_every_test(svc: InProcessService) -> None:
    r = one(svc, "def other():\n    return 1\n", ADD_TEST)
    assert r.details["verdict"] == "failed" and r.score == 0.0
    assert all("does not define `add`" in t["error"] for t in r.details["tests"])


def test_bad_tests_and_bad_references_are_invalid_items(svc: InProcessService) -> None:
    r = one(svc, "x = 1", asserts("assert (", "assert True"))
    assert r.error is not None and r.error.code == ErrorCode.INVALID_ITEM and "does not compile" in r.error.message
    r = one(svc, "x = 1", json.dumps({"test": "def check(c): pass"}))
    assert r.error is not None and r.error.code == ErrorCode.INVALID_ITEM and "entry_point" in r.error.message
    r = one(svc, "x" * (2 << 20), asserts("assert True"))
    assert r.error is not None and r.error.code == ErrorCode.INVALID_ITEM and "max_source_bytes" in r.error.message


def test_request_timeout_and_item_memory_limit(svc: InProcessService) -> None:
    r = one(svc, "def f():\n    while True:\n        pass\n", asserts("assert f()"), timeout_s=1)
    assert r.details["verdict"] == "timeout" and r.score == 0.0
    r = one(svc, "def f():\n    return len(bytearray(200 << 20))\n", asserts("assert f() > 0", memory_mb=64))
    assert r.details["verdict"] == "memory", r.details


def test_a_batch_mixes_verdicts_without_interference(svc: InProcessService) -> None:
    items = [{"id": str(i), "response": f"def f():\n    return {i}\n", "reference": asserts(f"assert f() == {i % 3}")}
             for i in range(12)]
    results = svc.score(items)
    assert [r.id for r in results] == [str(i) for i in range(12)]
    assert [r.score for r in results] == [1.0 if i % 3 == i else 0.0 for i in range(12)]


def test_cancelling_a_call_kills_its_sandboxes(svc: InProcessService) -> None:
    marker = f"4{uuid.uuid4().int % 10**8}.5"
    program = f"import os\nos.system('sleep {marker}')\n"
    item = item_from_dict({"id": "c", "response": program, "reference": asserts("assert True", timeout_s=60)})

    async def cancel_midway() -> bool:
        task = asyncio.ensure_future(svc.service.score("code", [item], {}))
        started = False
        for _ in range(400):
            started = bool(processes_with(marker))
            if started:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return started

    assert svc.call(cancel_midway()), "the program never started"
    assert eventually(lambda: not processes_with(marker), 10), "the cancelled run's process survived"
    assert one(svc, "def f():\n    return 1\n", asserts("assert f() == 1")).score == 1.0


def test_queue_bound_gives_resource_exhausted() -> None:
    small = InProcessService({"scorers": {"code": {"type": "code", "workers": 1, "queue_limit": 1,
                                                   "sandbox_uid": UID + 10}}})
    try:
        # Four programs (identical ones would be one run: server.dedupe).
        items = [{"id": str(i), "response": f"import time\ntime.sleep(0.3)  # {i}\n", "reference": asserts("assert True")}
                 for i in range(4)]
        results = small.score(items)
        codes = [r.error.code if r.error else None for r in results]
        # one running, one waiting, the rest refused at once
        assert codes == [None, None, ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.RESOURCE_EXHAUSTED]
        assert "queue_limit" in results[2].error.message
        assert small.score(items[:1])[0].score == 1.0
    finally:
        small.close()


def test_missing_bubblewrap_refuses_to_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rewardsvc.service import ScoringService

    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no bwrap on it
    service = ScoringService(parse_config({"scorers": {"code": {"type": "code", "sandbox_uid": UID + 20}}}))
    with pytest.raises(RuntimeError, match="apt-get install bubblewrap"):
        asyncio.run(service.start())


def test_unsafe_mode_warns_at_start_and_still_scores(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rewardsvc.code"):
        unsafe = InProcessService({"scorers": {"code": {"type": "code", "workers": 1, "unsafe_no_isolation": True}}})
    try:
        assert any("WITHOUT isolation" in rec.getMessage() for rec in caplog.records)
        assert unsafe.score([{"response": "def f():\n    return 2\n", "reference": asserts("assert f() == 2")}])[0].score == 1.0
    finally:
        unsafe.close()


def test_config_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"scorers": {"code": {"type": "code", "wrokers": 2}}})
    with pytest.raises(ValueError, match="sandbox_uid"):
        from rewardsvc.scorers.code import CodeConfig, CodeScorer

        CodeScorer("code", CodeConfig(sandbox_uid=7))


@pytest.mark.slow  # waits out the harness backstop: ~3 s
def test_tests_that_hang_the_harness_hit_the_parents_backstop(svc: InProcessService) -> None:
    ref = json.dumps({"test": "def check(candidate):\n    while True:\n        pass\n", "entry_point": "f",
                      "timeout_s": 1})
    r = one(svc, "def f():\n    return 1\n", ref)
    assert r.details["verdict"] == "timeout" and r.score == 0.0
    assert one(svc, "def f():\n    return 1\n", asserts("assert f() == 1")).score == 1.0


def test_a_slot_whose_sandbox_died_is_restarted() -> None:
    uid = UID + 30
    lone = InProcessService({"scorers": {"code": {"type": "code", "workers": 1, "sandbox_uid": uid,
                                                  "cgroups": False}}})
    try:
        item = {"response": "def f():\n    return 3\n", "reference": asserts("assert f() == 3")}
        assert lone.score([item])[0].score == 1.0
        zygotes = [pid for pid, cmd in processes_of(range(uid, uid + 1)) if "zygote" in cmd]
        assert zygotes
        for pid in zygotes:  # bwrap and the zygote: killing one may already have ended the other
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert eventually(lambda: not processes_of(range(uid, uid + 1)), 10)
        assert lone.score([item])[0].score == 1.0  # a fresh sandbox for the slot
    finally:
        lone.close()
    assert eventually(lambda: not processes_of(range(uid, uid + 1)), 10)


def test_sandbox_uids_are_leased_per_service() -> None:
    from rewardsvc.verifiers.code.uids import lease_uids

    first = lease_uids(2, UID + 40)
    try:
        with pytest.raises(RuntimeError, match="in use by another rewardsvc process"):
            lease_uids(1, UID + 41)
        auto_a, auto_b = lease_uids(3), lease_uids(3)
        assert auto_a.first >= 200_000 and auto_b.first >= auto_a.first + 3
        auto_a.release()
        auto_b.release()
    finally:
        first.release()
    lease_uids(2, UID + 40).release()  # free again once released
