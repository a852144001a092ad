"""The one registry of scorers by type name.

Adding a scorer is one new module plus one line here. Entries are import strings so that hosting
only the verifiers never imports torch.
"""

from __future__ import annotations

import importlib

from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import Scorer

SCORERS: dict[str, str] = {
    "math": "rewardsvc.scorers.math:MathScorer",
    "code": "rewardsvc.scorers.code:CodeScorer",
    "classifier": "rewardsvc.scorers.classifier:ClassifierScorer",
    "prm": "rewardsvc.scorers.prm:PRMScorer",
    "implicit_prm": "rewardsvc.scorers.implicit_prm:ImplicitPRMScorer",
    "confidence": "rewardsvc.scorers.confidence:ConfidenceScorer",
    "judge": "rewardsvc.scorers.judge:JudgeScorer",
    "composite": "rewardsvc.scorers.composite:CompositeScorer",
}


def scorer_class(type_name: str) -> type[Scorer]:
    """The Scorer class registered as `type_name`, or a plug-in given as "package.module:Class"."""
    if ":" in type_name:
        target = type_name  # users' own scorers, without forking the registry
    else:
        try:
            target = SCORERS[type_name]
        except KeyError:
            raise ConfigError(
                f"unknown scorer type {type_name!r}; registered types: {sorted(SCORERS)} "
                "(or give a plug-in as 'package.module:Class')"
            ) from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"scorer type {type_name!r} needs {module_name}, which failed to import ({exc}); "
            "run `make install` or install the extra it names"
        ) from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Scorer)):
        raise ConfigError(f"scorer type {type_name!r}: {target} is not a rewardsvc Scorer class")
    return cls
