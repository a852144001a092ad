"""A process's last garbage collection, skipped: nothing it would free outlives the exit anyway."""

from __future__ import annotations

import atexit
import gc
import sys

_registered = False


def skip_gc_at_exit() -> None:
    """At interpreter exit, move every object to gc's permanent generation before the interpreter's own
    last collection, which then has nothing to walk. For the entry points of processes that exit when
    their work is done (the CLI, its server, a training rank); once per process, however often called.

    That collection walks every tracked object: a process holding torch, transformers and a model spent
    1-3 CPU-s exiting (a classifier server: 2.4-2.8 s from SIGTERM to exit, 0.4 s with this).

    What exit still does: the exit handlers registered after this one run before it, as usual; every
    module's globals are cleared, so files and sockets that modules hold are flushed and closed (every
    module is kept alive to the end for that: Python clears the globals of the modules still alive, and a
    module that only sys.modules held, __main__ or a plug-in, would otherwise die with its globals kept
    by a frozen cycle).
    What it no longer does: finalize objects in reference cycles, which Python does not promise at exit.
    """
    global _registered
    if not _registered:
        _registered = True
        atexit.register(_freeze)


def _freeze() -> None:
    # A list that holds itself, frozen: never collected, so every module it holds outlives the exit and
    # has its globals cleared by it. Not a module global: that would be cleared, in some order, with the rest.
    kept: list[object] = list(sys.modules.values())
    kept.append(kept)
    gc.freeze()
