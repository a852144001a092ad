"""The sandbox's seccomp filter denies by default (issue 14, weakness 9), and what programs need still works.

Through the real code scorer: syscalls the allow-list doesn't name (new ones such as memfd_secret and
landlock_create_ruleset, numbers no kernel has assigned) fail with ENOSYS or EPERM inside a run, while
programs using threads, subprocesses, files, pipes, polling, timers, signals, mmap, sqlite3 and ctypes
pass. HumanEval, MBPP (test_code_datasets.py) and the hostile suite (test_code_hostile.py) run under
the same filter.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator

import pytest

from code_support import InProcessService
from rewardsvc.verifiers.code.seccomp import ALLOWED, DENIED, ZYGOTE_EXTRA, build_filter_bpf

UID = 61600

# x86_64 numbers of syscalls newer than the allow-list, and of ones it leaves out on purpose.
UNLISTED_SYSCALLS = {
    "landlock_create_ruleset": (444, [0, 0, 1]),  # flags=VERSION: answers with the ABI version when allowed
    "landlock_restrict_self": (446, [-1, 0]),
    "memfd_secret": (447, [0]),
    "process_mrelease": (448, [-1, 0]),
    "futex_waitv": (449, [0, 0, 0, 0, 0]),
    "set_mempolicy_home_node": (450, [0, 0, 0, 0]),
    "cachestat": (451, [0, 0, 0, 0]),
    "map_shadow_stack": (453, [0, 4096, 0]),
    "listmount": (458, [0, 0, 0, 0]),
    "lsm_list_modules": (461, [0, 0, 0]),
    "mseal": (462, [0, 0, 0]),
    "unassigned_1000": (1000, []),
    "memfd_create": (319, [0, 0]),
    "shmget": (29, [0, 4096, 0o1000 | 0o600]),
    "mbind": (237, [0, 0, 0, 0, 0, 0]),
    "modify_ldt": (154, [0, 0, 0]),
    "io_setup": (206, [1, 0]),
    "setuid": (105, [0]),
    "unshare": (272, [0x10000000]),
    "socket": (41, [2, 1, 0]),
}

PROBE = f"""
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYSCALLS = {UNLISTED_SYSCALLS!r}

def not_refused():
    out = {{}}
    for name, (nr, args) in SYSCALLS.items():
        ctypes.set_errno(0)
        ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
        err = ctypes.get_errno()
        if not (ret == -1 and err in (errno.ENOSYS, errno.EPERM)):
            out[name] = (ret, errno.errorcode.get(err, err))
    return out
