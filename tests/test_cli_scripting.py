"""The CLI as a script drives it (issue 18): wait for a loading server with `health --wait`, fail fast
on a dead address with `score --timeout`, keep item ids on invalid lines, reach a server that wants a
token and (mutual) TLS, and stream a long input in bounded memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support import ServerProcess

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
ENV.pop("REWARDSVC_AUTH_TOKEN", None)  # each test says which token the CLI sees
ITEM = {"id": "x1", "response": "\\boxed{2}", "reference": "2"}


def cli(*args: str, stdin: str = "", env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rewardsvc.cli", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, env=env or ENV, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_health_wait_returns_only_once_a_loading_server_can_score(tmp_path: Path) -> None:
    gate = tmp_path / "loaded"
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "metrics_port": None},
        "scorers": {
            "math": {"type": "math", "workers": 1},
            # Holds the whole server in "loading" until the test opens the gate (as a model that takes
            # minutes to load would): no race against the clock, and no model to load for real.
            "slowload": {"type": "loading_scorer:LoadingScorer", "gate_file": str(gate)},
        },
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "rewardsvc.cli", "serve", "--config", str(tmp_path / "c.yaml")],
                              cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    waiter = None
    try:
        # Before the port is bound a check says UNAVAILABLE, then NOT_SERVING while loading: both exit 1.
        while "NOT_SERVING" not in (probe := cli("health", "--address", address)).stderr:
            assert probe.returncode == 1 and "UNAVAILABLE" in probe.stderr, probe.stderr
            assert server.poll() is None, "the server exited while loading"
        assert probe.returncode == 1 and "loading its scorers" in probe.stderr
        probe = cli("health", "--address", address, "--scorer", "math", "--wait", "1")
        assert probe.returncode == 1 and "after waiting 1s" in probe.stderr and "NOT_SERVING" in probe.stderr
        refused = cli("score", "--scorer", "math", "--address", address, "--timeout", "2",
                      stdin=json.dumps(ITEM) + "\n")
        assert refused.returncode == 1 and "health --address" in refused.stderr, refused.stderr

        waiter = subprocess.Popen([sys.executable, "-m", "rewardsvc.cli", "health", "--address", address,
                                   "--scorer", "math", "--wait", "280"], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        still = cli("health", "--address", address, "--scorer", "math")
        assert still.returncode == 1 and "NOT_SERVING" in still.stderr
        assert waiter.poll() is None, "health --wait returned while the server was still loading"
        gate.touch()
        out, err = waiter.communicate(timeout=290)
        assert waiter.returncode == 0, err
        assert out.strip() == f"{address} scorer 'math': SERVING"
        # Returned means scoring works now: no retry, no wait.
        scored = cli("score", "--scorer", "math", "--address", address, "--timeout", "60",
                     stdin=json.dumps(ITEM) + "\n")
        assert scored.returncode == 0, scored.stderr
        result = json.loads(scored.stdout)
        assert result["id"] == "x1" and result["error"] is None and result["score"] == 1.0
        unknown = cli("health", "--address", address, "--scorer", "nope", "--wait", "60")
        assert unknown.returncode == 2 and "hosts no scorer 'nope'" in unknown.stderr
    finally:
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
        server.terminate()
        server.wait(60)


@pytest.mark.slow  # waits out the CLI's timeout
def test_score_timeout_against_a_dead_address_fails_within_it() -> None:
    # A port nobody listens on, and a non-routable address where connecting hangs.
    for address in (f"127.0.0.1:{free_port()}", "10.255.255.1:50051"):
        proc = cli("score", "--scorer", "math", "--address", address, "--timeout", "3",
                   stdin=json.dumps(ITEM) + "\n", timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert proc.stdout == ""
        assert f"is the server at {address} up" in proc.stderr and "Traceback" not in proc.stderr


def test_invalid_lines_keep_their_ids(math_server: ServerProcess) -> None:
    lines = [
        json.dumps({"id": "ok", "response": "\\boxed{2}", "reference": "2"}),
        json.dumps({"id": "bad", "response": {"oops": 1}}),
        json.dumps({"id": 7, "response": "x", "colour": "red"}),
        json.dumps({"response": "1", "steps": "not a list", "reference": "1"}),
        "",
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"id": "last", "response": "so 3", "reference": "3"}),
    ]
    proc = cli("score", "--scorer", "math", "--address", math_server.address, "--batch-size", "3",
               stdin="\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["id"] for o in out] == ["ok", "bad", "7", "4", "line-6", "line-7", "last"]
    assert out[0]["score"] == 1.0 and out[-1]["score"] == 1.0
    for o in out[1:-1]:
        assert o["error"]["code"] == "invalid_item"
    assert "line 2:" in out[1]["error"]["message"] and "response" in out[1]["error"]["message"]
    assert "colour" in out[2]["error"]["message"]


@pytest.mark.slow  # loads a classifier in a subprocess: ~8 s
def test_in_process_scoring_loads_only_the_scorer_asked_for_and_what_it_uses(tmp_path: Path) -> None:
    """A model scorer that can't load (as with REWARDSVC_SKIP_TRAINING=1) must not stop `score --scorer math`."""
    config = {"scorers": {
        "math": {"type": "math", "workers": 1},
        "rm": {"type": "classifier", "model": str(tmp_path / "not-trained-yet")},
        "double": {"type": "composite", "components": [{"scorer": "math", "weight": 2.0}]},
        "math-rm": {"type": "composite", "components": [{"scorer": "math"}, {"scorer": "rm"}]},
    }}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    for scorer, score in (("math", 1.0), ("double", 2.0)):  # double uses math, and only math
        proc = cli("score", "--scorer", scorer, "--config", str(tmp_path / "c.yaml"), stdin=json.dumps(ITEM) + "\n")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["score"] == score
    proc = cli("score", "--scorer", "math-rm", "--config", str(tmp_path / "c.yaml"), stdin=json.dumps(ITEM) + "\n")
    assert proc.returncode == 2 and "not-trained-yet" in proc.stderr  # it uses rm: rm is loaded, and fails


