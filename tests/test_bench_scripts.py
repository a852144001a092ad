"""Every benchmark script still starts: imports resolve and its command line parses (`--help`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Scripts, not the modules they share (common.py, hostile_clients.py): those load through the scripts.
SCRIPTS = sorted(p for p in (REPO / "bench").glob("*.py") if '__name__ == "__main__"' in p.read_text())

# One interpreter for all of them: each script's imports load once.
RUNNER = """
import runpy, sys
failed = []
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    try:
        runpy.run_path(path, run_name="__main__")
        failed.append(f"{path}: --help did not exit")
    except SystemExit as exc:
        if exc.code not in (0, None):
            failed.append(f"{path}: --help exited {exc.code}")
    except BaseException as exc:
        failed.append(f"{path}: {type(exc).__name__}: {exc}")
print("FAILED:" + repr(failed))
"""


def test_every_bench_script_starts() -> None:
    assert len(SCRIPTS) >= 8
    out = subprocess.run([sys.executable, "-c", RUNNER, *map(str, SCRIPTS)], capture_output=True, text=True,
                         cwd=REPO / "bench", timeout=300)
    line = next((x for x in out.stdout.splitlines() if x.startswith("FAILED:")), None)
    assert line == "FAILED:[]", (line, out.stderr[-3000:])