"""

LIBRARY_PROGRAMS = {
    "threads": "import threading, time\ndef f():\n    out = []\n"
               "    ts = [threading.Thread(target=lambda: (time.sleep(0.01), out.append(1))) for _ in range(8)]\n"
               "    [t.start() for t in ts]\n    [t.join() for t in ts]\n    return len(out) == 8\n",
    "thread_pool": "from concurrent.futures import ThreadPoolExecutor\ndef f():\n    with ThreadPoolExecutor(4) as ex:\n"
                   "        return sum(ex.map(lambda x: x * x, range(10))) == 285\n",
    "process_pool": "import multiprocessing as mp\ndef f():\n    with mp.get_context('fork').Pool(2) as p:\n"
                    "        return sum(p.map(abs, range(-5, 5))) == 25\n",
    "subprocess_fork_system": "import subprocess, os, sys\ndef f():\n"
                              "    r = subprocess.run([sys.executable, '-c', 'print(1)'], capture_output=True, text=True)\n"
                              "    pid = os.fork()\n    if pid == 0:\n        os._exit(3)\n    _, st = os.waitpid(pid, 0)\n"
                              "    return r.stdout.strip() == '1' and os.waitstatus_to_exitcode(st) == 3 and os.system('true') == 0\n",
    "files": "import os, tempfile, shutil, pathlib, glob, json, csv, pickle\ndef f():\n    d = tempfile.mkdtemp()\n"
             "    p = pathlib.Path(d) / 'a.json'\n    p.write_text(json.dumps({'a': 1}))\n"
             "    shutil.copy2(p, pathlib.Path(d) / 'b.json')\n    shutil.copyfile(p, pathlib.Path(d) / 'c.json')\n"
             "    os.mkfifo(os.path.join(d, 'fifo'))\n    with open(os.path.join(d, 'x.csv'), 'w', newline='') as fh:\n"
             "        csv.writer(fh).writerow([1, 2])\n    fd, name = tempfile.mkstemp()\n    os.write(fd, pickle.dumps([1]))\n"
             "    os.fsync(fd)\n    os.close(fd)\n    n = len(glob.glob(d + '/*'))\n    os.truncate(name, 0)\n"
             "    os.rename(name, name + '.x')\n    os.symlink(name + '.x', name + '.l')\n    os.link(name + '.x', name + '.h')\n"
             "    os.utime(name + '.x')\n    os.chmod(name + '.x', 0o600)\n    os.readlink(name + '.l')\n"
             "    shutil.rmtree(d)\n    return n == 5\n",
    "stdlib": "import math, re, collections, heapq, itertools, fractions, decimal, json, datetime, random, functools\n"
              "import bisect, statistics, string, textwrap, copy, typing, dataclasses, enum, operator, cmath, array\n"
              "import struct, zlib, base64, hashlib, uuid, time, resource, os, gc, locale, platform, faulthandler\n"
              "import unicodedata, secrets, tracemalloc, sqlite3\n"
              "def f():\n    faulthandler.enable()\n    tracemalloc.start()\n    tracemalloc.stop()\n"
              "    con = sqlite3.connect('/tmp/db.sqlite')\n    con.execute('create table t(x)')\n    con.commit()\n    con.close()\n"
              "    x = [math.comb(30, 7), re.findall(r'a+', 'aaab'), collections.Counter('aab'), heapq.nsmallest(2, [3, 1, 2]),\n"
              "         list(itertools.permutations(range(3))), fractions.Fraction(1, 3) * 3, decimal.Decimal('1.1') + 1,\n"
              "         datetime.datetime.now().astimezone(), random.random(), statistics.mean([1, 2, 3]),\n"
              "         hashlib.sha256(b'x').hexdigest(), uuid.uuid4(), time.process_time(), os.cpu_count(), os.urandom(4),\n"
              "         resource.getrusage(resource.RUSAGE_SELF), platform.platform(), locale.getpreferredencoding(),\n"
              "         secrets.token_hex(4), zlib.compress(b'x'), unicodedata.name('a'), os.getcwd(), os.times()]\n"
              "    gc.collect()\n    return len(x) == 23\n",
    "signals_and_timers": "import signal, time\ndef f():\n    hits = []\n"
                          "    signal.signal(signal.SIGALRM, lambda *a: hits.append(1))\n"
                          "    signal.setitimer(signal.ITIMER_REAL, 0.01)\n    time.sleep(0.2)\n    return hits == [1]\n",
    "polling": "import select, os, selectors\ndef f():\n    r, w = os.pipe()\n    os.write(w, b'x')\n"
               "    s = selectors.DefaultSelector()\n    s.register(r, selectors.EVENT_READ)\n"
               "    p = select.poll()\n    p.register(r, select.POLLIN)\n"
               "    return len(s.select(0.1)) + len(p.poll(10)) + len(select.select([r], [], [], 0.1)[0]) == 3\n",
    "deep_recursion": "import sys\nsys.setrecursionlimit(100000)\ndef g(n):\n    return 0 if n == 0 else 1 + g(n - 1)\n"
                      "def f():\n    return g(20000) == 20000\n",
    "ctypes_callback": "import ctypes\ndef f():\n    cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)\n"
                       "    return cb(1) == 2\n",
    "mmap_and_shared_memory": "import mmap\nfrom multiprocessing import shared_memory\ndef f():\n"
                              "    m = mmap.mmap(-1, 4096)\n    m[0:1] = b'x'\n"
                              "    s = shared_memory.SharedMemory(create=True, size=1024)\n    s.buf[0] = 1\n    v = s.buf[0]\n"
                              "    s.close()\n    s.unlink()\n    return m[0:1] == b'x' and v == 1\n",
}


@pytest.fixture(scope="module")
def svc() -> Iterator[InProcessService]:
    service = InProcessService({"scorers": {"code": {"type": "code", "workers": 2, "sandbox_uid": UID,
                                                     "timeout_s": 20.0}}})
    yield service
    service.close()


def test_the_filter_lists_are_disjoint_and_build() -> None:
    assert not set(ALLOWED) & set(DENIED)
    assert set(ZYGOTE_EXTRA) - set(ALLOWED) == set(ZYGOTE_EXTRA)
    assert not {"memfd_secret", "landlock_create_ruleset", "clone3"} & set(ALLOWED + ZYGOTE_EXTRA)
    assert build_filter_bpf() != build_filter_bpf(for_zygote=True)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers are x86_64's")
def test_syscalls_off_the_allow_list_are_refused(svc: InProcessService) -> None:
    (r,) = svc.score([{"response": PROBE, "reference": json.dumps({"asserts": ["assert not_refused() == {}"]})}])
    assert r.score == 1.0, r.details


def test_programs_using_the_standard_library_still_pass(svc: InProcessService) -> None:
    items = [{"id": name, "response": program, "reference": json.dumps({"asserts": ["assert f()"]})}
             for name, program in LIBRARY_PROGRAMS.items()]
    items.append({"id": "stdin_cases", "response": "a, b = map(int, input().split())\nprint(a + b)\n",
                  "reference": json.dumps({"cases": [{"input": "1 2", "output": "3"}, {"input": "2 2", "output": "4"}]})})
    failed = {r.id: r.details.get("tests") for r in svc.score(items) if r.score != 1.0}
    assert failed == {}
