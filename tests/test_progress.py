"""Progress when stderr is not a terminal: a plain line every few seconds instead of minutes of silence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from genrekit.cli import _app, app


def test_plain_progress_prints_lines_at_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(record=True, width=80, force_terminal=False)
    clock = iter([0.0, 1.0, 6.0, 7.0, 12.5])
    monkeypatch.setattr(_app.time, "monotonic", lambda: next(clock))
    progress = _app.PlainProgress(console, interval=5.0)  # t=0
    task = progress.add_task("predict", total=10)  # t=1
    progress.update(task, completed=4)  # t=6: 5 s since the last line
    progress.update(task, completed=5)  # t=7: too soon
    progress.update(task, completed=9)  # t=12.5
    assert console.export_text().splitlines() == [
        "predict: 4/10 (40%), 5 s elapsed, about 8 s left",
        "predict: 9/10 (90%), 12 s elapsed, about 1 s left",
    ]


def test_piped_folder_predict_reports_progress(make_dataset: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(labels=("a", "b"), per_label=2, seconds=3.0)
    monkeypatch.setattr(_app, "PLAIN_PROGRESS_SECONDS", 0.0)
    result = CliRunner().invoke(app, ["predict", str(data), "--format", "csv", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "predict: 4/4 (100%)" in result.stderr
    assert "\x1b[" not in result.stderr  # no terminal control codes in a log


def test_piped_training_reports_batches(make_dataset: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genrekit.config import AudioConfig, FeatureConfig
    from genrekit.datasets.prepare import prepare_store

    prepare_store(make_dataset(per_label=4, seconds=3.0), tmp_path / "store", FeatureConfig(audio=AudioConfig(segment_seconds=1.0, hop_seconds=1.0)), jobs=1)
    monkeypatch.setattr(_app, "PLAIN_PROGRESS_SECONDS", 0.0)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "store"), "--model", "cnn1", "--epochs", "1", "--batch-size", "8",
                                      "--runs-dir", str(tmp_path / "runs"), "--threads", "1", "--val-fraction", "0.25"])
    assert result.exit_code == 0, result.output
    assert "epoch 1/1: " in result.stderr and "run: " in result.stderr
