"""Resume edge cases: a run killed in its first epoch, a damaged last.pt, and a run that never started."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from genrekit.cli import app
from genrekit.config import AudioConfig, FeatureConfig
from genrekit.exceptions import ResumeError
from genrekit.splits import SplitConfig
from genrekit.store import prepare_store
from genrekit.training import TrainConfig, new_run_dir, resume, run_config, train

runner = CliRunner()


@pytest.fixture
def tiny_store(make_dataset: Callable[..., Path], tmp_path: Path) -> Path:
    root = make_dataset(per_label=4, seconds=3.0)
    prepare_store(root, tmp_path / "store", FeatureConfig(audio=AudioConfig(segment_seconds=1.0, hop_seconds=1.0)), jobs=1)
    return tmp_path / "store"


CONFIG = TrainConfig(model="cnn1", epochs=2, batch_size=8, split=SplitConfig(val_fraction=0.25), num_threads=1)


def _killed_in_first_epoch(store: Path, run: Path) -> None:
    def kill(epoch: int, batch: int, n_batches: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(store, CONFIG, run_dir=run, on_batch=kill)
    assert not (run / "last.pt").exists() and (run / "config.json").is_file()


def test_run_killed_in_its_first_epoch_resumes_from_scratch(tiny_store: Path, tmp_path: Path) -> None:
    full = train(tiny_store, CONFIG, run_dir=tmp_path / "full")
    _killed_in_first_epoch(tiny_store, tmp_path / "cut")
    result = resume(tmp_path / "cut")  # before: "not a resumable run folder"
    assert [m.epoch for m in result.history] == [1, 2]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert result.history[-1].val_loss == full.history[-1].val_loss


def test_run_killed_in_its_first_epoch_can_be_restarted_under_its_name(tiny_store: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _killed_in_first_epoch(tiny_store, runs / "x")
    assert new_run_dir(runs, "x") == runs / "x"  # before: "Run folder runs/x exists"
    result = runner.invoke(app, ["train", str(tiny_store), "--model", "cnn1", "--epochs", "1", "--batch-size", "8",
                                 "--val-fraction", "0.25", "--runs-dir", str(runs), "--name", "x", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert (runs / "x" / "model.pt").is_file()
    with pytest.raises(Exception, match="exists"):
        new_run_dir(runs, "x")  # a run with a finished epoch is never overwritten


@pytest.mark.parametrize("damage", [b"not a checkpoint", b""])
def test_damaged_last_pt_is_a_one_line_error(tiny_store: Path, tmp_path: Path, damage: bytes) -> None:
    run = train(tiny_store, CONFIG, run_dir=tmp_path / "run").run_dir
    (run / "last.pt").write_bytes(damage)
    with pytest.raises(ResumeError, match="last.pt: damaged"):
        resume(run)
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "damaged" in result.output and len(result.output.strip().splitlines()) == 1


def test_train_on_a_missing_store_creates_no_run_folder(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tmp_path / "nonexistent"), "--runs-dir", str(runs)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not runs.exists() or not any(runs.iterdir())


def test_run_config_reads_a_run_folder_and_refuses_others(tmp_path: Path) -> None:
    """What the CLI needs from a run folder (its epochs, whether it is leaky) comes from the library."""
    config = TrainConfig(epochs=7)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"train_config": config.to_dict()}))
    assert run_config(tmp_path / "run") == config
    with pytest.raises(ResumeError, match="not a resumable run folder"):
        run_config(tmp_path)
    (tmp_path / "run" / "config.json").write_text("{not json")
    with pytest.raises(ResumeError, match="unreadable"):
        run_config(tmp_path / "run")
