"""Transport: the grpc.aio server. Knows protobuf and the ScoringService, not torch."""

from rewardsvc.server.app import RewardServer, serve

__all__ = ["RewardServer", "serve"]
