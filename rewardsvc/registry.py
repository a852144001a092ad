"""The one registry of scorers by type name.

Adding a scorer is one new module plus one line here. Entries are import strings so that hosting
only the verifiers never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rewardsvc.dataclass_dict import describe_fields
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import Scorer

if TYPE_CHECKING:
    from rewardsvc.config import ScorerSpec

SCORERS: dict[str, str] = {
    "math": "rewardsvc.scorers.math:MathScorer",
    "code": "rewardsvc.scorers.code:CodeScorer",
    "classifier": "rewardsvc.scorers.classifier:ClassifierScorer",
    "prm": "rewardsvc.scorers.prm:PRMScorer",
    "implicit_prm": "rewardsvc.scorers.implicit_prm:ImplicitPRMScorer",
    "confidence": "rewardsvc.scorers.confidence:ConfidenceScorer",
    "judge": "rewardsvc.scorers.judge:JudgeScorer",
    "generative": "rewardsvc.scorers.generative:GenerativeScorer",
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


def scorer_info(name: str, cls: type[Scorer]) -> dict[str, Any]:
    """What ListScorers and `rewardsvc scorers` show for one hosted scorer."""
    return {"name": name, "kind": cls.kind, "description": cls.description, "options": describe_fields(cls.Options)}


def scorer_infos(specs: Sequence[ScorerSpec]) -> list[dict[str, Any]]:
    return [scorer_info(spec.name, scorer_class(spec.type)) for spec in specs]


def uses_of(specs: Sequence[ScorerSpec]) -> dict[str, list[str]]:
    """Each configured scorer's `uses()` (constructing a scorer is cheap: models load in `start`)."""
    uses: dict[str, list[str]] = {}
    for spec in specs:
        try:
            uses[spec.name] = scorer_class(spec.type)(spec.name, spec.config).uses()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return uses


def uses_closure(specs: Sequence[ScorerSpec], names: Sequence[str]) -> list[str]:
    """`names` and every scorer they use, transitively, each after the ones it uses: what hosting just
    `names` needs (in-process scoring loads only these). Only these scorers are constructed."""
    by_name = {spec.name: spec for spec in specs}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(f"no scorer(s) {missing} in `scorers:`; configured: {sorted(by_name)}")
    uses: dict[str, list[str]] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in uses or name not in by_name:
            continue  # a used scorer that is missing is reported by dependency_order
        uses[name] = uses_of([by_name[name]])[name]
        todo += uses[name]
    return dependency_order(uses)


def dependency_order(uses: Mapping[str, Sequence[str]]) -> list[str]:
    """Scorer names, each after the scorers it uses; a loop or a missing scorer is a ConfigError. The one
    place config checks, the service (start order) and Ray (deployment order) learn this."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ConfigError(f"scorers use each other in a loop: {' -> '.join([*path, name])}")
        if name not in uses:
            raise ConfigError(f"scorer {path[-1]!r} uses {name!r}, which is not in `scorers:` (not a scorer on "
                              f"this server); hosted: {sorted(uses)}")
        state[name] = 1
        for dep in uses[name]:
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in uses:
        visit(name, [])
    return order
