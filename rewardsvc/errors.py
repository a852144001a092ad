"""Request-level errors. The transport maps each to one gRPC status code.

Item-level problems are never exceptions: they become a Result with `error` set.
"""

import reprlib

# Error messages quote what the caller sent so they can find it, but never all of it: a request
# carrying an 8 MB scorer name or option value would otherwise get (and log) it back in full.
_QUOTE = reprlib.Repr()  # keyword arguments only from Python 3.12
_QUOTE.maxstring = _QUOTE.maxother = 80
_QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxset = _QUOTE.maxdict = 8
_QUOTE.maxlevel = 3


QUOTE_CHARS = 200


def quote(value: object) -> str:
    """repr(value) in at most QUOTE_CHARS characters: long strings, lists and mappings are cut with '...'."""
    text = _QUOTE.repr(value)
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


class RewardServiceError(Exception):
    """Base class; `grpc_code` names the grpc.StatusCode the server answers with."""

    grpc_code = "INTERNAL"


class UnknownScorerError(RewardServiceError, LookupError):
    grpc_code = "NOT_FOUND"


class InvalidOptionsError(RewardServiceError, ValueError):
    grpc_code = "INVALID_ARGUMENT"


class ConfigError(RewardServiceError, ValueError):
    grpc_code = "FAILED_PRECONDITION"


class LimitExceededError(RewardServiceError):
    """A request is over a configured limit (items per request, queue bound)."""

    grpc_code = "RESOURCE_EXHAUSTED"
