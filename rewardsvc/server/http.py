"""HTTP/JSON beside gRPC: `POST /v1/score`, and the remote-reward protocols of OpenRLHF and slime.

A thin adapter over the same ServingCore, token, limits and metrics as the gRPC servicer, served
by aiohttp on its own (opt-in) port of the same process:

- `POST /v1/score`  {"scorer", "items": [README JSON items], "options"?, "request_id"?}
  -> {"request_id", "scorer", "results": [{"id", "score", "step_scores", "details", "error"}], "metadata"}
- `POST /v1/openrlhf/{scorer}`  OpenRLHF `--reward.remote_url` (openrlhf/utils/agent.py,
  SingleTurnAgentExecutor._fetch_rewards_via_http): {"query": [prompt + response], "prompts": [prompt],
  "labels": [label]} -> {"rewards": [...], "scores": [...], "extra_logs": {"rewardsvc_item_error": [...]}}
- `POST /v1/slime/{scorer}`  slime `--rm-type remote_rm --rm-url` (slime/rollout/rm_hub remote_rm):
  {"prompt", "response", "label"} -> the reward as a JSON number (`?format=dict`: {"score", "error", ...})
- `GET /v1/scorers`, `GET /health` (200 SERVING / 503; open without a token, like gRPC health).

Query parameters of the trainer routes (their URL is used verbatim, so settings travel in it):
`options` (JSON object of per-request options), `error_score` (the reward of an item that could not
be scored, default 0: neither trainer accepts a missing reward), `token` (the bearer token: neither
trainer sends headers; the server writes no access log, but the trainer's config holds the URL).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from rewardsvc import caller
from rewardsvc.config import ServerConfig
from rewardsvc.errors import InvalidOptionsError, RewardServiceError
from rewardsvc.logs import safe
from rewardsvc.server.prometheus import Metrics
from rewardsvc.service import ServingCore
from rewardsvc.types import ErrorCode, Item, Result, item_from_dict, strip_special_tail

log = logging.getLogger(__name__)

HTTP_STATUS = {"NOT_FOUND": 404, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "RESOURCE_EXHAUSTED": 429,
               "UNAVAILABLE": 503, "UNAUTHENTICATED": 401, "DEADLINE_EXCEEDED": 504, "INTERNAL": 500}
OPEN_PATHS = frozenset({"/health"})
TRAINER_PATHS = ("/v1/openrlhf/", "/v1/slime/")
def response_of_query(query: str, prompt: str) -> str:
    """OpenRLHF sends prompt + response decoded together: the response is what follows the prompt.
    A prompt that doesn't start the query (re-tokenised, truncated from the left) is looked for
    inside it; not found, the whole query is the response."""
    if query.startswith(prompt):
        rest = query[len(prompt):]
    elif prompt and prompt in query:
        rest = query[query.index(prompt) + len(prompt):]
    else:
        rest = query
    return strip_special_tail(rest)


def reference_of(label: Any) -> str | None:
    """A trainer's label as an item reference: text as is, structured labels (code tests) as JSON."""
    if label is None or label == "":
        return None
    return label if isinstance(label, str) else json.dumps(label)


