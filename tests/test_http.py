"""The HTTP/JSON port beside gRPC: `POST /v1/score` with the README's JSON items, OpenRLHF's own
remote-reward request code (openrlhf 0.11.2, unpacked by `make install`) and slime's request against
their routes, the bearer token, the item limit and the shared metrics. One real server for the module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
import re
import time
import urllib.error
import urllib.request

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from readme_snippets import trainer_snippet
from support import ServerProcess
from trainer_sources import trainer_source

TOKEN = "s3cret-http-token"
CONFIG = {"server": {"http_port": 0, "max_items_per_request": 50},
          "scorers": {"math": {"type": "math", "workers": 2, "timeout_s": 5.0}}}


@pytest.fixture(scope="module")
def server() -> ServerProcess:
    with ServerProcess(CONFIG, env={"REWARDSVC_AUTH_TOKEN": TOKEN}) as srv:
        yield srv


def http_base(srv: ServerProcess) -> str:
    line = next(ln for ln in srv.output if "; http: http://" in ln)
    return re.search(r"http: (http://[^\s;)]+)", line).group(1)


def post(url: str, body: object, token: str | None = TOKEN) -> tuple[int, object]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_v1_score_takes_the_readmes_json_items_and_never_fails_the_batch(server) -> None:
    items = [
        {"id": "1", "prompt": "What is 1/2 + 1/4?", "response": "... so \\boxed{3/4}", "reference": "0.75"},
        {"id": "chat", "prompt": [{"role": "user", "content": [{"type": "text", "text": "2+2?"}]}],
         "response": [{"role": "assistant", "content": None,
                       "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": "{}"}}]},
                      {"role": "tool", "content": "4"}, {"role": "assistant", "content": "\\boxed{4}"}],
         "reference": "4", "group_id": "g"},
        {"id": "typo", "respnse": "\\boxed{1}"},
        {"response": "The answer is 5.", "reference": "4"},
    ]
    status, body = post(http_base(server) + "/v1/score", {"scorer": "math", "items": items})
    assert status == 200, body
    results = body["results"]
    assert [r["id"] for r in results] == ["1", "chat", "typo", "3"]
    assert [r["score"] for r in results] == [1.0, 1.0, 0.0, 0.0]
    assert results[0]["details"]["verdict"] == "correct" and results[3]["details"]["verdict"] == "incorrect"
    assert results[2]["error"]["code"] == "invalid_item" and "respnse" in results[2]["error"]["message"]
    status, body = post(http_base(server) + "/v1/score", {"scorer": "nope", "items": []})
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"


def readme_url(srv: ServerProcess, trainer: str, flag: str) -> str:
    """The URL of the README's command line for `trainer`, pointed at this server."""
    url = re.search(rf'{flag} "([^"]+)"', trainer_snippet(trainer, "bash")).group(1)
    return url.replace("http://10.0.0.5:8080", http_base(srv)).replace("$REWARDSVC_AUTH_TOKEN", TOKEN)


def test_openrlhfs_own_request_code_gets_rewards(server) -> None:
    trainer_source()
    from openrlhf.utils.agent import SingleTurnAgentExecutor  # the real module (openrlhf 0.11.2)

    url = readme_url(server, "OpenRLHF", "--reward.remote_url")  # used verbatim, as OpenRLHF does
    executor = SingleTurnAgentExecutor(remote_rm_url=url)
    prompt = "<|im_start|>user\nWhat is 6 * 7?<|im_end|>\n<|im_start|>assistant\n"
    # agent.py: query = decode(prompt + action tokens, skip_special_tokens=False)
    queries = [prompt + "6 * 7 = \\boxed{42}<|im_end|>", prompt + "It is 41.<|im_end|>"]

    async def fetch() -> list:
        return [(await executor._fetch_rewards_via_http([q], [prompt], ["42"]))[0] for q in queries]

    answers = asyncio.run(fetch())
    assert [a["rewards"] for a in answers] == [[1.0], [0.0]]
    assert [a["scores"] for a in answers] == [[1.0], [0.0]]
    assert answers[0]["extra_logs"] == {"rewardsvc_item_error": [0.0]}