def test_bad_options_fail_the_request_with_invalid_argument(math_server: ServerProcess) -> None:
    for options, says in (('{"extract": ["nope"]}', "nope"), ('{"timeout_s": "soon"}', "timeout_s"),
                          ('{"colour": 1}', "accepted")):
        proc = cli("score", "--scorer", "math", "--address", math_server.address, "--options", options,
                   stdin=json.dumps(ITEM) + "\n")
        assert proc.returncode == 1 and proc.stdout == "", proc.stdout
        assert "INVALID_ARGUMENT" in proc.stderr and says in proc.stderr, proc.stderr


TOKEN = "cli-test-token"


@pytest.fixture(scope="module")
def locked_server(pki: Path) -> Iterator[ServerProcess]:
    """A server wanting a bearer token and mutual TLS."""
    server = {"auth_token_env": "CLI_TEST_SERVER_TOKEN", "tls_cert_file": str(pki / "server.pem"),
              "tls_key_file": str(pki / "server.key"), "tls_client_ca_file": str(pki / "ca.pem")}
    with ServerProcess({"server": server, "scorers": {"math": {"type": "math", "workers": 1}}},
                       env={"CLI_TEST_SERVER_TOKEN": TOKEN}) as srv:
        yield srv


@pytest.mark.slow  # TLS server and several CLI processes: about 5-10 s
def test_token_and_mutual_tls_from_the_cli(locked_server: ServerProcess, pki: Path, tmp_path: Path) -> None:
    tls = ["--tls-ca", str(pki / "ca.pem"), "--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")]
    at = ["--address", locked_server.address, *tls]
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    stdin = json.dumps(ITEM) + "\n"

    by_file = cli("score", "--scorer", "math", *at, "--token-file", str(token_file), stdin=stdin)
    assert by_file.returncode == 0, by_file.stderr
    assert json.loads(by_file.stdout)["score"] == 1.0
    by_env = cli("score", "--scorer", "math", *at, stdin=stdin, env={**ENV, "REWARDSVC_AUTH_TOKEN": TOKEN})
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout)["score"] == 1.0
    listed = cli("scorers", *at, "--json", "--token-file", str(token_file))
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["name"] == "math"
    # Probes carry no token: health is open, but TLS still applies.
    assert cli("health", *at, "--scorer", "math").returncode == 0

    no_token = cli("score", "--scorer", "math", *at, stdin=stdin)
    assert no_token.returncode == 1 and "UNAUTHENTICATED" in no_token.stderr
    assert "--token-file" in no_token.stderr and "Traceback" not in no_token.stderr
    wrong = cli("scorers", *at, env={**ENV, "REWARDSVC_AUTH_TOKEN": "wrong"})
    assert wrong.returncode == 1 and "UNAUTHENTICATED" in wrong.stderr and "Traceback" not in wrong.stderr
    half = cli("score", "--scorer", "math", "--address", locked_server.address, "--tls-cert", str(pki / "client.pem"),
               stdin=stdin)
    assert half.returncode == 2 and "--tls-cert and --tls-key" in half.stderr


LINE_CHARS = 1000


def _write_items(path: Path, n: int) -> None:
    pad = "y" * LINE_CHARS
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"i{i}", "response": f"{i} {pad}"}) + "\n")


def _peak_rss_kb(address: str, src: Path, dst: Path) -> int:
    """Score `src` with the CLI and return that process's own peak RSS (KiB). VmHWM, not ru_maxrss: Linux
    carries ru_maxrss over from the parent across fork and exec (here: pytest with torch loaded)."""
    code = ("import re, sys; from rewardsvc.cli import main; rc = main(sys.argv[1:]); "
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
            "print('MAXRSS', hwm, file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "score", "--scorer", "echo", "--address", address,
                           "--input", str(src), "--output", str(dst), "--no-progress"],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stderr.split("MAXRSS")[-1].split()[0])


@pytest.mark.slow
def test_a_100k_line_input_streams_in_bounded_memory() -> None:
    """100k lines of ~1 KB (100 MB) need no more memory than 10k lines: the CLI holds a few chunks, not
    the file. (Reading it whole would add the file's size and its parsed items on top.)"""
    with ServerProcess({"scorers": {"echo": {"type": "slow_scorer:SlowScorer"}}}, env=ENV) as srv, \
            tempfile.TemporaryDirectory(prefix="rewardsvc-stream-") as tmp:
        small, big, out = Path(tmp) / "small.jsonl", Path(tmp) / "big.jsonl", Path(tmp) / "out.jsonl"
        _write_items(small, 10_000)
        _write_items(big, 100_000)
        small_kb = _peak_rss_kb(srv.address, small, out)
        big_kb = _peak_rss_kb(srv.address, big, out)
        n = 0
        with open(out) as f:
            for n, line in enumerate(f, 1):
                if n in (1, 100_000):
                    r = json.loads(line)
                    assert r["id"] == f"i{n - 1}" and r["score"] == len(f"{n - 1} ") + LINE_CHARS
        assert n == 100_000
        grew_mb = (big_kb - small_kb) / 1024
        print(f"peak RSS: 10k lines {small_kb / 1024:.0f} MB, 100k lines {big_kb / 1024:.0f} MB")
        assert grew_mb < 30, (f"peak RSS grew {grew_mb:.0f} MB from 10k to 100k lines "
                              f"(input: {big.stat().st_size >> 20} MB)")
