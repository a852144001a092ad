"""The reliability diagram shows what its legend says (issue 18): per bin, a bar to the observed
frequency, a tick at the mean confidence, the gap between them, and the count. Checked on the
plotted matplotlib artists, not on pixels."""

from __future__ import annotations

from pathlib import Path

from rewardsvc.evaluation.report import reliability_figure, write_report
from rewardsvc.evaluation.suites import Summary
from rewardsvc.types import Result

# Bin [0.1, 0.2): 4 items, mean confidence 0.15, 3 positive (0.75): overconfident the other way.
# Bin [0.8, 0.9): 5 items, mean confidence 0.85, 1 positive (0.2). Bin [0.9, 1.0]: 1 item, 0.95, positive.
PROBS = [0.12, 0.14, 0.16, 0.18, 0.81, 0.83, 0.85, 0.87, 0.89, 0.95]
LABELS = [True, True, True, False, True, False, False, False, False, True]


def pyplot():
    """matplotlib.pyplot on the file backend, imported when a test runs: every xdist worker imports every
    test file at collection, and only one runs these (tests/test_suite_lanes.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def summary() -> Summary:
    return Summary({}, [], [], [], {"s": PROBS}, "scores", PROBS, LABELS, "P(chosen preferred)")


def test_bars_are_frequencies_ticks_are_mean_confidences_with_counts() -> None:
    plt = pyplot()
    from matplotlib.collections import LineCollection
    from matplotlib.container import BarContainer

    fig = reliability_figure(summary(), "rm / pairs")
    try:
        [ax] = fig.axes
        [bars] = [c for c in ax.containers if isinstance(c, BarContainer)]
        xs = [round(p.get_x() + p.get_width() / 2, 6) for p in bars.patches]
        assert xs == [0.15, 0.85, 0.95]
        assert [round(p.get_height(), 6) for p in bars.patches] == [0.75, 0.2, 1.0]

        ticks = next(ln for ln in ax.lines if ln.get_label() == "mean confidence")
        assert [round(x, 6) for x in ticks.get_xdata()] == xs  # at the bins, not at the bar tops
        assert [round(y, 6) for y in ticks.get_ydata()] == [0.15, 0.85, 0.95]

        [gaps] = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert gaps.get_label() == "gap (calibration error)"
        spans = sorted((round(s[0][0], 6), round(s[0][1], 6), round(s[1][1], 6)) for s in gaps.get_segments())
        assert spans == [(0.15, 0.15, 0.75), (0.85, 0.2, 0.85), (0.95, 0.95, 1.0)]

        assert [t.get_text() for t in ax.texts] == ["n=4", "n=5", "n=1"]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["perfectly calibrated", "gap (calibration error)", "mean confidence", "observed frequency"]
        # ECE = sum n_b/N |freq_b - conf_b| = (4*0.6 + 5*0.65 + 1*0.05) / 10
        assert "ECE = 0.570 (n=10)" in ax.get_title()
        assert ax.get_xlabel() == "P(chosen preferred) (10 equal-width bins)"
    finally:
        plt.close(fig)


def test_the_report_writes_the_diagram(tmp_path: Path) -> None:
    plt = pyplot()

    header = {"suite": "pairs", "scorer": "rm", "data": ["x"], "n_rows": 1, "n_items": 10, "target": "t",
              "seconds": 1.0, "items_per_s": 10.0, "n_errors": 0, "errors_by_code": {}}
    files = write_report(tmp_path, header, summary(), [Result(id=str(i), score=p) for i, p in enumerate(PROBS)],
                         [str(i) for i in range(len(PROBS))])
    assert Path(files["reliability"]).stat().st_size > 5000
    assert plt.get_fignums() == []  # every figure closed