class HttpError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class HttpEndpoint:
    """The aiohttp application and its site; `start` returns the bound port."""

    def __init__(self, service: ServingCore, config: ServerConfig, token: str | None,
                 ready: Callable[[], bool], metrics: Metrics | None = None) -> None:
        self.service = service
        self.config = config
        self.metrics = metrics
        self.ready = ready
        self.draining = False
        self._expected = f"Bearer {token}".encode() if token else None
        self._in_flight = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_message_bytes, middlewares=[self._guard])
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/scorers", self.scorers)
        app.router.add_post("/v1/score", self.score)
        app.router.add_post("/v1/openrlhf/{scorer}", self.openrlhf)
        app.router.add_post("/v1/slime/{scorer}", self.slime)
        return app

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                    grace_s: float = 30.0) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context, shutdown_timeout=grace_s,
                           reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot bind the HTTP port {host}:{port} ({exc}); set server.http_port (or "
                          "--http-port) to another port, 0 for any") from None
        return int(self._runner.addresses[0][1])  # the bound port (port 0 = any free one)

    async def stop(self) -> None:
        """Refuse new requests (503), let running ones finish within the grace, close."""
        self.draining = True
        if self._runner is not None:
            await self._runner.cleanup()

    # -- plumbing ---------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        try:
            if request.path not in OPEN_PATHS:
                self._authorize(request)
                if self.draining:
                    raise HttpError("UNAVAILABLE", "server is shutting down; retry on another replica")
                if self._in_flight >= self.config.max_concurrent_rpcs:
                    raise HttpError("RESOURCE_EXHAUSTED", f"{self._in_flight} requests in progress; the limit "
                                    f"(max_concurrent_rpcs) is {self.config.max_concurrent_rpcs}: retry with backoff")
            self._in_flight += 1
            try:
                # The caller is the client's connection, as on gRPC: queues take turns between them.
                with caller.acting_for(_peer(request)):
                    return await handler(request)
            finally:
                self._in_flight -= 1
        except HttpError as exc:
            return _error(exc.code, str(exc))
        except RewardServiceError as exc:
            return _error(exc.grpc_code, str(exc))
        except web.HTTPException as exc:
            if exc.status == 413:
                return _error("RESOURCE_EXHAUSTED", f"request body over max_message_bytes="
                              f"{self.config.max_message_bytes}; send fewer items per request", status=413)
            raise

    def _authorize(self, request: web.Request) -> None:
        if self._expected is None:
            return
        got = request.headers.get("Authorization", "").encode()
        if "token" in request.query and request.path.startswith(TRAINER_PATHS):
            # OpenRLHF and slime post to their URL verbatim and send no headers: the token rides in it.
            got = f"Bearer {request.query['token']}".encode()
        if not hmac.compare_digest(got, self._expected):  # constant time: no timing oracle on the token
            raise HttpError("UNAUTHENTICATED", "missing or wrong bearer token: send the header "
                            "'Authorization: Bearer <token>' (trainer routes: or ?token=<token> in the URL)")

    async def _score(self, scorer: str, items: list[Item], options: dict[str, Any],
                     request_id: str) -> tuple[list[Result], Any]:
        if not self.ready():
            raise HttpError("UNAVAILABLE", "server is still loading its scorers; retry shortly")
        label = scorer if self.service.has_scorer(scorer) else "unknown"
        t0 = time.perf_counter()
        code, errors = "OK", dict[str, int]()
        try:
            results, timing = await self.service.score_timed(scorer, items, options)
            for r in results:
                if r.error is not None:
                    errors[r.error.code.value] = errors.get(r.error.code.value, 0) + 1
            return results, timing
        except RewardServiceError as exc:
            code = exc.grpc_code
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            elapsed = time.perf_counter() - t0
            if self.metrics is not None:
                self.metrics.record(label, code, len(items), elapsed, errors)
            fields = {"request_id": safe(request_id), "scorer": safe(scorer), "items": len(items), "transport": "http",
                      "item_errors": sum(errors.values()), "code": code, "ms": round(elapsed * 1000, 1)}
            log.info("score %s", " ".join(f"{k}={v}" for k, v in fields.items()), extra=fields)

    # -- routes -----------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        serving = self.ready() and not self.draining
        return web.json_response({"status": "SERVING" if serving else "NOT_SERVING"}, status=200 if serving else 503)

    async def scorers(self, request: web.Request) -> web.Response:
        return web.json_response({"scorers": self.service.scorer_infos()})

    async def score(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        unknown = set(body) - {"scorer", "items", "options", "request_id"}
        if unknown:
            raise HttpError("INVALID_ARGUMENT", f"unknown field(s) {sorted(unknown)}; a score request has "
                            "'scorer', 'items', optional 'options' and 'request_id'")
        scorer, raw = body.get("scorer"), body.get("items")
        if not isinstance(scorer, str) or not scorer:
            raise HttpError("INVALID_ARGUMENT", "'scorer' must name a hosted scorer (GET /v1/scorers lists them)")
        if not isinstance(raw, list):
            raise HttpError("INVALID_ARGUMENT", "'items' must be a list of items (JSON objects)")
        options = _options(body.get("options"))
        request_id = str(body.get("request_id") or uuid.uuid4().hex)
        # A malformed item gets its own INVALID_ITEM result; the rest of the batch is scored.
        results: list[Result | None] = [None] * len(raw)
        good: list[tuple[int, Item]] = []
        for i, data in enumerate(raw):
            item_id = str(data.get("id", i)) if isinstance(data, dict) else str(i)
            try:
                item = item_from_dict(data)
            except (ValueError, TypeError) as exc:
                results[i] = Result.failed(item_id, ErrorCode.INVALID_ITEM, f"item {i}: {exc}")
                continue
            item.id = item_id
            good.append((i, item))
        scored, timing = await self._score(scorer, [it for _, it in good], options, request_id)
        for (i, _), r in zip(good, scored):
            results[i] = r
        return web.json_response({
            "request_id": request_id, "scorer": scorer, "results": [r.to_dict() for r in results if r is not None],
            "metadata": {"items": len(raw), "queue_time_ns": timing.queue_time_ns,
                         "compute_time_ns": timing.compute_time_ns},
        }, dumps=_dumps)

    async def openrlhf(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        queries, prompts = body.get("query"), body.get("prompts")
        labels = body.get("labels")
        if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
            raise HttpError("INVALID_ARGUMENT", "'query' must be a list of strings (prompt + response)")
        prompts = prompts if prompts is not None else [""] * len(queries)
        labels = labels if labels is not None else [None] * len(queries)
        if not isinstance(prompts, list) or not isinstance(labels, list) or \
                not len(prompts) == len(labels) == len(queries):
            raise HttpError("INVALID_ARGUMENT", f"'query', 'prompts' and 'labels' must be lists of one length; got "
                            f"{len(queries)}, {_len(prompts)} and {_len(labels)}")
        items = [Item(id=str(i), prompt=p if isinstance(p, str) else "",
                      response=response_of_query(q, p if isinstance(p, str) else ""), reference=reference_of(lab))
                 for i, (q, p, lab) in enumerate(zip(queries, prompts, labels))]
        scorer, options, error_score = self._route(request)
        results, _ = await self._score(scorer, items, options, uuid.uuid4().hex)
        rewards = [r.score if r.ok else error_score for r in results]
        # Lists, as OpenRLHF's own reward server (cli/serve_rm.py) answers; extra_logs values are numbers.
        return web.json_response({"rewards": rewards, "scores": rewards,
                                  "extra_logs": {"rewardsvc_item_error": [0.0 if r.ok else 1.0 for r in results]}},
                                 dumps=_dumps)

    async def slime(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        scorer, options, error_score = self._route(request)
        response = body.get("response")
        data = {"id": "0", "prompt": body.get("prompt") or "", "reference": reference_of(body.get("label")),
                "response": strip_special_tail(response) if isinstance(response, str) else response}
        try:
            items = [item_from_dict(data)]
        except (ValueError, TypeError) as exc:
            results = [Result.failed("0", ErrorCode.INVALID_ITEM, str(exc))]
        else:
            results, _ = await self._score(scorer, items, options, uuid.uuid4().hex)
        r = results[0]
        score = r.score if r.ok else error_score
        if request.query.get("format") == "dict":
            scalars = {k: v for k, v in r.details.items() if isinstance(v, (int, float, str, bool)) or v is None}
            return web.json_response({**scalars, "score": score, "error": r.error.to_dict() if r.error else None},
                                     dumps=_dumps)
        return web.json_response(score, dumps=_dumps)

    def _route(self, request: web.Request) -> tuple[str, dict[str, Any], float]:
        query = request.query
        unknown = set(query) - {"options", "error_score", "format", "token"}
        if unknown:
            raise HttpError("INVALID_ARGUMENT", f"unknown query parameter(s) {sorted(unknown)}; accepted: "
                            "options (JSON object), error_score (number), format (slime: dict), token")
        options: dict[str, Any] = {}
        if "options" in query:
            try:
                options = _options(json.loads(query["options"]))
            except ValueError as exc:
                raise HttpError("INVALID_ARGUMENT", f"query parameter 'options' is not a JSON object: {exc}") from None
        try:
            error_score = float(query.get("error_score", 0.0))
        except ValueError:
            raise HttpError("INVALID_ARGUMENT", "query parameter 'error_score' must be a number") from None
        return request.match_info["scorer"], options, error_score


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise HttpError("INVALID_ARGUMENT", f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError("INVALID_ARGUMENT", f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidOptionsError(f"options must be a JSON object, got {type(value).__name__}")
    return value


def _len(x: Any) -> Any:
    return len(x) if isinstance(x, list) else type(x).__name__


def _dumps(obj: Any) -> str:
    # JSON has no NaN/Infinity: a non-finite number in the details goes out as null.
    return json.dumps(_finite(obj), ensure_ascii=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _error(code: str, message: str, status: int | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status or HTTP_STATUS.get(code, 500))


def _peer(request: web.Request) -> str:
    """The client's connection ("http:host:port"), as gRPC's peer(): whose turn the queues take."""
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return f"http:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else f"http:{request.remote}"


def ssl_context(cfg: ServerConfig) -> ssl.SSLContext | None:
    """The gRPC port's TLS settings for the HTTP port (client certificates required with a client CA)."""
    if not cfg.tls_cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
    if cfg.tls_client_ca_file:
        ctx.load_verify_locations(cfg.tls_client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
