"""rewardsvc.heap: start-up frees its garbage and freezes what lives on (startup_heap); the process's last
collection is skipped, and what a process does at exit still happens around it (exit handlers; modules'
globals cleared, so their files are flushed and closed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PLUGIN = """
OUT = None
def start(path):
    global OUT
    OUT = open(path, "w")
    OUT.write("written, never flushed by hand")
class Cycle:
    def __init__(self): self.me = self
KEPT = [Cycle() for _ in range(1000)]
"""

SCRIPT = """
import atexit, gc, importlib, sys
from pathlib import Path
atexit.register(lambda: Path(sys.argv[2]).write_text(str(gc.get_freeze_count())))  # runs after the freeze
from rewardsvc.heap import skip_gc_at_exit
skip_gc_at_exit()
skip_gc_at_exit()  # once per process however often called
atexit.register(lambda: Path(sys.argv[3]).write_text(str(gc.get_freeze_count())))  # registered later: runs first
importlib.import_module("plugin").start(sys.argv[1])  # as the registry imports a scorer: no name kept
MAIN_OUT = open(sys.argv[4], "w")  # the script's own global, beside a function (its globals are in a cycle)
MAIN_OUT.write("the script's too")
def uses_the_globals(): return MAIN_OUT
"""


def test_exit_handlers_and_module_teardown_still_run_around_the_skipped_collection(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text(PLUGIN)
    out, after, before, main = (tmp_path / f"{name}.txt" for name in ("out", "after", "before", "main"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(after), str(before), str(main)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "written, never flushed by hand"
    assert main.read_text() == "the script's too"
    assert int(before.read_text()) == 0  # handlers registered later saw the heap as usual
    assert int(after.read_text()) >= 1000  # then everything alive went to the permanent generation


STARTUP = """
import gc, weakref
from rewardsvc.heap import startup_heap

class Node:
    def __init__(self): self.me = self  # a reference cycle: only the collector frees it

with startup_heap():
    assert not gc.isenabled()  # paused while start-up builds what lives on
    kept = [Node() for _ in range(1000)]
    dropped = Node()
    gone = weakref.ref(dropped)
    del dropped  # start-up garbage, in a cycle
assert gc.isenabled()
assert gone() is None, "start-up garbage was frozen instead of freed"
assert gc.get_freeze_count() >= 1000  # what start-up kept is out of the collector's sight

gc.disable()
try:
    with startup_heap():
        raise RuntimeError("a scorer failed to start")
except RuntimeError:
    pass
assert not gc.isenabled()  # a collector paused before is left paused, failure or not
print("ok")
"""


def test_startup_heap_frees_start_up_garbage_then_freezes_what_lives_on() -> None:
    proc = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
