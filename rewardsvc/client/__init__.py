"""Transport: clients that RL loops call for batched scoring."""

from rewardsvc.client.aio import AsyncRewardClient, RewardServiceCallError
from rewardsvc.client.sync import RewardClient

__all__ = ["AsyncRewardClient", "RewardClient", "RewardServiceCallError"]
