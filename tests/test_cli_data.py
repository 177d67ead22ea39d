"""``genrekit prepare`` and ``genrekit info``: the real-data acceptance run, output, help, errors, progress bar."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from genrekit.cli import app
from genrekit.datasets.splits import LEAKY_LABEL
from genrekit.datasets.store import open_store

from genrekit.datasets.prepare import prepare_store
runner = CliRunner()


def _genrekit(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "genrekit", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def gtzan_dev_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``genrekit prepare ../shared/data/gtzan-dev`` once for this module (about 15 s of CPU)."""
    from conftest import shared_data_dir

    out = tmp_path_factory.mktemp("gtzan-dev") / "store"
    return out, _genrekit("prepare", str(shared_data_dir() / "gtzan-dev"), "--out", str(out))


@pytest.mark.shared_data
@pytest.mark.slow
def test_shared_data_prepare_gtzan_dev(shared_data: Path, gtzan_dev_store: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """The issue's acceptance run: 10 segments for each of the 348 clips; a second run is up to date."""
    out, run = gtzan_dev_store
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "warning" not in run.stderr  # no clip is truncated or short
    assert "348 tracks, 3480 segments (348 computed, 0 from cache), 0 skipped" in run.stdout
    store = open_store(out)
    manifest = (shared_data / "gtzan-dev" / "MANIFEST.csv").read_text().splitlines()[1:]
    assert sorted(t.track_id for t in store.tracks) == sorted(line.split(",")[0] for line in manifest)
    assert set(Counter(store.track_ids.tolist()).values()) == {10}
    assert store.features.shape == (3480, 128, 130) and store.errors == []
    features = np.asarray(store.features)
    assert np.isfinite(features).all() and (features.max(axis=(1, 2)) == 0).all() and features.min() >= -80

    again = _genrekit("prepare", str(shared_data / "gtzan-dev"), "--out", str(out))
    assert again.returncode == 0 and "3480 segments (up to date)" in again.stdout


@pytest.mark.shared_data
def test_shared_data_info_filtered_split(shared_data: Path, gtzan_dev_store: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, run = gtzan_dev_store
    assert run.returncode == 0
    result = runner.invoke(app, ["info", str(out), "--split", "filtered"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "203 of 443 listed train tracks present" in result.output
    assert "108 of 197 listed val tracks present" in result.output
    assert "0 of 290 listed test tracks present" in result.output
    assert "37 tracks are in no list" in result.output


@pytest.fixture
def small_store(make_dataset: Callable[..., Path], tmp_path: Path) -> Path:
    out = tmp_path / "store"
    data = make_dataset(per_label=2, seconds=3.5)
    (data / "rock" / "bad [live].wav").write_bytes(b"not audio at all")
    prepare_store(data, out, jobs=1)
    return out


def test_info_shows_labels_partitions_errors_and_config(small_store: Path) -> None:
    result = runner.invoke(app, ["info", str(small_store)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for label in ("blues", "classical", "rock"):
        assert label in result.output
    assert "6 tracks, 6 segments" in result.output and "split random" in result.output
    assert "features: logmel, shape (128, 130), scaling seed, 22050 Hz, segments 3 s / hop 3 s" in result.output
    assert "1 files skipped" in result.output and "bad [live].wav: not decodable audio" in result.output


def test_info_leaky_split_carries_the_label(small_store: Path) -> None:
    result = runner.invoke(app, ["info", str(small_store), "--split", "leaky-segments"], env={"COLUMNS": "120"})
    assert result.exit_code == 0 and LEAKY_LABEL in result.output and " seg" in result.output


def test_info_errors_are_one_line(small_store: Path, tmp_path: Path) -> None:
    bad_split = runner.invoke(app, ["info", str(small_store), "--split", "by-artist"])
    assert bad_split.exit_code == 2 and "error:" in bad_split.output and "'--split' option" in bad_split.output
    not_store = runner.invoke(app, ["info", str(tmp_path)])
    assert not_store.exit_code == 2 and "not a complete genrekit feature store" in not_store.output
    assert isinstance(bad_split.exception, SystemExit) and isinstance(not_store.exception, SystemExit)  # no crash


def test_prepare_in_process_names_bad_files_literally(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_dataset(per_label=1, seconds=3.5)
    (data / "rock" / "bad [live].wav").write_bytes(b"not audio at all")
    result = runner.invoke(app, ["prepare", str(data), "--out", str(tmp_path / "s"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "bad [live].wav: not decodable audio" in result.output  # no markup eaten
    assert "3 tracks, 3 segments (3 computed, 0 from cache), 1 skipped" in result.output
    assert "━" not in result.output  # no progress bar outside a terminal
    strict = runner.invoke(app, ["prepare", str(data), "--out", str(tmp_path / "s"), "--strict"])
    assert strict.exit_code == 1 and "up to date" in strict.output


def test_prepare_options_build_the_config(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_dataset(per_label=1, seconds=6.0)
    out = tmp_path / "s"
    args = ["prepare", str(data), "--out", str(out), "--jobs", "1", "--scaling", "standard", "--segment-seconds", "2", "--hop-seconds", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    store = open_store(out)
    assert store.config.scaling == "standard" and store.features.shape == (3 * 5, 128, 87)
    assert (store.config.audio.segment_seconds, store.config.audio.hop_seconds) == (2.0, 1.0)

    config_file = tmp_path / "config.json"
    shutil.copy(out / "store.json", config_file)  # a store's own store.json is a valid --config
    again = runner.invoke(app, ["prepare", str(data), "--out", str(out), "--config", str(config_file)])
    assert again.exit_code == 0 and "up to date" in again.output, again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "{missing}"], "not a readable JSON file"),
        (["--config", "{broken}"], "not a readable JSON file"),
        (["--config", "{unknown}"], "Unknown feature config keys"),
        (["--scaling", "minmax"], "scaling"),
        (["--jobs", "0"], "jobs"),
    ],
)
def test_prepare_bad_options_exit_2(make_dataset: Callable[..., Path], tmp_path: Path, args: list[str], message: str) -> None:
    data = make_dataset(per_label=1, seconds=3.5)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "unknown.json").write_text(json.dumps({"n_mels": 64, "colour": "red"}))
    files = {"missing": str(tmp_path / "nope.json"), "broken": str(tmp_path / "broken.json"), "unknown": str(tmp_path / "unknown.json")}
    result = runner.invoke(app, ["prepare", str(data), "--out", str(tmp_path / "s"), *[a.format(**files) for a in args]])
    assert result.exit_code == 2 and "error:" in result.output and message in result.output, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an uncaught exception


def test_prepare_missing_data_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "no such file or folder" in result.output


@pytest.mark.parametrize("command", ["prepare", "info"])
def test_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "Example" in result.output and f"genrekit {command}" in result.output
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and command in top.output


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawn on a terminal (checked by hand with `script -qc "genrekit prepare ..."`), silent in pipes and logs."""
    from genrekit.cli import _app

    for terminal in (True, False):
        buffer = io.StringIO()
        monkeypatch.setattr(_app, "err_console", Console(file=buffer, force_terminal=terminal, width=100))
        with _app.progress_bar("prepare") as update:
            for done in (1, 2, 3):
                update(done, 3, f"file{done}.wav")
        assert ("━" in buffer.getvalue() and "3/3" in buffer.getvalue()) == terminal, buffer.getvalue()
