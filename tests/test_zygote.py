"""The session's zygote (tests/zygote.py) runs a CLI as the plain interpreter would: same output and exit
codes, signals reach the child, and a server whose environment differs starts the usual way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, ServerProcess
from zygote import ForkedProcess, zygote_for

pytestmark = pytest.mark.skipif(not zygote_for(dict(os.environ)),
                                reason="the zygote runs under xdist (`make test`), started by tests/conftest.py")


def both(args: list[str]) -> list[tuple[int, str]]:
    env = dict(os.environ)
    zygote = zygote_for(env)
    assert zygote
    forked = ForkedProcess(zygote, "rewardsvc.cli", args, str(REPO), env)
    fresh = subprocess.Popen([sys.executable, "-m", "rewardsvc.cli", *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    for proc in (forked, fresh):
        assert proc.stdout is not None
        text = proc.stdout.read()
        out.append((proc.wait(60), text))
    return out


def test_a_forked_cli_prints_and_exits_as_a_fresh_one(tmp_path: Path) -> None:
    forked, fresh = both(["--help"])
    assert forked == fresh and forked[0] == 0 and "serve" in forked[1]
    missing = str(tmp_path / "missing.yaml")
    forked, fresh = both(["serve", "--config", missing])
    assert forked == fresh and forked[0] == 2 and missing in forked[1]


def test_a_forked_server_stops_on_sigterm_and_dies_on_sigkill() -> None:
    config = {"scorers": {"code": {"type": "code", "workers": 1}}}  # no model, and no sympy to import
    with ServerProcess(config, preimported=True) as srv:
        assert isinstance(srv.proc, ForkedProcess)
        assert srv.terminate() == 0
        assert any("drain" in line or "stopped" in line for line in srv.output), srv.output[-10:]
    with ServerProcess(config, preimported=True) as srv:
        assert isinstance(srv.proc, ForkedProcess)
        os.kill(srv.proc.pid, signal.SIGKILL)
        assert srv.proc.wait(30) == -signal.SIGKILL


def test_another_environment_starts_the_usual_way_and_says_why() -> None:
    with pytest.warns(UserWarning, match="without the test zygote: REWARDSVC_ZYGOTE_PROBE differ"):
        with ServerProcess({"scorers": {"code": {"type": "code", "workers": 1}}},
                           env={"REWARDSVC_ZYGOTE_PROBE": "1"}, preimported=True) as srv:
            assert isinstance(srv.proc, subprocess.Popen)


def test_a_zygote_whose_imports_fail_is_a_clear_error_for_the_client_that_waited(tmp_path: Path) -> None:
    """The zygote listens before it imports (the session does not wait for it): a client that connected
    meanwhile learns that it died, instead of hanging or failing on a bare int('')."""
    from zygote import start_zygote

    fake = tmp_path / "fake"
    fake.mkdir()
    # Slow enough that the client below connects while the zygote is still importing.
    (fake / "torch.py").write_text("import time\ntime.sleep(1)\nraise ImportError('no torch in this test')\n")
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc, directory = start_zygote(env, str(tmp_path))
    try:
        with pytest.raises(RuntimeError, match="closed the connection before forking"):
            ForkedProcess(os.path.join(directory, "zygote.sock"), "rewardsvc.cli", ["--help"], str(REPO), env)
        assert proc.wait(30) != 0
    finally:
        proc.kill()
        assert proc.stdin is not None
        proc.stdin.close()
