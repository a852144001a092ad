"""Writes an evaluation's report directory: report.json, report.md, results.jsonl and PNG plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewardsvc.evaluation.metrics import calibration
from rewardsvc.evaluation.suites import Summary
from rewardsvc.types import Result

# Laid out while drawing: tight_layout() before savefig drew every figure twice.
LAYOUT = "constrained"
PLOTS = {"scores": "scores.png", "reliability": "reliability.png", "subsets": "subsets.png"}


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(header: dict[str, Any], summary: Summary, plots: dict[str, str]) -> str:
    lines = [f"# rewardsvc eval: `{header['suite']}` suite, scorer `{header['scorer']}`", ""]
    lines += [
        f"- data: {', '.join(f'`{d}`' for d in header['data'])} "
        f"({header['n_rows']} rows, {header['n_items']} items scored)",
        f"- scored: {header['target']}, {header['seconds']:.1f} s ({header['items_per_s']:.1f} items/s)",
        f"- item errors: {header['n_errors']}"
        + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(header['errors_by_code'].items()))})"
           if header["n_errors"] else ""),
    ]
    if header.get("skipped_rows"):
        lines.append(f"- data rows skipped (could not be loaded): {header['skipped_rows']}")
    if header.get("options"):
        lines.append(f"- options: `{json.dumps(header['options'])}`")
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {fmt(k)} | {fmt(v)} |" for k, v in summary.headline]
    if summary.table_rows:
        lines += ["", "| " + " | ".join(summary.table_columns) + " |", "|" + "---|" * len(summary.table_columns)]
        lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in summary.table_rows]
    if plots:
        lines.append("")
        lines += [f"![{name}]({file})" for name, file in plots.items()]
    if header.get("skipped_examples"):
        lines += ["", "First skipped rows:", ""]
        lines += [f"- {fmt(why)[:300]}" for why in header["skipped_examples"]]
    if header.get("error_examples"):
        lines += ["", "First item errors:", ""]
        lines += [f"- `{e['id']}` {e['code']}: {fmt(e['message'])[:300]}" for e in header["error_examples"]]
    return "\n".join(lines) + "\n"


def _plot_scores(summary: Summary, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), layout=LAYOUT)
    series = {k: v for k, v in summary.distributions.items() if v}
    if series:
        lo = min(min(v) for v in series.values())
        hi = max(max(v) for v in series.values())
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = [lo + (hi - lo) * i / 30 for i in range(31)]
        for name, values in series.items():
            label = f"{name} (n={len(values)}, mean={sum(values) / len(values):.3g})"
            ax.hist(values, bins=bins, alpha=0.55, label=label)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("score")
    ax.set_ylabel("count")
    ax.set_title(f"{title}: {summary.distribution_title}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability_figure(summary: Summary, title: str) -> Any:
    """The reliability diagram as a matplotlib Figure. Per non-empty bin: a bar up to the observed
    frequency of positives, a red tick at the bin's mean confidence with a line closing the gap
    to the bar (the gap is the bin's calibration error), and the bin's count above. A calibrated
    scorer's ticks sit on the bar tops, on the diagonal."""
    import matplotlib.pyplot as plt

    cal = calibration(summary.reliability_probs, summary.reliability_labels)
    fig, ax = plt.subplots(figsize=(5.5, 5), layout=LAYOUT)
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfectly calibrated")
    bins = [b for b in cal["bins"] if b["n"]]
    width = 1 / len(cal["bins"])
    xs = [b["lower"] + width / 2 for b in bins]
    freq = [b["accuracy"] for b in bins]
    conf = [b["confidence"] for b in bins]
    ax.bar(xs, freq, width=width * 0.9, alpha=0.7, edgecolor="black", label="observed frequency")
    ax.vlines(xs, [min(f, c) for f, c in zip(freq, conf)], [max(f, c) for f, c in zip(freq, conf)],
              color="darkred", linewidth=1, label="gap (calibration error)")
    ax.plot(xs, conf, "_", color="darkred", markersize=22, markeredgewidth=2.5, linestyle="none",
            label="mean confidence")
    for x, f, c, b in zip(xs, freq, conf, bins):
        ax.annotate(f"n={b['n']}", (x, max(f, c)), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel(f"{summary.reliability_title or 'predicted probability'} ({len(cal['bins'])} equal-width bins)")
    ax.set_ylabel("fraction positive")
    ece = cal["ece"]
    ax.set_title(f"{title}: reliability, ECE = {ece:.3f} (n={cal['n']})" if ece is not None else title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _plot_reliability(summary: Summary, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig = reliability_figure(summary, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_bars(summary: Summary, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    names = list(summary.bars)
    values = [summary.bars[n] or 0.0 for n in names]  # a missing value draws as 0 and is labelled n/a
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(names) + 2), 4.2), layout=LAYOUT)
    pos = range(len(names))
    bars = ax.bar(pos, values, color="steelblue")
    for b, n in zip(bars, names):
        v = summary.bars[n]
        ax.annotate("n/a" if v is None else f"{v:.2f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(pos))
    ax.set_xticklabels(names, rotation=30 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center",
                       fontsize=8)
    top = max([1.0, *values])
    ax.set_ylim(min(0.0, min(values, default=0.0)), top * 1.08)
    ax.set_title(f"{title}: {summary.bars_title}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(directory: str | Path, header: dict[str, Any], summary: Summary, results: Sequence[Result],
                 item_ids: Sequence[str]) -> dict[str, str]:
    """Write the report files into `directory` (created); returns {kind: path} of what was written."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{header['scorer']} / {header['suite']}"
    plots: dict[str, str] = {}
    _plot_scores(summary, out / PLOTS["scores"], title)
    plots["scores"] = PLOTS["scores"]
    if summary.reliability_probs:
        _plot_reliability(summary, out / PLOTS["reliability"], title)
        plots["reliability"] = PLOTS["reliability"]
    if summary.bars:
        _plot_bars(summary, out / PLOTS["subsets"], title)
        plots["subsets"] = PLOTS["subsets"]
    with open(out / "results.jsonl", "w", encoding="utf-8") as f:
        for item_id, res in zip(item_ids, results):
            f.write(json.dumps({**res.to_dict(), "id": item_id}, ensure_ascii=False, default=str) + "\n")
    report = {**header, "metrics": summary.metrics, "plots": plots}
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    (out / "report.md").write_text(markdown(header, summary, plots), encoding="utf-8")
    written = {"json": str(out / "report.json"), "markdown": str(out / "report.md"),
               "results": str(out / "results.jsonl")}
    written.update({k: str(out / v) for k, v in plots.items()})
    return written
