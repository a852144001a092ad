"""The run's record: one JSON line per logged step or evaluation (metrics.jsonl) and, at the end, a
PNG of the loss and the task's metrics, train (with an EMA) beside held-out."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "metrics.png"


class MetricsLog:
    """metrics.jsonl in `out`; a log with enabled=False (ranks other than 0) writes nothing."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.path = out / METRICS_FILE
        self.enabled = enabled

    def start(self, step: int, fresh: bool) -> None:
        """An empty log, or on resume the lines up to `step`."""
        if not self.enabled:
            return
        if fresh or not self.path.exists():
            self.path.write_text("")
            return
        # Lines written after the checkpoint we resume from describe steps that will be redone.
        kept = [ln for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= step]
        self.path.write_text("".join(ln + "\n" for ln in kept))

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def plot(out: Path, plot_metrics: tuple[str, ...]) -> None:
    """metrics.png from out/metrics.jsonl: loss on the left, `plot_metrics` on the right."""
    path = out / METRICS_FILE
    if not path.exists():
        return
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if any(k.startswith("eval_") for k in r)]
    if not train:
        return
    # Imported here: matplotlib costs every trainer process ~0.7 CPU-s to import, plotting or not.
    # A bare Figure renders with Agg and touches no global pyplot state.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    steps = [r["step"] for r in train]
    ax1.plot(steps, [r["loss"] for r in train], alpha=0.3, color="C0", label="train loss")
    ax1.plot(steps, _ema([r["loss"] for r in train]), color="C0", label="train loss (EMA)")
    if any("eval_loss" in r for r in evals):
        e = [r for r in evals if "eval_loss" in r]
        ax1.plot([r["step"] for r in e], [r["eval_loss"] for r in e], "o-", color="C1", label="eval loss")
    ax1.set_xlabel("step")
    ax1.set_title("loss")
    ax1.legend()
    for i, name in enumerate(plot_metrics):
        if any(name in r for r in train):
            ax2.plot(steps, _ema([r.get(name, float("nan")) for r in train]), color=f"C{i}",
                     label=f"train {name} (EMA)")
        e = [r for r in evals if f"eval_{name}" in r]
        if e:
            ax2.plot([r["step"] for r in e], [r[f"eval_{name}"] for r in e], "o-", color=f"C{i + 3}",
                     label=f"eval {name}")
    ax2.set_xlabel("step")
    ax2.set_title(", ".join(plot_metrics))
    ax2.legend()
    fig.savefig(out / PLOT_FILE, dpi=100)


def _ema(values: list[float], alpha: float = 0.1) -> list[float]:
    out: list[float] = []
    acc: float | None = None
    for v in values:
        acc = v if acc is None or math.isnan(acc) else (1 - alpha) * acc + alpha * v
        out.append(acc)
    return out
