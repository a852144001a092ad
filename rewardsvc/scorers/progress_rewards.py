"""Progress rewards (Rewarding Progress / PAV, Setlur et al. 2024) and thought units.

A process reward that says how good a prefix is (a PRM's p(good), a verifier-scored value) credits
every step of a good solution the same. Progress credits each step with what it changed:

    A_t = V(prefix up to step t) - V(prefix up to step t-1),   V(prefix 0) = `initial`

so a step that turns a failing solution around gets the credit and a step that breaks a good one
the blame. The sum telescopes: sum_t A_t = V(whole) - initial.

Thought units (as thought-level PRMs do): contiguous steps with the same verdict (value at or above
`threshold`, or below it) form one unit, valued at its last step; the progress is then per unit.
"""

from __future__ import annotations

from collections.abc import Sequence


def progress(values: Sequence[float], initial: float) -> list[float]:
    """A_t = V_t - V_{t-1} for prefix values V_1..V_T, with V_0 = initial."""
    out = []
    previous = initial
    for v in values:
        out.append(v - previous)
        previous = v
    return out


def thought_units(values: Sequence[float], threshold: float) -> list[tuple[int, int]]:
    """[first, last] step indices (inclusive) of each run of steps with the same verdict."""
    units: list[tuple[int, int]] = []
    for i, v in enumerate(values):
        good = v >= threshold
        if units and (values[units[-1][0]] >= threshold) == good:
            units[-1] = (units[-1][0], i)
        else:
            units.append((i, i))
    return units


def unit_values(values: Sequence[float], units: Sequence[tuple[int, int]]) -> list[float]:
    """Each unit's value: the value of the prefix that ends with it (its last step)."""
    return [values[last] for _, last in units]
