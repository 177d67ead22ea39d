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
from genrekit.datasets.splits import SplitConfig
from genrekit.datasets.prepare import prepare_store
from genrekit.training.config import TrainConfig
from genrekit.training.fit import resume, train
from genrekit.training.runs import new_run_dir, run_config

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


@pytest.fixture
def finished_run(tiny_store: Path, tmp_path: Path) -> Path:
    return train(tiny_store, CONFIG, run_dir=tmp_path / "run").run_dir


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--lr", "1e-3"], "--lr 0.001 differs from"),  # before: dropped in silence, lr stayed 1e-4
        (["--model", "cnn1", "--batch-size", "16"], "--batch-size 16 differs from"),
        (["--split", "kfold"], "--split kfold differs from"),
        (["--augment", "noise"], "--augment, --augment-prob and --mixup describe another augmentation"),
        (["--name", "other"], "--name configures a new run"),
        (["--epochs", "1"], "may only grow"),
    ],
)
def test_resume_refuses_options_that_differ_from_the_run(finished_run: Path, options: list[str], named: str) -> None:
    before = (finished_run / "metrics.csv").read_text()
    result = runner.invoke(app, ["train", "--resume", str(finished_run), *options])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert named in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert (finished_run / "metrics.csv").read_text() == before


def test_resume_takes_options_equal_to_the_run_and_more_epochs(finished_run: Path) -> None:
    result = runner.invoke(app, ["train", "--resume", str(finished_run), "--model", "cnn1", "--lr", "1e-4", "--batch-size", "8",
                                 "--val-fraction", "0.25", "--threads", "1", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert run_config(finished_run).epochs == 3


def test_resume_refuses_a_store_with_other_tracks_or_split(finished_run: Path, make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = make_dataset(per_label=3, seconds=3.0, root=tmp_path / "other-data")
    prepare_store(root, tmp_path / "other", FeatureConfig(audio=AudioConfig(segment_seconds=1.0, hop_seconds=1.0)), jobs=1)
    with pytest.raises(ResumeError, match=r"holds other tracks \(9\) than .* was trained on \(12\)"):  # before: trained on
        resume(finished_run, store=tmp_path / "other", epochs=3)
    result = runner.invoke(app, ["train", str(tmp_path / "other"), "--resume", str(finished_run), "--epochs", "3"])
    assert result.exit_code == 2 and "holds other tracks" in result.output and len(result.output.strip().splitlines()) == 1
    assert run_config(finished_run).epochs == 2  # a refused resume leaves the run as it was
    saved = json.loads((finished_run / "config.json").read_text())
    saved["data"]["split"] = "0" * 32  # the same tracks, split otherwise (another split's lists)
    (finished_run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ResumeError, match=r"gives other tracks \(9 training, 3 validation\)"):
        resume(finished_run, epochs=3)
