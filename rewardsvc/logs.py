"""Logging setup: plain text for people, or one JSON object per line for log pipelines.

Log lines carry values callers chose (request ids, scorer names): `safe()` makes one fit for a log
line, and both formatters apply the same rule to every message, so a request_id with a newline
can't forge a line and an 8 MB one can't fill the disk, whichever transport logged it.
"""

from __future__ import annotations

import json
import logging
import re
import time

#: Longest caller-sent value a log line carries (request ids are uuids: 32 characters).
MAX_VALUE_CHARS = 128
#: Longest message a log line carries (a traceback comes on top of it).
MAX_MESSAGE_CHARS = 16_384

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return ascii(match.group())[1:-1]  # "\n", "\x1b", "\u2028"


def safe(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """`value` as text fit for one log line: control characters escaped, at most `limit`
    characters (then "...(N chars)")."""
    text = value if isinstance(value, str) else str(value)
    cut = text[:limit]
    cut = _CONTROL.sub(_escape, cut)
    return cut if len(text) <= limit else f"{cut}...({len(text)} chars)"


# Attributes every LogRecord has; anything else passed via `extra=` is a structured field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """One line per record (a traceback aside), whatever the message contains."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = safe(record.message, MAX_MESSAGE_CHARS)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": safe(record.getMessage(), MAX_MESSAGE_CHARS),
        }
        # JSON escapes control characters itself; long strings are cut like the message.
        out.update({k: _bounded(v) for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(fmt: str = "text", verbose: bool = False) -> None:
    if fmt not in ("text", "json"):
        raise ValueError(f"log_format {fmt!r}: use text or json")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json"
                         else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _bounded(value: object) -> object:
    if isinstance(value, str):
        return value if len(value) <= MAX_MESSAGE_CHARS else safe(value, MAX_MESSAGE_CHARS)
    if isinstance(value, (list, tuple)):
        return [_bounded(v) for v in value[:100]]
    return value
