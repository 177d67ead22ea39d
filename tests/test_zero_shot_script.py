"""scripts/zero_shot_musicnn.py on a labeled folder that is not GTZAN: accuracy, and no filtered-split row."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import REPO


def test_zero_shot_reports_accuracy_on_any_labeled_folder(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    # Before: the filtered split found no GTZAN ids and the script died with a ParameterError traceback.
    data = make_dataset(labels=("rock", "electronic"), per_label=1, seconds=3.0, sample_rate=16000)
    out = tmp_path / "report.md"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "zero_shot_musicnn.py"), str(data), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "accuracy:" in result.stdout and "over 2 clips" in result.stdout and "electronic" in result.stdout
    report = out.read_text()
    assert "| all | 2 |" in report and "fault-filtered" not in report and "# Zero-shot musicnn baseline on data" in report
