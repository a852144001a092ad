"""Scheduling: the dynamic batcher. Knows items with a token cost, not models."""

from rewardsvc.batching.batcher import BatcherConfig, DynamicBatcher, QueueFullError

__all__ = ["BatcherConfig", "DynamicBatcher", "QueueFullError"]
