"""Trainer adapters, using the client only: TRL (`trl`), veRL (`verl`), AReaL (`areal`).

OpenRLHF and slime call the server's HTTP/JSON port instead (`rewardsvc/server/http.py`).
"""

from rewardsvc.integrations.trl import async_reward_func, reward_func, trl_reward_func
from rewardsvc.integrations.verl import compute_score, compute_score_async

__all__ = ["async_reward_func", "compute_score", "compute_score_async", "reward_func", "trl_reward_func"]