# slime (THUDM/slime @624b824, slime/rollout/rm_hub/__init__.py, remote_rm; Apache-2.0), its request
# expression copied: slime is not on PyPI and needs sglang/megatron to import.
async def slime_remote_rm(rm_url: str, prompt, response: str, label, max_retries: int = 10):
    payload = {
        "prompt": prompt,
        "response": response,
        "label": label,
    }
    connector = aiohttp.TCPConnector(limit=64, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for attempt in range(max_retries):
            try:
                async with session.post(rm_url, json=payload) as resp:
                    resp.raise_for_status()
                    return await resp.json()
            except Exception:
                if attempt + 1 >= max_retries:
                    raise
                backoff = min(2**attempt, 30) + random.random()
                await asyncio.sleep(backoff)


def test_slimes_request_shape_gets_a_reward(server) -> None:
    base = readme_url(server, "slime", "--rm-url")  # --rm-type remote_rm --rm-url, verbatim
    chat = [{"role": "user", "content": "What is 6 * 7?"}]  # Sample.prompt: str | list[dict]
    assert asyncio.run(slime_remote_rm(base, "What is 6 * 7?", "\\boxed{42}", "42")) == 1.0
    assert asyncio.run(slime_remote_rm(base, chat, "so 41<|im_end|>", "42")) == 0.0
    # --reward-key score reads a dict; a sample without a label is this item's error, not a failed rollout.
    got = asyncio.run(slime_remote_rm(base + "&format=dict&error_score=-1", chat, "\\boxed{42}", None))
    assert got["score"] == -1.0 and got["error"]["code"] == "invalid_item"


def test_the_token_is_required_but_health_stays_open(server) -> None:
    base = http_base(server)
    for token in (None, "wrong"):
        status, body = post(base + "/v1/score", {"scorer": "math", "items": []}, token=token)
        assert status == 401 and body["error"]["code"] == "UNAUTHENTICATED", body
        status, body = post(base + "/v1/openrlhf/math" + (f"?token={token}" if token else ""),
                            {"query": ["x"], "prompts": [""], "labels": ["1"]}, token=None)
        assert status == 401, body
    with urllib.request.urlopen(base + "/health", timeout=10) as resp:
        assert json.loads(resp.read()) == {"status": "SERVING"}


def test_limits_and_metrics_are_the_grpc_ports(server) -> None:
    base = http_base(server)
    status, body = post(base + "/v1/score", {"scorer": "math", "items": [{"response": "1"}] * 51})
    assert status == 429 and "max_items_per_request" in body["error"]["message"]
    url = next(ln for ln in server.output if "metrics: http" in ln).split("metrics: ")[1].strip(" )")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})  # scrapes need it too
    metrics = urllib.request.urlopen(req, timeout=10).read().decode()
    assert re.search(r'rewardsvc_requests_total\{(code="RESOURCE_EXHAUSTED",scorer="math"|scorer="math",'
                     r'code="RESOURCE_EXHAUSTED")\} [1-9]', metrics), metrics[:2000]


def test_the_red_teams_text_families_and_log_forgery_through_the_http_door(server) -> None:
    """Issue 14's families sent as JSON instead of protobuf: 1 MB of unclosed \\boxed{ in a response and
    in a reference beside an honest item, under a request id that forges a log line. Each item gets its
    own answer, the gRPC health check answers all the while, and no log line is forged."""
    base = http_base(server)
    flood = "\\boxed{" * 140_000
    items = [{"id": "response-flood", "response": flood, "reference": "1"},
             {"id": "reference-flood", "response": "\\boxed{1}", "reference": flood},
             {"id": "honest", "response": "\\boxed{1}", "reference": "1"}]
    forged = "innocent\n2026-01-01 00:00:00,000 ERROR rewardsvc.security: FORGED LINE"
    with concurrent.futures.ThreadPoolExecutor(1) as pool, grpc.insecure_channel(server.address) as ch:
        call = pool.submit(post, base + "/v1/score", {"scorer": "math", "items": items, "request_id": forged})
        health = health_pb2_grpc.HealthStub(ch)
        checks = 0
        while not call.done():
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
            checks += 1
            time.sleep(0.02)
        code, body = call.result()
    assert code == 200 and checks >= 1
    scores = {r["id"]: r["score"] for r in body["results"]}
    assert scores == {"response-flood": 0.0, "reference-flood": 0.0, "honest": 1.0}, body["results"]
    time.sleep(0.5)  # the server's log line for the request
    assert not any(line.startswith("2026-01-01") for line in server.output)
    assert any("request_id=innocent\\n2026" in line for line in server.output)

