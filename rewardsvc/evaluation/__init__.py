"""`rewardsvc eval`: RewardBench-style evaluation of any scorer, in-process or on a server."""
