"""The one interface every scorer implements; knows nothing of gRPC.

A scorer is a class with a `Config` dataclass (its YAML stanza) and an `Options` dataclass (what a
request may set), and an async `score(items, options) -> results` returning one Result per item in
order. Per-item problems are Results with `error` set, never exceptions.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rewardsvc.dataclass_dict import option
from rewardsvc.types import Item, Result, Text

if TYPE_CHECKING:
    from rewardsvc.batching import DynamicBatcher

__all__ = ["NoConfig", "NoOptions", "Scorer", "content_key", "option"]


@dataclasses.dataclass
class NoConfig:
    """For scorers without configuration."""


@dataclasses.dataclass
class NoOptions:
    """For scorers without per-request options."""


class Scorer(abc.ABC):
    """Base class: subclasses set `kind`, `description`, `Config`, `Options` and `score`."""

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig
    Options: ClassVar[type] = NoOptions
    #: What the scorer reads from an item: the fields it needs and the form of `reference` (shown by the
    #: generated scorer reference in README.md; `python -m rewardsvc.docs`).
    item_format: ClassVar[str] = ""
    #: True when scoring the same item twice may give different results (sampling): never cached.
    stochastic: ClassVar[bool] = False

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        self.config = config

    def uses(self) -> list[str]:
        """Names of the other hosted scorers this one calls (a composite's components). The service
        starts them first and refuses loops; on Ray each becomes a handle this scorer's replica gets."""
        return []

    def check_peers(self, peers: Mapping[str, Scorer]) -> None:  # noqa: B027 - a hook: most scorers use none
        """Raise ConfigError when this scorer can't work with `peers` (e.g. options it passes to a scorer it
        uses that that scorer refuses). The service asks every scorer before it starts any, so such a
        mistake costs no model load or worker start."""

    async def start(self, peers: Mapping[str, Scorer]) -> None:  # noqa: B027 - a hook: most scorers load nothing
        """Load models, start worker pools. `peers` holds at least the scorers named by `uses()`."""

    async def close(self) -> None:  # noqa: B027 - a hook, like start
        """Release workers and models."""

    def check_item(self, item: Item) -> str | None:
        """Return why `item` can't be scored by this scorer (it gets an INVALID_ITEM error), or None."""
        return None

    def dedupe_key(self, item: Item, options: Any) -> Hashable | None:
        """What makes two items the same work for this scorer under `options` (both get the result
        of scoring one of them), or None to score the item on its own. The result must depend on
        nothing of the item outside the key but its id; see scorers/dedupe.py."""
        return None

    def cacheable(self, result: Result) -> bool:
        """Whether `result` may be kept in the result cache: not when it reflects a passing
        condition (an error, a timeout) rather than the item."""
        return result.error is None

    def batchers(self) -> Sequence[DynamicBatcher[Any, Any]]:
        """The dynamic batchers this scorer feeds (their queue depth and fill are its gauges)."""
        return ()

    def stats(self) -> dict[str, float]:
        """Gauges for /metrics: by default, queue depth and batch fill of `batchers()`."""
        batchers = self.batchers()
        if not batchers:
            return {}
        padded = sum(b.stats.padded_tokens for b in batchers)
        real = sum(b.stats.real_tokens for b in batchers)
        return {
            "batch_queue_depth": float(sum(b.queue_depth for b in batchers)),
            "batch_fill_ratio": real / padded if padded else 0.0,
            "batches": float(sum(b.stats.batches for b in batchers)),
        }

    @abc.abstractmethod
    async def score(self, items: Sequence[Item], options: Any) -> list[Result]:
        """Score `items` (already checked); one Result per item, same order."""


def _text_key(text: Text) -> Hashable:
    return text if isinstance(text, str) else tuple((m.role, m.content) for m in text)


def content_key(item: Item) -> Hashable:
    """Everything a model scorer reads of an item (not its id, group_id or metadata): the default
    dedupe key of scorers whose result is a function of the rendered input."""
    return (_text_key(item.prompt), _text_key(item.response), item.reference, tuple(item.steps))
