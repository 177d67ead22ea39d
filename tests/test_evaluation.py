"""Metrics from known predictions, and the report files of an evaluated run."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from genrekit.config import AudioConfig, FeatureConfig
from genrekit.evaluation.metrics import aggregate_tracks, evaluate_predictions
from genrekit.evaluation.reports import compare, evaluate_run
from genrekit.exceptions import ParameterError, StoreError
from genrekit.datasets.splits import SplitConfig
from genrekit.datasets.prepare import prepare_store
from genrekit.training.config import TrainConfig
from genrekit.training.fit import train

LABELS = ["blues", "classical", "rock"]


def test_soft_and_majority_vote_can_disagree() -> None:
    # Two segments weakly say class 0, one strongly says class 1: majority -> 0, mean probability -> 1.
    probs = np.array([[0.5, 0.4, 0.1], [0.5, 0.4, 0.1], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]])
    tracks = aggregate_tracks(np.array(["a", "a", "a", "b"]), probs, np.array([1, 1, 1, 2]))
    assert tracks.track_ids.tolist() == ["a", "b"]
    assert tracks.soft.tolist() == [1, 2] and tracks.majority.tolist() == [0, 2]
    assert tracks.n_segments.tolist() == [3, 1]
    assert tracks.segment_predictions == [[0, 0, 1], [2]]
    np.testing.assert_allclose(tracks.probs[0], [1 / 3, 0.6, 1 / 15])


def test_metrics_of_perfect_and_known_predictions(rng: np.random.Generator) -> None:
    y_track = np.repeat([0, 1, 2], 4)
    track_ids = np.repeat([f"t{i:02d}" for i in range(12)], 3)
    y = np.repeat(y_track, 3)
    perfect = np.eye(3)[y]
    ev = evaluate_predictions(perfect, y, track_ids, LABELS)
    assert ev.track_accuracy == ev.segment_accuracy == ev.macro_f1 == 1.0
    assert ev.track_accuracy_ci95 == (1.0, 1.0)
    assert ev.confusion.sum() == ev.n_tracks == 12 and ev.n_segments == 36

    # Every rock track predicted as blues.
    wrong = perfect.copy()
    wrong[y == 2] = [1.0, 0.0, 0.0]
    ev = evaluate_predictions(wrong, y, track_ids, LABELS)
    assert ev.track_accuracy == pytest.approx(8 / 12)
    assert ev.per_genre["rock"]["recall"] == 0.0 and ev.per_genre["blues"]["precision"] == pytest.approx(0.5)
    assert ev.confusion[2, 0] == 4 and ev.confusion.sum() == 12
    lo, hi = ev.track_accuracy_ci95
    assert 0.0 <= lo < ev.track_accuracy < hi <= 1.0
    assert evaluate_predictions(wrong, y, track_ids, LABELS).track_accuracy_ci95 == (lo, hi)  # seeded

    noisy = rng.dirichlet(np.ones(3), size=len(y))
    ev = evaluate_predictions(noisy, y, track_ids, LABELS)
    assert ev.confusion.sum() == 12 and 0.0 <= ev.macro_f1 <= 1.0


def test_nothing_to_evaluate_is_an_error() -> None:
    with pytest.raises(ParameterError):
        evaluate_predictions(np.zeros((0, 3)), np.zeros(0, dtype=int), np.array([]), LABELS)


@pytest.fixture
def trained_run(make_dataset: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    root = make_dataset(per_label=4, seconds=2.0)
    store = tmp_path / "store"
    prepare_store(root, store, FeatureConfig(audio=AudioConfig(segment_seconds=1.0, hop_seconds=1.0)), jobs=1)
    config = TrainConfig(model="cnn1", epochs=1, batch_size=8, num_threads=1,
                         split=SplitConfig(val_fraction=0.25, test_fraction=0.25))
    return train(store, config, run_dir=tmp_path / "run").run_dir, store


def test_evaluate_run_writes_every_report_file(trained_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = trained_run
    report = evaluate_run(run, partition="test")
    out = report.out_dir
    assert out == run / "eval-test"
    for name in ("summary.json", "detailed_results.csv", "confusion_matrix.csv", "confusion_matrix_normalized.csv", "confusion_matrix.png"):
        assert (out / name).is_file(), name
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"]["protocol"] == "random" and summary["split"]["partition"] == "test"
    assert summary["split"]["leaky"] is False and "warning" not in summary
    assert summary["n_tracks"] == 3 and set(summary["per_genre"]) == set(LABELS)

    with open(out / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true\\predicted", *LABELS]
    assert sum(int(v) for row in rows[1:] for v in row[1:]) == summary["n_tracks"]
    with open(out / "confusion_matrix_normalized.csv") as f:
        for row in list(csv.reader(f))[1:]:
            assert sum(float(v) for v in row[1:]) == pytest.approx(1.0, abs=1e-3) or all(float(v) == 0 for v in row[1:])

    with open(out / "detailed_results.csv") as f:
        detailed = list(csv.DictReader(f))
    assert list(detailed[0]) == ["genre", "track", "file_path", "true_label", "predicted_label", "confidence", "num_segments",
                                 "correct", "prob_blues", "prob_classical", "prob_rock", "segment_predictions"]
    assert len(detailed) == 3
    for row in detailed:
        assert int(row["num_segments"]) == len(json.loads(row["segment_predictions"])) == 2
        assert Path(row["file_path"]).is_file()
        assert int(row["correct"]) == (row["true_label"] == row["predicted_label"])

    rows = compare([run])
    assert [(r.protocol, r.partition, r.n_tracks) for r in rows] == [("random", "test", 3)]


def test_evaluate_refuses_empty_partitions_and_foreign_stores(trained_run: tuple[Path, Path], make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    run, store = trained_run
    evaluate_run(run, partition="val")
    with pytest.raises(ParameterError, match=r"^The partition to evaluate must be one of test or val\. Got 'train' instead\.$") as refused:
        evaluate_run(run, partition="train")
    # The library's words name no command-line option; the fields let the CLI say --split.
    assert (refused.value.parameter, refused.value.allowed, refused.value.got) == ("partition", "one of test or val", "train")
    other = tmp_path / "other"
    prepare_store(make_dataset(per_label=1, seconds=3.0, root=tmp_path / "d2"), other, jobs=1)
    with pytest.raises(StoreError, match="another config"):
        evaluate_run(run, store=other)


def test_a_model_without_its_split_is_named_in_the_error(trained_run: tuple[Path, Path]) -> None:
    from dataclasses import replace

    from genrekit.checkpoint import load_checkpoint, save_checkpoint
    from genrekit.exceptions import CheckpointError

    run, _ = trained_run
    checkpoint = load_checkpoint(run / "model.pt")
    save_checkpoint(replace(checkpoint, metadata={k: v for k, v in checkpoint.metadata.items() if k != "split"}), run / "model.pt")
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(run / 'model.pt'))}: carries no split config"):
        evaluate_run(run)


def test_genres_without_tracks_are_na_not_zero(tmp_path) -> None:
    """A genre absent from the partition has no recall or F1 to report: None ("n/a"), not a misleading 0.000."""
    names = ["blues", "rock", "jazz"]
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]], dtype=np.float32)
    ev = evaluate_predictions(probs, np.array([0, 1]), np.array(["a", "b"]), names, n_bootstrap=10)
    assert ev.per_genre["jazz"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert ev.per_genre["rock"]["f1"] == 1.0


def test_history_and_confusion_figures_label_what_they_show(tmp_path, monkeypatch) -> None:
    import matplotlib.figure

    from genrekit.plots.metrics import plot_confusion, plot_history

    seen: list[matplotlib.figure.Figure] = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: seen.append(fig))
    plot_confusion(np.array([[2, 1], [0, 3]]), ["blues", "rock"], tmp_path / "c.png", unit="tracks")
    assert seen[0].axes[0].get_title() == "tracks (counts)"
    rows = [{"epoch": e, "train_loss": 1.0, "val_loss": 1.1, "train_accuracy": 0.9, "val_accuracy": 0.5, "val_track_accuracy": 0.6}
            for e in (1, 2)]
    plot_history(rows, tmp_path / "h.png")
    fig = seen[1]
    fig.canvas.draw()
    for ax in fig.axes:  # every legend lies outside its axes: it cannot cover a curve
        legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert legend.x0 >= frame.x1
