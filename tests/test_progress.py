"""Progress where no terminal shows a bar (issue 18): `make install`'s training and long CLI runs print a
line now and then with the count, rate, ETA and the latest loss.

The training run is `rewardsvc train rm` called in-process with stderr captured (not a terminal, as a
pipe is not: progress_bar asks stderr.isatty()); progress lines hold for any weights, so it trains
MiniLM cut to 2 layers (test_trainers.rm_args)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rewardsvc.progress import LineProgress, progress_bar


def test_a_line_per_five_percent_with_eta_and_the_latest_numbers() -> None:
    out = io.StringIO()
    bar = LineProgress(60, "RMTask", unit="step", file=out, interval_s=1e9)
    for step in range(1, 61):  # as the trainer does: this step's numbers, then the count
        bar.set_postfix({"loss": f"{1 - step / 100:.3f}"}, refresh=False)
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 21  # steps 3, 6, ..., 60, and the closing line
    assert lines[0].startswith("RMTask: 3/60 step (5%), ") and "ETA " in lines[0]
    assert lines[9].startswith("RMTask: 30/60 step (50%)") and lines[9].endswith("loss=0.700")
    assert lines[-1].startswith("RMTask: 60/60 step (100%)") and "elapsed" in lines[-1] and "ETA" not in lines[-1]


def test_resumed_runs_count_from_their_step_and_bytes_scale() -> None:
    out = io.StringIO()
    bar = LineProgress(100, "train", unit="step", initial=50, file=out, interval_s=1e9)
    bar.update(5)
    assert out.getvalue().startswith("train: 55/100 step (55%)")
    out = io.StringIO()
    bar = LineProgress(2_000_000, "math@in-process", unit="B", unit_scale=True, file=out, interval_s=1e9)
    bar.update(1_000_000)
    assert out.getvalue().startswith("math@in-process: 1.0MB/2.0MB (50%), ")


def test_a_terminal_gets_a_tqdm_bar_and_a_pipe_gets_lines() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    from tqdm import tqdm

    assert isinstance(progress_bar(10, "x", file=Tty()), tqdm)
    assert isinstance(progress_bar(10, "x", file=io.StringIO()), LineProgress)
    quiet = io.StringIO()
    bar = progress_bar(10, "x", file=quiet, enabled=False)
    bar.update(10)
    bar.close()
    assert quiet.getvalue() == ""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_training_without_a_terminal_reports_step_loss_and_eta(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """What `make install` shows while it trains the default RM: the real trainer, stderr not a terminal."""
    from test_trainers import rm_args

    from rewardsvc.cli import main

    args = rm_args(tmp_path / "run", max_steps=4, batch_size=2, max_length=48, progress="true")
    code = main(["train", *args])
    stderr = capsys.readouterr().err
    assert code == 0, stderr[-3000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith("RMTask: ")]
    assert [ln.split(",")[0] for ln in lines] == ["RMTask: 1/4 step (25%)", "RMTask: 2/4 step (50%)",
                                                   "RMTask: 3/4 step (75%)", "RMTask: 4/4 step (100%)",
                                                   "RMTask: 4/4 step (100%)"]
    assert all("loss=" in ln for ln in lines)
    assert all("ETA " in ln for ln in lines[:3]) and "elapsed" in lines[-1]
