"""Scorers: the compute layer. See `base.Scorer` and `rewardsvc.registry`."""

from rewardsvc.scorers.base import NoConfig, NoOptions, Scorer, option

__all__ = ["NoConfig", "NoOptions", "Scorer", "option"]
