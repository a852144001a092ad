"""Request-level errors. The transport maps each to one gRPC status code.

Item-level problems are never exceptions: they become a Result with `error` set.
"""


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
