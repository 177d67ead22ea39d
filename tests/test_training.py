"""Training on a tiny synthesized store: run folder, metrics per epoch, exact resume, leaky labels, CLI."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genrekit.training.augment import AugmentConfig
from genrekit.checkpoint import load_checkpoint
from genrekit.cli import app
from genrekit.config import AudioConfig, FeatureConfig
from genrekit.evaluation.reports import compare, evaluate_run
from genrekit.exceptions import ModelNotFoundError, ParameterError, ResumeError
from genrekit.datasets.splits import LEAKY_LABEL, SplitConfig
from genrekit.datasets.prepare import prepare_store
from genrekit.training.config import TrainConfig
from genrekit.training.fit import mean_and_scale, resume, train
from genrekit.training.runs import METRIC_COLUMNS, EpochMetrics, new_run_dir

TINY_AUDIO = AudioConfig(segment_seconds=1.0, hop_seconds=1.0)


@pytest.fixture
def tiny_store(make_dataset: Callable[..., Path], tmp_path: Path) -> Path:
    """12 tracks of 3 labels, three 1-s segments each: features of shape (128, 44)."""
    root = make_dataset(per_label=4, seconds=3.0)
    prepare_store(root, tmp_path / "store", FeatureConfig(audio=TINY_AUDIO), jobs=1)
    return tmp_path / "store"


def _config(**overrides: object) -> TrainConfig:
    values: dict[str, object] = {"model": "cnn1", "epochs": 2, "batch_size": 8, "split": SplitConfig(val_fraction=0.25), "num_threads": 1}
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_run_folder_has_every_file_and_one_metrics_row_per_epoch(tiny_store: Path, tmp_path: Path) -> None:
    config = _config()
    seen: list[EpochMetrics] = []
    result = train(tiny_store, config, run_dir=tmp_path / "run", on_epoch=seen.append)
    run = result.run_dir
    for name in ("config.json", "metrics.csv", "history.png", "model.pt", "last.pt", "log.txt"):
        assert (run / name).is_file(), name
    assert (run / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2] == [m.epoch for m in seen]
    assert tuple(rows[0]) == METRIC_COLUMNS
    saved = json.loads((run / "config.json").read_text())
    assert TrainConfig.from_dict(saved["train_config"]) == config
    assert saved["store"] == str(tiny_store.resolve())
    assert FeatureConfig.from_dict(saved["feature_config"]).audio == TINY_AUDIO

    checkpoint = load_checkpoint(run / "model.pt")
    meta = checkpoint.metadata
    assert checkpoint.labels == ["blues", "classical", "rock"]
    assert meta["training_data"]["n_train_tracks"] + meta["training_data"]["n_val_tracks"] == 12
    assert meta["split"]["protocol"] == "random" and meta["split"]["leaky"] is False and "leaky_label" not in meta["split"]
    assert set(meta["validation"]) >= {"track_accuracy", "track_accuracy_ci95", "macro_f1", "segment_accuracy", "n_tracks"}
    assert meta["validation"]["n_tracks"] == 3
    assert meta["epochs"] == result.best_epoch and {"created", "genrekit_version"} <= set(meta)
    with torch.inference_mode():
        assert checkpoint.build()(torch.zeros(2, 128, 44)).shape == (2, 3)
    assert "epoch 2/2" in (run / "log.txt").read_text()


def test_resume_after_interruption_ends_with_identical_weights(tiny_store: Path, tmp_path: Path) -> None:
    augment = AugmentConfig(noise_prob=0.5, pitch_prob=0.5, time_mask_prob=0.5, freq_mask_prob=0.5, mixup_prob=0.5)
    config = _config(model="cnn2", epochs=3, augment=augment, lr_schedule="cosine", lr=1e-3)
    train(tiny_store, config, run_dir=tmp_path / "full")

    def interrupt(metrics: EpochMetrics) -> None:
        if metrics.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_store, config, run_dir=tmp_path / "cut", on_epoch=interrupt)
    assert len(torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["history"]) == 1
    result = resume(tmp_path / "cut")
    assert [m.epoch for m in result.history] == [1, 2, 3]

    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert full["model"].keys() == cut["model"].keys()
    for key, value in full["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    assert full["history"][-1]["val_loss"] == cut["history"][-1]["val_loss"]
    with open(tmp_path / "cut" / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 3


def test_leaky_run_carries_the_leaky_label_in_every_report(tiny_store: Path, tmp_path: Path) -> None:
    config = _config(epochs=1, split=SplitConfig(strategy="leaky-segments", val_fraction=0.25))
    run = train(tiny_store, config, run_dir=tmp_path / "leaky").run_dir
    meta = load_checkpoint(run / "model.pt").metadata
    assert meta["split"]["leaky"] is True and meta["split"]["leaky_label"] == LEAKY_LABEL
    assert LEAKY_LABEL in (run / "log.txt").read_text()

    report = evaluate_run(run, partition="val")
    summary = json.loads((report.out_dir / "summary.json").read_text())
    assert summary["split"]["leaky_label"] == LEAKY_LABEL and summary["warning"] == LEAKY_LABEL
    assert [r.leaky for r in compare([run])] == [True]

    runner = CliRunner()
    for args in (["evaluate", str(run), "--split", "val"], ["compare", str(run)]):
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert LEAKY_LABEL in result.output


def test_options_run_and_standard_scaling_stores_per_band_statistics(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = make_dataset(per_label=3, seconds=2.0)
    store = tmp_path / "standard"
    prepare_store(root, store, FeatureConfig(scaling="standard", audio=TINY_AUDIO), jobs=1)
    config = _config(
        split=SplitConfig(val_fraction=0.34), class_weighting="balanced", label_smoothing=0.1, weight_decay=0.01,
        lr_schedule="plateau", patience=1, keep="last",
        augment=AugmentConfig(gain_prob=1.0, noise_prob=1.0, pitch_prob=1.0),
    )
    result = train(store, config, run_dir=tmp_path / "run")
    checkpoint = load_checkpoint(result.run_dir / "model.pt")
    assert checkpoint.mean is not None and checkpoint.std is not None
    assert checkpoint.mean.shape == (128, 1) and bool((checkpoint.std > 0).all())
    assert result.best_epoch == len(result.history)  # keep="last"


def test_constant_dimensions_keep_scale_one() -> None:
    """Dead units (constant in training) must not be divided by ~0, or any change on new audio explodes."""
    x = np.array([[0.5, 3.0, 1.0], [0.5, 5.0, 1.0], [0.5, 4.0, 1.0 + 1e-9]])
    mean, scale = mean_and_scale(x.sum(axis=0), (x**2).sum(axis=0), len(x))
    np.testing.assert_allclose(mean, x.mean(axis=0))
    np.testing.assert_allclose(scale, [1.0, x[:, 1].std(), 1.0])


def test_bad_runs_fail_with_named_errors(tiny_store: Path, tmp_path: Path) -> None:
    train(tiny_store, _config(epochs=1), run_dir=tmp_path / "run")
    with pytest.raises(ParameterError, match="resume"):
        train(tiny_store, _config(epochs=1), run_dir=tmp_path / "run")
    with pytest.raises(ParameterError, match="exists"):
        new_run_dir(tmp_path, "run")
    with pytest.raises(ResumeError, match="resumable"):
        resume(tmp_path)
    with pytest.raises(ParameterError, match="validation"):
        train(tiny_store, _config(split=SplitConfig(val_fraction=0.0)), run_dir=tmp_path / "noval")
    with pytest.raises(ModelNotFoundError, match="available models"):
        train(tiny_store, _config(model="nope"), run_dir=tmp_path / "nope")
    with pytest.raises(ParameterError, match="class_weighting"):
        TrainConfig(class_weighting="inverse")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="precision"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="augmentation keys"):
        TrainConfig.from_dict({"augment": {"speed": 1.0}})


def test_bf16_precision_trains_and_is_recorded(tiny_store: Path, tmp_path: Path) -> None:
    """bfloat16 autocast is opt-in; the run says so in config.json and still learns finite losses."""
    config = _config(model="cnn2", epochs=1, precision="bf16")
    result = train(tiny_store, config, run_dir=tmp_path / "run")
    assert all(math.isfinite(m.train_loss) and math.isfinite(m.val_loss) for m in result.history)
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["train_config"]["precision"] == "bf16"
    assert load_checkpoint(result.run_dir / "model.pt").state_dict["classifier.1.weight"].dtype == torch.float32


def test_cli_train_evaluate_compare(tiny_store: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_store), "--model", "cnn1", "--epochs", "1", "--batch-size", "8",
                                 "--split", "random", "--val-fraction", "0.25", "--test-fraction", "0.25",
                                 "--runs-dir", str(runs), "--name", "x", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "validation track accuracy" in result.output
    result = runner.invoke(app, ["evaluate", str(runs / "x"), "--split", "test"])
    assert result.exit_code == 0, result.output
    assert "track accuracy (soft vote)" in result.output and LEAKY_LABEL not in result.output
    assert (runs / "x" / "eval-test" / "summary.json").is_file()
    result = runner.invoke(app, ["compare", str(runs / "x")], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "random" in result.output
    # Errors are one line, never a traceback.
    result = runner.invoke(app, ["train", str(tiny_store), "--split", "kfold", "--runs-dir", str(runs)])
    assert result.exit_code == 2 and "Traceback" not in result.output and "--n-folds" in result.output
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "resumable" in result.output
    assert "genrekit train" in runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output

