"""veRL custom reward functions: `compute_score` (every reward manager) and `compute_score_async`.

Calling conventions (veRL 0.9.1):
- legacy naive manager (`verl/workers/reward_manager/naive.py`) and the reward loop's naive, dapo
  and gdpo managers (`verl/experimental/reward_loop/reward_manager/`): one sample per call,
  `compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`; the reward loop awaits
  an `async def` function and runs a sync one in a thread.
- batch manager (`verl/workers/reward_manager/batch.py`): the whole batch in one call,
  `compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=, **reward_kwargs)`.
- `custom_reward_function.reward_kwargs` are merged into every call (`verl/trainer/ppo/reward.py`).

Settings, from `reward_kwargs` first, then environment variables (which may not reach Ray actors
on other nodes, so prefer reward_kwargs): `address` ($REWARDSVC_ADDRESS, default 127.0.0.1:50051),
`token` ($REWARDSVC_AUTH_TOKEN), `scorer` ($REWARDSVC_SCORER: one scorer for every sample),
`data_source_scorers` ($REWARDSVC_DATA_SOURCE_SCORERS as JSON: data_source -> scorer, over the
built-in map below), `scorer_options` (scorer -> per-request options), `timeout_s`
($REWARDSVC_TIMEOUT_S), `connect_timeout_s` ($REWARDSVC_CONNECT_TIMEOUT_S), `error_score` (reward
of a sample that could not be scored, default 0.0), `details` (scorer detail keys to return,
default ["verdict"]). An unknown data_source is an error naming `data_source_scorers`.

Each sample's result is a dict with the same keys for every sample, as veRL's reward-loop
collation requires: `score`, `acc` (= score, for veRL's validation metrics), `error` ("" or
"<code>: <message>"), and each key of `details` (None where the scorer gave none); the managers put
them in `reward_extra_info`. Groups: in the batch manager, consecutive samples of one prompt
(same data_source, extra_info index/question and ground truth) are one group on the server; a
per-sample caller can't form groups, so use the batch manager with group scorers.
"""

# veRL loads this file by path (custom_reward_function.path) as a fresh module it doesn't register:
# the code lives in an ordinary module, so the file's functions are the installed package's own
# (one client per process, dataclasses that resolve).
from rewardsvc.integrations.verl_score import compute_score, compute_score_async

__all__ = ["compute_score", "compute_score_async"]
