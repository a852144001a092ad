"""HumanEval and MBPP through the code scorer: every reference solution passes, broken ones fail.

All 164 HumanEval canonical solutions, each also with its body replaced by `pass` and by a wrong
constant return; all 427 MBPP (sanitized) reference programs. One request per data set, real
sandboxes, the scorer's default limits.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from code_support import InProcessService, humaneval, humaneval_item, humaneval_mutants, mbpp, mbpp_item

# Hundreds of reference programs and mutants through the real sandbox: 5-15 s per test.
pytestmark = pytest.mark.slow

UID = 61200


@pytest.fixture(scope="module")
def svc() -> Iterator[InProcessService]:
    service = InProcessService({"scorers": {"code": {"type": "code", "sandbox_uid": UID}}})
    yield service
    service.close()


def failures(results) -> list[str]:
    return [f"{r.id}: {r.error or r.details.get('verdict')} {r.details.get('error', '')[:200]} "
            f"{[t.get('error', '')[:200] for t in r.details.get('tests', []) if not t['passed']][:2]}"
            for r in results if r.score != 1.0]


def test_all_humaneval_canonical_solutions_pass(svc: InProcessService) -> None:
    rows = humaneval()
    assert len(rows) == 164
    results = svc.score([humaneval_item(r) for r in rows])
    assert failures(results) == []
    assert all(r.details["verdict"] == "passed" for r in results)


def test_every_humaneval_mutant_fails(svc: InProcessService) -> None:
    items = [humaneval_item(r, body, f"{r['task_id']}/{kind}")
             for r in humaneval() for kind, body in humaneval_mutants(r).items()]
    results = svc.score(items)
    passed = [r.id for r in results if r.details.get("verdict") == "passed" or r.score == 1.0]
    assert passed == []
    assert all(r.ok and r.details["verdict"] in ("failed", "runtime_error") for r in results), failures(results)


def test_all_mbpp_reference_programs_pass(svc: InProcessService) -> None:
    rows = mbpp()
    assert len(rows) == 427
    # MbppEval/123 (amicable numbers below 10,000) needs ~5 s of CPU: more than the default limit
    # on a busy 2-core machine.
    results = svc.score([mbpp_item(r) for r in rows], timeout_s=60)
    assert failures(results) == []
