"""The generative scorer's `openai` backend against a real OpenAI-compatible server on loopback:
`transformers serve` (in .venv through the dev extra `transformers[serving]`) serving SmolLM2 cut to
its first two layers (`smollm_layers(2)`: real weights, the same tokenizer and chat template, ~1/10 of
the forward). Every assertion here holds for any weights (the scorer sends what a direct client
sends and gets what the server writes; errors are per item), so no test needs the full model.

Covers the chat and completions endpoints (a critique equals what the server answers a direct
client call), k samples from a server that ignores `n`, a server too slow for the request timeout
or the item deadline, and the server SIGKILLed in the middle of a request: each is a per-item
error that says what happened, and the rest of the request is scored.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from causal_support import smollm_layers
from test_causal_scorers import Service

from rewardsvc.scorers.generative import GenerativeOptions
from rewardsvc.types import ErrorCode, Item

pytestmark = pytest.mark.slow
# Checked, not imported: every xdist worker imports every test file at collection, one runs this one.
if importlib.util.find_spec("openai") is None:
    pytest.skip("the openai extra is not installed: pip install 'rewardsvc[openai]'", allow_module_level=True)

SERVE = Path(sys.executable).parent / "transformers"
Q = "Tom has 3 apples and buys 4 more. How many apples does he have?"
ITEMS = [Item(id="right", prompt=Q, response="3 + 4 = 7. The answer is 7."),
         Item(id="wrong", prompt=Q, response="3 * 4 = 12. The answer is 12.")]


class Served:
    """`transformers serve` on a free loopback port; `kill()` is SIGKILL."""

    def __init__(self, model_dir: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.model = model_dir
        fd, name = tempfile.mkstemp(prefix="transformers-serve-", suffix=".log")
        self.log = Path(name)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        with os.fdopen(fd, "w") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([str(SERVE), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                          "--log-level", "warning", model_dir],
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"transformers serve did not answer /health:\n{self.output()}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def connections(self) -> set[tuple[str, str]]:
        """Established TCP connections accepted on the server's port (local, remote address)."""
        out = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == self.port:
                    out.add((local, remote))
        return out


@pytest.fixture(scope="module")
def served():
    if not SERVE.exists():
        pytest.skip(f"{SERVE} is missing: `make install` (dev extra transformers[serving]) provides it")
    server = Served(smollm_layers(2))
    yield server
    server.kill()
    server.log.unlink(missing_ok=True)


def stanza(served: Served, **openai) -> dict:
    return {"type": "generative", "backend": "openai", "model": served.model, "max_new_tokens": 8,
            "return_critiques": True, "openai": {"base_url": served.base_url, "max_retries": 0, **openai}}


@pytest.fixture(scope="module")
def svc(served):
    s = Service({"scorers": {
        "chat": stanza(served),
        "completions": {**stanza(served, endpoint="completions", tokenizer=served.model),
                        "formats": {"pointwise": {"prefill": "Score (1 to 10): "}}},
        "local": {"type": "generative", "model": served.model, "max_new_tokens": 8, "return_critiques": True,
                  "formats": {"pointwise": {"prefill": "Score (1 to 10): "}}},
        "sampled": {**stanza(served, extra_body={"generation_config": json.dumps({"do_sample": True})}),
                    "k": 3, "temperature": 1.0},
        "impatient": stanza(served, request_timeout_s=0.2),
        "deadline": stanza(served, request_timeout_s=120, deadline_s=0.2),
        "killed": stanza(served, request_timeout_s=120, max_retries=1),
    }})
    yield s
    s.close()


def test_chat_endpoint_critique_is_what_the_server_answers(svc, served):
    from openai import OpenAI

    results = svc.score("chat", ITEMS)
    scorer = svc.service.get("chat")
    plan = scorer.plan(GenerativeOptions())
    client = OpenAI(base_url=served.base_url, api_key="EMPTY", max_retries=0, timeout=120)
    for item, r in zip(ITEMS, results):
        assert r.ok, r.error
        (sample,) = r.details["samples"]
        assert sample["tokens"] <= 8
        prompt = scorer.prompts_for(item, plan)[0][1]
        direct = client.chat.completions.create(model=served.model, max_tokens=8, temperature=0.0,
                                                messages=[{"role": "user", "content": prompt.user}])
        assert sample["critique"] and sample["critique"] == direct.choices[0].message.content
        # A defined outcome either way: a parsed verdict or "can't tell" with the reasons.
        assert -1.0 <= r.score <= 1.0
        if sample["status"] != "ok":
            assert r.score == 0.0 and r.details["verdict"] == "unparsed"


def test_completions_endpoint_sends_the_rendered_prompt_and_prefill(svc):
    remote = svc.score("completions", ITEMS)
    local = svc.score("local", ITEMS)
    for r, mine in zip(remote, local):
        assert r.ok, r.error
        (sample,) = r.details["samples"]
        assert sample["critique"].startswith("Score (1 to 10): ") and sample["critique"] != "Score (1 to 10): "
        # Same model, same rendered text, greedy: the server writes what the in-process backend writes.
        assert sample["critique"] == mine.details["samples"][0]["critique"]
        assert r.score == mine.score


def test_k_samples_from_a_server_that_ignores_n(svc):
    results = svc.score("sampled", ITEMS, seed=1)
    for r in results:
        assert r.ok, r.error
        assert len(r.details["samples"]) == 3 and r.details["k"] == 3
    texts = [s["critique"] for r in results for s in r.details["samples"]]
    assert len(set(texts)) > 1, "seeds seed, seed+1, seed+2 with do_sample should not all agree"


def test_a_server_slower_than_the_request_timeout_is_an_item_timeout(svc):
    res = svc.score("impatient", [ITEMS[0], Item(id="mk", prompt=Q, response="Thought process:")],
                    max_new_tokens=256)
    assert res[0].error is not None and res[0].error.code == ErrorCode.TIMEOUT
    assert "request_timeout_s=0.2" in res[0].error.message and res[0].error.message.count(served_url(svc)) == 1
    assert res[1].ok and res[1].score == -1.0  # the rest of the request is scored


def test_a_server_slower_than_the_item_deadline_is_an_item_timeout(svc):
    (r,) = svc.score("deadline", ITEMS[:1], max_new_tokens=256)
    assert r.error is not None and r.error.code == ErrorCode.TIMEOUT and "deadline_s=0.2" in r.error.message


@pytest.mark.stops_module_server
def test_the_server_killed_mid_request_is_an_item_error_and_later_calls_fail_fast(svc, served):
    scorer = svc.service

    async def kill_during_request():
        before = served.connections()
        task = asyncio.ensure_future(scorer.score("killed", [ITEMS[0], Item(id="mk", prompt=Q, response=".")],
                                                  {"max_new_tokens": 256}))
        for _ in range(600):  # until our request's connection is open on the server
            if served.connections() - before or task.done():
                break
            await asyncio.sleep(0.05)
        assert not task.done(), "the request ended before the server could be killed"
        served.kill()
        return await task

    res = svc.run(kill_during_request())
    assert res[0].error is not None and res[0].error.code == ErrorCode.INTERNAL
    assert "cannot reach the judge server" in res[0].error.message and "is it running" in res[0].error.message
    assert res[1].ok and res[1].score == -1.0
    # The server is gone: the next call fails at once with the same clear error, the service stays up.
    (again,) = svc.score("chat", ITEMS[:1])
    assert again.error is not None and again.error.code == ErrorCode.INTERNAL
    assert "cannot reach the judge server" in again.error.message


def served_url(svc) -> str:
    return svc.service.get("impatient").config.openai.base_url
