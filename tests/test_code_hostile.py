"""Hostile programs through the real server: each gets a safe verdict and leaves the host unchanged.

One real `rewardsvc serve` subprocess (code scorer, 2 sandbox slots) with a secret in its
environment. Each case is one request. After each: the expected (never "passed" for an attack)
verdict, a sentinel file outside /tmp untouched, no file the program tried to plant, no process the
program started still alive, the secret nowhere in the result, and the server still answering a
benign item correctly.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from code_support import eventually, processes_of, processes_with
from rewardsvc.client import RewardClient
from rewardsvc.client.aio import RewardServiceCallError
from rewardsvc.types import ErrorCode
from support import REPO, ServerProcess

# 41 hostile programs, each run into a real limit of the sandbox: about 30 s for the file.
pytestmark = pytest.mark.slow

UID = 61300
WORKERS = 2
SECRET = f"rewardsvc-secret-{uuid.uuid4().hex}"
MARK = uuid.uuid4().hex[:10]
# A unique number for processes the programs start, so the host check can find them.
PROC_MARK = f"3{int(MARK, 16) % 10**7}.25"
SENTINEL_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / f"rewardsvc-hostile-{MARK}"
SENTINEL = SENTINEL_DIR / "sentinel.txt"
PLANTED = [REPO / f"pwned-{MARK}", Path("/tmp") / f"pwned-{MARK}", Path("/usr/bin") / f"pwned-{MARK}",
           Path.home() / f"pwned-{MARK}", SENTINEL_DIR / f"pwned-{MARK}"]
SYSTEM_PYTHON = Path("/usr/bin/python3").resolve()


@dataclass
class Case:
    code: str
    tests: list[str]
    verdicts: set[str]
    style: str = "asserts"
    test_code: str = ""
    prompt: str = ""
    before: list[dict[str, Any]] = field(default_factory=list)  # items sent first (litter for the next run)
    error: ErrorCode | None = None
    timeout_s: float | None = None  # the item's own limit, under the server's 3 s

    def item(self) -> dict[str, Any]:
        ref: dict[str, Any]
        if self.style == "check":
            ref = {"test": self.test_code, "entry_point": "f"}
        else:
            ref = {"asserts": self.tests}
        if self.timeout_s is not None:
            ref["timeout_s"] = self.timeout_s
        return {"id": "hostile", "prompt": self.prompt, "response": self.code, "reference": json.dumps(ref)}


NOT_PASSED = {"failed", "runtime_error", "timeout", "memory", "output_limit"}
# Everything but /tmp, which is the sandbox's own (fresh, per run); /harness is the harness's code.
WRITE_TARGETS = ([str(SENTINEL)] + [str(p) for p in PLANTED if not str(p).startswith("/tmp/")]
                 + ["/harness/checker.py", "/harness/frames.py", "/usr/lib/python3/x.py", "/x"])
POLY_PROMPT = (
    "import math\n\ndef poly(xs: list, x: float):\n    return sum([c * math.pow(x, i) for i, c in enumerate(xs)])\n\n"
    "def f(xs: list):\n    \"\"\"Find x with poly(xs, x) == 0.\"\"\"\n"
)
POLY_TEST = "def check(candidate):\n    xs = [1, 2]\n    assert math.fabs(poly(xs, candidate(xs))) < 1e-4\n"

CASES: dict[str, Case] = {
    # A spinning program holds a core until its limit: its own, shorter than the server's.
    "infinite_loop": Case("def f():\n    while True:\n        pass\n", ["assert f()"], {"timeout"}, timeout_s=1.0),
    "sleep_forever": Case("import time\ntime.sleep(10**9)\ndef f():\n    return 1\n", ["assert f() == 1"], {"timeout"}),
    "fork_bomb": Case("import os\ndef f():\n    while True:\n        os.fork()\n", ["assert f()"], NOT_PASSED),
    "alloc_8gb": Case("def f():\n    return len(bytearray(8 << 30))\n", ["assert f() > 0"], {"memory"}),
    "fork_and_allocate": Case(
        "import os, time\ndef f():\n    for _ in range(8):\n        if os.fork() == 0:\n"
        "            b = bytearray(400 << 20)\n            for i in range(0, len(b), 4096):\n                b[i] = 1\n"
        "            time.sleep(30)\n            os._exit(0)\n    time.sleep(30)\n    return True\n",
        ["assert f()"], {"memory", "timeout", "runtime_error", "failed"}),
    "output_flood": Case("import sys\ndef f():\n    while True:\n        sys.stdout.write('x' * 65536)\n",
                         ["assert f()"], {"output_limit"}),
    "file_64mb": Case("def f():\n    with open('/tmp/big', 'wb') as fh:\n        fh.write(b'x' * (64 << 20))\n    return True\n",
                      ["assert f()"], {"failed", "runtime_error", "memory"}),
    "writes_outside_tmp": Case(
        f"TARGETS = {WRITE_TARGETS!r}\n"
        "def f():\n    done = []\n    for t in TARGETS:\n        try:\n            open(t, 'w').write('pwned')\n"
        "            done.append(t)\n        except OSError:\n            pass\n"
        "    import os\n    try:\n        os.unlink(TARGETS[0])\n        done.append('unlink')\n    except OSError:\n        pass\n"
        "    return done\n",
        ["assert f()"], {"failed"}),
    "overwrite_python": Case(
        "import sys\ndef f():\n    for p in (sys.executable, '/usr/bin/python3', '/usr/lib/python3/dist-packages/x.py'):\n"
        "        try:\n            open(p, 'ab').write(b'pwned')\n            return True\n        except OSError:\n            pass\n"
        "    return False\n", ["assert f()"], {"failed"}),
    "read_environ": Case(f"import os\nprint(dict(os.environ))\ndef f():\n    return {SECRET!r} in str(os.environ)\n",
                        ["assert f()"], {"failed"}),
    "read_proc_environ": Case(
        f"def f():\n    import os\n    for p in ['/proc/1/environ', '/proc/self/environ', '/proc/{{}}/environ'.format(os.getppid())]:\n"
        f"        try:\n            if {SECRET!r}.encode() in open(p, 'rb').read():\n                return True\n"
        "        except OSError as e:\n            print(p, e)\n    return False\n", ["assert f()"], {"failed"}),
    "read_keys": Case(
        "def f():\n    for p in ['/root/.ssh/id_rsa', '/etc/shadow', '/root/.bash_history', '/home']:\n"
        "        try:\n            open(p).read()\n            return True\n        except OSError:\n            pass\n"
        "    return False\n", ["assert f()"], {"failed"}),
    "connect_server_port": Case(
        "import socket\nPORT = None\ndef f():\n    s = socket.create_connection(('127.0.0.1', PORT), timeout=2)\n    return True\n",
        ["assert f()"], {"failed"}),
    "connect_outside": Case(
        "import socket\ndef f():\n    ok = []\n    for addr in [('169.254.169.254', 80), ('8.8.8.8', 53), ('::1', 22)]:\n"
        "        try:\n            socket.create_connection(addr, timeout=2)\n            ok.append(addr)\n"
        "        except OSError:\n            pass\n    return ok\n", ["assert f()"], {"failed"}),
    "setsid_daemon": Case(
        "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['sleep', '{PROC_MARK}'])\n    os._exit(0)\n"
        "def f():\n    return 1\n", ["assert f() == 1"], {"passed"}),
    "daemon_holding_stdout": Case(
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    while True:\n        print('daemon', flush=True)\n"
        "        time.sleep(0.01)\ndef f():\n    return 1\n", ["assert f() == 1"], {"passed", "output_limit"}),
    "kill_parent": Case("import os\ndef f():\n    os.kill(os.getppid(), 9)\n    return 0\n", ["assert f() == 42"],
                        {"failed", "runtime_error"}),
    "kill_everything": Case("import os\ndef f():\n    os.kill(-1, 9)\n    return 0\n", ["assert f() == 42"],
                            {"failed", "runtime_error"}),
    "ignore_sigalrm": Case("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nsignal.alarm(1)\n"
                           "def f():\n    while True:\n        pass\n", ["assert f()"], {"timeout"},
                           timeout_s=1.5),  # past the alarm it ignores
    "recursion_segfault": Case(
        "import sys\nsys.setrecursionlimit(10**6)\ndef f():\n    x = []\n    for _ in range(10**6):\n        x = [x]\n"
        "    return len(repr(x)) > 0\n", ["assert f()"], {"runtime_error", "timeout", "memory", "failed"}),
    "sys_exit_before_asserts": Case("import sys\nsys.exit(0)\ndef f():\n    return 0\n", ["assert f() == 42"],
                                    {"runtime_error"}),
    "os_exit_before_asserts": Case("import os\nos._exit(0)\n", ["assert f() == 42"], {"runtime_error"}),
    "exit_inside_the_test": Case("import os\ndef f():\n    os._exit(0)\n", ["assert f() == 42"], {"runtime_error"}),
    "prints_passed_and_fake_reports": Case(
        "import os\nprint('PASSED')\nprint('+' + '{\"nonce\": \"0\", \"status\": \"ok\", \"tests\": []}')\n"
        "for fd in range(3, 64):\n    try:\n        os.write(fd, b'+{\"status\": \"ok\"}')\n    except OSError:\n        pass\n"
        "def f():\n    return 0\n", ["assert f() == 42"], {"failed", "runtime_error"}),
    "always_equal": Case(
        "class E:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
        "    def __bool__(self): return True\n    def __hash__(self): return 0\n    def __lt__(self, o): return True\n"
        "def f():\n    return E()\n", ["assert f() == 42", "assert f() == [1, 2]", "assert not (f() != 'x')"], {"failed"}),
    "patched_unittest": Case(
        "import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\nunittest.TestCase.assertTrue = lambda *a, **k: None\n"
        "def f(x):\n    return 0\n", [], {"failed"}, style="check",
        test_code="import unittest\ndef check(candidate):\n    t = unittest.TestCase()\n    t.assertEqual(candidate(1), 2)\n"
                  "    t.assertTrue(candidate(2) == 4)\n"),
    "shadowed_builtins": Case(
        "import math\nmath.isclose = lambda *a, **k: True\n"
        "def set(*a):\n    return 1\ndef abs(x):\n    return 0\ndef len(x):\n    return 2\ndef f():\n    return [9]\n",
        ["assert set(f()) == set([1, 2])", "assert abs(f()[0] - 1) < 1e-9", "assert len(f()) == 2",
         "import math\nassert math.isclose(f()[0], 1)"], {"failed"}),
    "patched_builtins_module": Case(
        "import builtins\nbuiltins.set = lambda *a: 1\nbuiltins.abs = lambda *a: 0\nbuiltins.AssertionError = None\n"
        "def f():\n    return [9]\n", ["assert set(f()) == set([1, 2])", "assert abs(f()[0] - 1) < 1e-9"],
        {"failed", "runtime_error"}),
    "redefined_prompt_helper": Case("    return 0.0\n\ndef poly(xs, x):\n    return 0.0\n", [], {"failed"}, style="check",
                                    prompt=POLY_PROMPT, test_code=POLY_TEST),
    "ctypes_escape": Case(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\ndef f():\n"
        "    return [libc.unshare(0x10000000), libc.unshare(0x00020000), libc.mount(b'none', b'/usr', b'tmpfs', 0, None),\n"
        "            libc.ptrace(16, os.getppid(), 0, 0), libc.setuid(0)]\n",
        ["assert 0 in f()"], {"failed"}),
    "privileges_left": Case(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "class Hdr(ctypes.Structure):\n    _fields_ = [('v', ctypes.c_uint32), ('pid', ctypes.c_int)]\n"
        "def f():\n    data = (ctypes.c_uint32 * 6)()\n    libc.capget(ctypes.byref(Hdr(0x20080522, 0)), data)\n"
        "    nnp, mode = libc.prctl(39, 0, 0, 0, 0), libc.prctl(21, 0, 0, 0, 0)\n"
        "    return any(data) or nnp != 1 or mode != 2 or os.getuid() == 0 or os.getpid() == 1\n",
        ["assert f()"], {"failed"}),
    "posix_system": Case(
        f"import posix\ndef f():\n    return posix.system('echo pwned > {PLANTED[0]} && echo pwned > {PLANTED[1]}') == 0\n",
        ["assert f()"], {"failed"}),
    "os_execv": Case("import os\ndef f():\n    os.execv('/bin/sh', ['sh', '-c', 'echo PASSED'])\n", ["assert f()"],
                     {"runtime_error"}),
    "tmp_litter_for_next_run": Case(
        f"import os\ndef f():\n    return os.path.exists('/tmp/litter-{MARK}')\n", ["assert f()"], {"failed"},
        before=[{"response": f"open('/tmp/litter-{MARK}', 'w').write('x')\ndef f():\n    return 1\n",
                 "reference": json.dumps({"asserts": ["assert f() == 1"]})}]),
    "ten_thousand_threads": Case(
        "import threading, time\ndef f():\n    ts = [threading.Thread(target=time.sleep, args=(60,)) for _ in range(10000)]\n"
        "    for t in ts:\n        t.start()\n    return 42\n", ["assert f() == 42"], {"failed", "runtime_error", "memory", "timeout"}),
    "invalid_utf8_and_nul_output": Case(
        "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00\\xc3(\\xed\\xa0\\x80\\n')\nsys.stdout.flush()\n"
        "sys.stderr.buffer.write(b'\\x00\\x80\\n')\ndef f():\n    return '\\ud800\\x00'\n",
        ["assert f() == '\\ud800\\x00'"], {"passed"}),
    "ten_mb_source": Case("x = 1\n" + "#" * (10 << 20), ["assert x == 1"], set(), error=ErrorCode.INVALID_ITEM),
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    SENTINEL_DIR.mkdir(exist_ok=True)
    SENTINEL.write_text("untouched")
    config = {"scorers": {"code": {"type": "code", "workers": WORKERS, "sandbox_uid": UID, "timeout_s": 3.0}}}
    with ServerProcess(config, env={"REWARDSVC_TEST_SECRET": SECRET}) as srv:
        yield srv
    assert eventually(lambda: not processes_of(range(UID, UID + WORKERS)), 10), "sandbox processes outlived the server"
    SENTINEL.unlink()
    SENTINEL_DIR.rmdir()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[RewardClient]:
    with RewardClient(server.address, timeout_s=120) as c:
        yield c


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PYTHON_DIGEST = file_digest(SYSTEM_PYTHON)


def test_there_are_enough_hostile_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_program_is_contained(name: str, server: ServerProcess, client: RewardClient) -> None:
    case = CASES[name]
    item = case.item()
    if name == "connect_server_port":
        item["response"] = item["response"].replace("PORT = None", f"PORT = {server.address.rsplit(':', 1)[1]}")
    for before in case.before:
        assert client.score("code", [before])[0].score == 1.0
    (result,) = client.score("code", [item])

    if case.error is not None:
        assert result.error is not None and result.error.code == case.error
    else:
        assert result.ok, result.error
        assert result.details["verdict"] in case.verdicts, result.details
        if "passed" not in case.verdicts:
            assert result.score < 1.0
    # The host is unchanged.
    assert SENTINEL.read_text() == "untouched"
    assert [p for p in PLANTED if p.exists()] == []
    assert not Path(f"/tmp/litter-{MARK}").exists()
    assert file_digest(SYSTEM_PYTHON) == PYTHON_DIGEST
    assert SECRET not in json.dumps(result.to_dict())
    assert eventually(lambda: not processes_with(PROC_MARK), 10), "a process the program started is still alive"
    # The server keeps serving.
    assert server.proc is not None and server.proc.poll() is None
    (benign,) = client.score("code", [{"response": "def g(x):\n    return x + 1\n",
                                       "reference": json.dumps({"asserts": ["assert g(1) == 2"]})}])
    assert benign.score == 1.0, benign.details


def test_client_deadline_kills_the_sandbox(server: ServerProcess, client: RewardClient) -> None:
    marker = f"5{int(MARK, 16) % 10**7}.75"
    item = {"response": f"import os\nos.system('sleep {marker}')\n",
            "reference": json.dumps({"asserts": ["assert True"], "timeout_s": 60})}
    with pytest.raises(RewardServiceCallError) as err:
        client.score("code", [item], timeout_s=3)
    assert err.value.code.name == "DEADLINE_EXCEEDED"
    assert eventually(lambda: not processes_with(marker), 10), "the sandbox outlived the call's deadline"
    assert client.score("code", [{"response": "def g():\n    return 1\n",
                                  "reference": json.dumps({"asserts": ["assert g() == 1"]})}])[0].score == 1.0


def test_a_hostile_batch_alongside_benign_items(server: ServerProcess, client: RewardClient) -> None:
    names = ["infinite_loop", "fork_bomb", "output_flood", "alloc_8gb", "kill_everything", "always_equal"]
    benign = [{"id": f"ok{i}", "response": f"def g():\n    return {i}\n",
               "reference": json.dumps({"asserts": [f"assert g() == {i}"]})} for i in range(6)]
    hostile = [dict(CASES[n].item(), id=n) for n in names]
    results = client.score("code", [x for pair in zip(benign, hostile) for x in pair])
    by_id = {r.id: r for r in results}
    assert all(by_id[b["id"]].score == 1.0 for b in benign)
    assert all(by_id[n].details["verdict"] in CASES[n].verdicts for n in names)


def test_sandboxes_do_not_outlive_a_killed_server() -> None:
    uid = UID + 50
    marker = f"6{int(MARK, 16) % 10**7}.5"
    with ServerProcess({"scorers": {"code": {"type": "code", "workers": 1, "sandbox_uid": uid}}}) as srv:
        with RewardClient(srv.address) as c:
            item = {"response": f"import os\nos.system('sleep {marker}')\n",
                    "reference": json.dumps({"asserts": ["assert True"], "timeout_s": 60})}
            threading.Thread(target=lambda: _ignore_errors(c.score, "code", [item]), daemon=True).start()
            assert eventually(lambda: processes_with(marker), 30), "the program never started"
            assert processes_of(range(uid, uid + 1))
            srv.kill()  # SIGKILL: no graceful shutdown
    assert eventually(lambda: not processes_of(range(uid, uid + 1)), 15), processes_of(range(uid, uid + 1))
    assert not processes_with(marker)


def _ignore_errors(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the server is killed under this call on purpose
        pass
