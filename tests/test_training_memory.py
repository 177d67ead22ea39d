"""--low-memory: the laptop setting gives back each step's memory and trains exactly the same weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from typer.testing import CliRunner

from genrekit.cli import app
from genrekit.config import AudioConfig, FeatureConfig
from genrekit.datasets.splits import SplitConfig
from genrekit.datasets.prepare import prepare_store
from genrekit.training.config import TrainConfig
from genrekit.training.fit import train


def test_low_memory_trains_the_same_weights(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    store = tmp_path / "store"
    prepare_store(make_dataset(per_label=4, seconds=3.0), store, FeatureConfig(audio=AudioConfig(segment_seconds=1.0, hop_seconds=1.0)), jobs=1)
    config = TrainConfig(model="cnn1", epochs=2, batch_size=8, split=SplitConfig(val_fraction=0.25), num_threads=1)
    usual = train(store, config, run_dir=tmp_path / "usual")
    low = train(store, config, run_dir=tmp_path / "low", low_memory=True)
    a = torch.load(usual.run_dir / "last.pt", weights_only=True)["model"]
    b = torch.load(low.run_dir / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    result = CliRunner().invoke(app, ["train", "--resume", str(low.run_dir), "--epochs", "3", "--low-memory"])
    assert result.exit_code == 0, result.output
    help_text = " ".join(CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "--low-memory" in help_text
