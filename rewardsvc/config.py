"""Server configuration: one YAML file names the scorers a server hosts and their parameters.

    server: {host: 127.0.0.1, port: 50051, ...}     # ServerConfig fields
    scorers:
      math:                 # the name clients use
        type: math          # a registry type
        workers: 2          # ... the rest maps one-to-one onto that scorer's Config dataclass

With no file, the built-in `default.yaml` beside this module is used.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rewardsvc.dataclass_dict import from_dict
from rewardsvc.errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.yaml")


@dataclass
class ServerConfig:
    host: str = field(default="127.0.0.1", metadata={"help": "bind address; loopback by default"})
    port: int = field(default=50051, metadata={"help": "0 picks a free port"})
    max_message_bytes: int = field(default=64 << 20, metadata={"help": "max gRPC message size, both ways"})
    max_concurrent_rpcs: int = field(default=512, metadata={"help": "excess calls get RESOURCE_EXHAUSTED"})
    max_items_per_request: int = field(default=8192, metadata={"help": "larger requests are refused"})
    max_text_chars: int = field(
        default=4_000_000, metadata={"help": "an item whose prompt+response+reference is longer gets INVALID_ITEM"}
    )
    shutdown_grace_s: float = field(default=30.0, metadata={"help": "in-flight calls get this long on SIGTERM"})
    scorer_timeout_s: float = field(
        default=600.0, metadata={"help": "a scorer call running longer gives its items TIMEOUT errors"}
    )
    max_queued_items_per_scorer: int = field(
        default=100_000, metadata={"help": "items in flight per scorer beyond this get RESOURCE_EXHAUSTED"}
    )
    max_queued_items_per_caller: int = field(
        default=16_384, metadata={"help": "items in flight per caller (one client connection) beyond this get "
                                          "RESOURCE_EXHAUSTED, so one caller can't fill a scorer's queue"}
    )
    max_stream_responses: int = field(
        default=16, metadata={"help": "ScoreStream: requests of one stream being scored or waiting to be sent; "
                                      "at the limit the server stops reading that stream until its client reads"}
    )
    auth_token_file: str | None = field(
        default=None, metadata={"help": "file holding the bearer token clients must send (health is exempt)"}
    )
    auth_token_env: str = field(
        default="REWARDSVC_AUTH_TOKEN", metadata={"help": "env var holding the bearer token, if set"}
    )
    tls_cert_file: str | None = field(default=None, metadata={"help": "PEM certificate: serve TLS"})
    tls_key_file: str | None = field(default=None, metadata={"help": "PEM private key for tls_cert_file"})
    tls_client_ca_file: str | None = field(
        default=None, metadata={"help": "PEM CA: require client certificates signed by it (mutual TLS)"}
    )
    allow_insecure_remote: bool = field(
        default=False, metadata={"help": "allow plaintext without auth on a non-loopback address"}
    )
    metrics_port: int | None = field(
        default=9464, metadata={"help": "Prometheus /metrics port on `metrics_host` (0 = any free port, null = off)"}
    )
    metrics_host: str = field(
        default="127.0.0.1", metadata={"help": "bind address of /metrics (loopback by default: a scraper elsewhere "
                                               "needs it set, and gets the bearer token asked when one is configured)"}
    )
    http_port: int | None = field(
        default=None, metadata={"help": "HTTP/JSON port on `host` beside gRPC: /v1/score, OpenRLHF and slime "
                                        "remote rewards (0 = any free port, null = off)"}
    )
    log_format: str = field(default="text", metadata={"help": "text or json (structured, one object a line)"})
    log_items: bool = field(default=False, metadata={"help": "log item text (off: prompts may be private)"})
    dedupe: bool = field(
        default=True, metadata={"help": "score identical work in a request once (math: same answer and reference; "
                                        "code: same program and tests; models: same input) and copy its result"}
    )
    result_cache_items: int = field(
        default=0, metadata={"help": "keep this many results in an LRU cache keyed by scorer config, options and "
                                     "item content (0 = off); never for stochastic scorers or failed items"}
    )


@dataclass
class ScorerSpec:
    """One hosted scorer: its client-facing name, registry type, and its Config object."""

    name: str
    type: str
    config: Any


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    scorers: list[ScorerSpec] = field(default_factory=list)
    source: str = "<built-in default>"
    # The optional `ray:` section (rewardsvc.rayserve.options.RayConfig), used by `serve --ray`.
    ray: Any = None


def parse_config(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate a config mapping; every scorer stanza is checked against its Config dataclass."""
    from rewardsvc.registry import dependency_order, scorer_class, uses_of

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a mapping with 'server' and 'scorers'")
    unknown = set(data) - {"server", "scorers", "ray"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {sorted(unknown)}; expected 'server', 'scorers', 'ray'"
        )
    try:
        server = from_dict(ServerConfig, data.get("server") or {}, f"{source}: server")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    specs = []
    scorers = data.get("scorers") or {}
    if not isinstance(scorers, dict):
        raise ConfigError(f"{source}: 'scorers' must map names to stanzas")
    for name, stanza in scorers.items():
        stanza = dict(stanza or {})
        type_name = stanza.pop("type", name)
        cls = scorer_class(type_name)
        try:
            cfg: object = from_dict(cls.Config, stanza, f"{source}: scorers.{name}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        specs.append(ScorerSpec(name=str(name), type=type_name, config=cfg))
    dependency_order(uses_of(specs))  # scorers that use missing scorers, or each other in a loop, fail here
    ray = None
    if "ray" in data:
        from rewardsvc.rayserve.options import parse_ray_section

        ray = parse_ray_section(data["ray"], [s.name for s in specs], f"{source}: ray")
    return Config(server=server, scorers=specs, source=source, ray=ray)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load `path`, or the built-in default config when None."""
    p = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, str(p) if path else "<built-in default>")


def config_to_dict(config: Config) -> dict[str, Any]:
    """The inverse of parse_config (for writing a checkpoint's rewardsvc.yaml)."""
    return {
        "server": dataclasses.asdict(config.server),
        "scorers": {s.name: {"type": s.type, **dataclasses.asdict(s.config)} for s in config.scorers},
        **({"ray": dataclasses.asdict(config.ray)} if config.ray is not None else {}),
    }
