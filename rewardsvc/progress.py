"""Progress for long runs on stderr: a tqdm bar on a terminal, a plain line now and then elsewhere.

Under `make install | tee log`, CI or a job log, a tqdm bar is one ever-growing line of carriage
returns that shows nothing until the end; there a line every few percent (and at least every
`interval_s`) with the count, rate, ETA and the latest numbers says how far a run is.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    """The part of tqdm's interface the programs use."""

    def update(self, n: float = 1) -> Any: ...

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> Any: ...

    def close(self) -> Any: ...


def progress_bar(total: float | None, desc: str, *, unit: str = "it", initial: float = 0, enabled: bool = True,
                 unit_scale: bool = False, file: TextIO | None = None, lines: bool | None = None,
                 interval_s: float = 30.0) -> Progress:
    """A tqdm bar when `file` (stderr) is a terminal, else a LineProgress; `lines` forces either."""
    out = file if file is not None else sys.stderr
    if lines is None:
        lines = not (hasattr(out, "isatty") and out.isatty())
    if lines:
        return LineProgress(total, desc, unit=unit, initial=initial, enabled=enabled, unit_scale=unit_scale,
                            file=out, interval_s=interval_s)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=not enabled, unit_scale=unit_scale,
                file=out, dynamic_ncols=True)


def duration(seconds: float) -> str:
    """1h02m, 4m05s, 12s."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _scaled(n: float, unit: str) -> str:
    for prefix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000 or prefix == "T":
            return f"{n:.0f}{prefix}{unit}" if prefix == "" else f"{n:.1f}{prefix}{unit}"
        n /= 1000
    raise AssertionError("unreachable")


class LineProgress:
    """One line per 5% of `total` (or per `interval_s` when slower, or with no total), and one at the end:

        RMTask: 12/60 step (20%), 2.9 s/step, ETA 2m19s, loss=0.612
    """

    def __init__(self, total: float | None, desc: str, *, unit: str = "it", initial: float = 0,
                 enabled: bool = True, unit_scale: bool = False, file: TextIO | None = None,
                 interval_s: float = 30.0) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.start_n = initial
        self.enabled = enabled
        self.unit_scale = unit_scale
        self.file = file if file is not None else sys.stderr
        self.interval_s = interval_s
        self.postfix: dict[str, Any] = {}
        self.t0 = self.last_t = time.monotonic()
        self.step = total / 20 if total else None
        self.next_at = self._next_mark(initial)
        self.closed = False

    def _next_mark(self, n: float) -> float:
        if not self.step:
            return float("inf")
        return (int(n / self.step) + 1) * self.step

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.n >= self.next_at or now - self.last_t >= self.interval_s:
            self.next_at = self._next_mark(self.n)
            self._print(now)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._print(time.monotonic(), final=True)

    def _fmt(self, n: float) -> str:
        return _scaled(n, self.unit) if self.unit_scale else f"{n:g}"

    def line(self, now: float, final: bool = False) -> str:
        done = self.n - self.start_n
        elapsed = max(now - self.t0, 1e-9)
        parts = [f"{self._fmt(self.n)}/{self._fmt(self.total)}" if self.total else self._fmt(self.n)]
        if not self.unit_scale:
            parts[0] += f" {self.unit}"
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if done > 0:
            rate = done / elapsed
            if self.unit_scale:
                parts.append(f"{_scaled(rate, self.unit)}/s")
            else:
                parts.append(f"{1 / rate:.2f} s/{self.unit}" if rate < 1 else f"{rate:.1f} {self.unit}/s")
            if final:
                parts.append(f"{duration(elapsed)} elapsed")
            elif self.total and self.n < self.total:
                parts.append(f"ETA {duration((self.total - self.n) / rate)}")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return f"{self.desc}: " + ", ".join(parts)

    def _print(self, now: float, final: bool = False) -> None:
        self.last_t = now
        if self.enabled:
            print(self.line(now, final), file=self.file, flush=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
