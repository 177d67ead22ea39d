"""Metrics and reports: segment and track accuracy, per-genre scores, confidence intervals, confusion matrices.

A track's prediction is the mean of its segment probabilities (soft vote, the original's rule);
majority vote is reported beside it. Per-genre precision/recall/F1 and the confusion matrix are
over tracks, because a track is what a user classifies. The 95 % interval of track accuracy comes
from a bootstrap over tracks: with ~100 validation tracks it is several points wide, and two runs
whose intervals overlap widely are not shown to differ.

A report of a run trained or evaluated on the ``leaky-segments`` split carries
:data:`genrekit.datasets.splits.LEAKY_LABEL` in every file and printed line that shows its numbers.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import CheckpointError, ParameterError, StoreError
from ..datasets.splits import LEAKY_LABEL, PARTITIONS, SplitConfig, make_split, segment_partitions

__all__ = [
    "N_BOOTSTRAP",
    "TrackPredictions",
    "Evaluation",
    "EvaluationReport",
    "CompareRow",
    "predict_logits",
    "softmax",
    "aggregate_tracks",
    "evaluate_predictions",
    "evaluate_run",
    "write_evaluation",
    "compare",
]

N_BOOTSTRAP = 1000
_EVAL_BATCH = 256


def predict_logits(
    model: nn.Module,
    features: np.ndarray,
    indices: np.ndarray,
    *,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    batch_size: int = _EVAL_BATCH,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> np.ndarray:
    """Logits of the segments ``features[indices]``, read in sorted chunks from a (memory-mapped) float16 array.

    Runs where ``model``'s parameters are (a GPU under autocast, :func:`genrekit.runtime.device.autocast`); ``mean``
    and ``std`` stay on the CPU, where the chunks are standardized.

    Returns
    -------
    ndarray of shape (len(indices), n_classes), float32, in the order of ``indices``.
    """
    indices = np.asarray(indices)
    order = np.argsort(indices, kind="stable")
    out: np.ndarray | None = None
    from ..runtime.device import autocast

    was_training = model.training
    model.eval()
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    with torch.inference_mode(), autocast(device):
        for lo in range(0, len(indices), batch_size):
            pos = order[lo : lo + batch_size]
            x = torch.from_numpy(np.asarray(features[indices[pos]], dtype=np.float32))
            if mean is not None and std is not None:
                x = (x - mean) / std
            logits = model(x.to(device)).float().cpu().numpy()
            if out is None:
                out = np.empty((len(indices), logits.shape[1]), dtype=np.float32)
            out[pos] = logits
            if on_progress is not None:
                on_progress(min(lo + batch_size, len(indices)), len(indices), "")
    model.train(was_training)
    if out is None:
        raise ParameterError("No segments to predict: the selected partition is empty.")
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of an (n, n_classes) array, stable for large logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class TrackPredictions:
    """Segment predictions grouped by track (tracks in order of first appearance).

    Attributes
    ----------
    track_ids : ndarray of str, shape (n_tracks,)
    y_true : ndarray of int, shape (n_tracks,)
    probs : ndarray of shape (n_tracks, n_classes)
        Mean segment probability (the soft vote).
    majority : ndarray of int, shape (n_tracks,)
        Most frequent segment prediction; ties go to the class with the higher mean probability.
    n_segments : ndarray of int, shape (n_tracks,)
    segment_predictions : list of list of int
        Each track's segment predictions in segment order.
    """

    track_ids: np.ndarray
    y_true: np.ndarray
    probs: np.ndarray
    majority: np.ndarray
    n_segments: np.ndarray
    segment_predictions: list[list[int]]

    @property
    def soft(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def aggregate_tracks(track_ids: np.ndarray, probs: np.ndarray, y_true: np.ndarray) -> TrackPredictions:
    """Group per-segment probabilities by track: soft vote (mean probability) and majority vote.

    Parameters
    ----------
    track_ids : ndarray of str, shape (n_segments,)
    probs : ndarray of shape (n_segments, n_classes)
    y_true : ndarray of int, shape (n_segments,)
        Segment labels; a track's label is its first segment's.
    """
    track_ids = np.asarray(track_ids)
    uniq, first, inverse = np.unique(track_ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = rank[inverse]
    n_tracks, n_classes = len(uniq), probs.shape[1]
    counts = np.bincount(group, minlength=n_tracks)
    sums = np.zeros((n_tracks, n_classes))
    np.add.at(sums, group, probs)
    mean = sums / counts[:, None]
    seg_pred = probs.argmax(axis=1)
    votes = np.zeros((n_tracks, n_classes))
    np.add.at(votes, (group, seg_pred), 1)
    majority = (votes + 1e-3 * mean).argmax(axis=1)
    per_track: list[list[int]] = [[] for _ in range(n_tracks)]
    for g, p in zip(group.tolist(), seg_pred.tolist()):
        per_track[g].append(p)
    return TrackPredictions(
        track_ids=uniq[order],
        y_true=np.asarray(y_true)[first[order]],
        probs=mean,
        majority=majority,
        n_segments=counts,
        segment_predictions=per_track,
    )


@dataclass(frozen=True)
class Evaluation:
    """Every metric of one evaluated partition.

    Attributes
    ----------
    label_names : list of str
    segment_accuracy, track_accuracy, track_accuracy_majority, macro_f1 : float
    track_accuracy_ci95 : (float, float)
        Bootstrap (over tracks) 95 % interval of ``track_accuracy``.
    per_genre : dict of str to dict
        ``precision``, ``recall``, ``f1``, ``support`` (tracks) per genre, at track level. A score with
        nothing to measure is None, not 0: recall and F1 of a genre with no tracks in the partition,
        precision of a genre never predicted.
    confusion : ndarray of int, shape (n_classes, n_classes)
        Tracks, rows true, columns predicted (soft vote); sums to ``n_tracks``.
    n_tracks, n_segments : int
    tracks : TrackPredictions
    """

    label_names: list[str]
    segment_accuracy: float
    track_accuracy: float
    track_accuracy_ci95: tuple[float, float]
    track_accuracy_majority: float
    macro_f1: float
    per_genre: dict[str, dict[str, float | None]]
    confusion: np.ndarray
    n_tracks: int
    n_segments: int
    tracks: TrackPredictions

    def headline(self) -> dict[str, Any]:
        """The numbers a checkpoint's ``metadata["validation"]`` and ``summary.json`` carry."""
        return {
            "track_accuracy": self.track_accuracy,
            "track_accuracy_ci95": list(self.track_accuracy_ci95),
            "track_accuracy_majority": self.track_accuracy_majority,
            "macro_f1": self.macro_f1,
            "segment_accuracy": self.segment_accuracy,
            "n_tracks": self.n_tracks,
            "n_segments": self.n_segments,
        }


def _bootstrap_ci(correct: np.ndarray, *, n_bootstrap: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    samples = correct[rng.integers(0, len(correct), size=(n_bootstrap, len(correct)))].mean(axis=1)
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


def evaluate_predictions(
    probs: np.ndarray,
    y_true: np.ndarray,
    track_ids: np.ndarray,
    label_names: Sequence[str],
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Evaluation:
    """All metrics from per-segment class probabilities.

    Parameters
    ----------
    probs : ndarray of shape (n_segments, n_classes)
    y_true : ndarray of int, shape (n_segments,)
    track_ids : ndarray of str, shape (n_segments,)
    label_names : sequence of str
    n_bootstrap : int, default=1000
        Resamples of tracks for the confidence interval.
    seed : int, default=0
        Bootstrap seed (fixed, so a report is reproducible).
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        raise ParameterError("Nothing to evaluate: no segments were given.")
    tracks = aggregate_tracks(track_ids, probs, y_true)
    pred = tracks.soft
    correct = (pred == tracks.y_true).astype(float)
    all_labels = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        tracks.y_true, pred, labels=all_labels, zero_division=0
    )
    # Macro-F1 over genres that occur (as truth or prediction) here: an absent genre says nothing about the model.
    present = sorted(set(tracks.y_true.tolist()) | set(pred.tolist()))
    return Evaluation(
        label_names=list(label_names),
        segment_accuracy=float((probs.argmax(axis=1) == y_true).mean()),
        track_accuracy=float(correct.mean()),
        track_accuracy_ci95=_bootstrap_ci(correct, n_bootstrap=n_bootstrap, seed=seed),
        track_accuracy_majority=float((tracks.majority == tracks.y_true).mean()),
        macro_f1=float(f1_score(tracks.y_true, pred, labels=present, average="macro", zero_division=0)),
        per_genre={name: _genre_scores(i, precision, recall, f1, support, pred) for i, name in enumerate(label_names)},
        confusion=confusion_matrix(tracks.y_true, pred, labels=all_labels),
        n_tracks=len(tracks.track_ids),
        n_segments=len(y_true),
        tracks=tracks,
    )


# The figures write_evaluation draws, by name: what EvaluationReport.figures points at.
_FIGURES = {"confusion_matrix": "confusion_matrix.png"}


@dataclass(frozen=True)
class EvaluationReport:
    """An evaluated run: the metrics, the ``summary.json`` content and the folder the files went to."""

    evaluation: Evaluation
    summary: dict[str, Any]
    out_dir: Path

    @property
    def metrics(self) -> dict[str, Any]:
        """The headline numbers (track and segment accuracy, its 95 % interval, macro-F1, counts), as ``summary.json`` holds them."""
        return self.evaluation.headline()

    @property
    def figures(self) -> dict[str, Path]:
        """Paths of the report's PNGs by name (``"confusion_matrix"``), to show in a notebook or a page."""
        return {name: self.out_dir / file for name, file in _FIGURES.items()}


def _split_from_metadata(metadata: dict[str, Any], path: Path) -> SplitConfig:
    """The split a run was trained on, from its checkpoint ``path`` (named in the error, as every bad-file message does)."""
    try:
        return SplitConfig(**metadata["split"]["config"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: carries no split config in its metadata; was it trained by `genrekit train`?") from e


def evaluate_run(
    run: str | Path,
    *,
    partition: str = "test",
    store: str | Path | None = None,
    out_dir: str | Path | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
    device: str = "auto",
) -> EvaluationReport:
    """Evaluate a run's ``model.pt`` on one partition of its split and write the report files.

    The split is rebuilt from the config saved in the checkpoint, so the evaluated tracks are exactly
    the ones the run held out.

    Parameters
    ----------
    run : path
        A run folder written by :func:`genrekit.training.fit.train`.
    partition : {"test", "val"}, default="test"
    store : path, optional
        Feature store to read; defaults to the one the run was trained on. Its feature config must
        match the model's.
    out_dir : path, optional
        Defaults to ``<run>/eval-<partition>``.
    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Where the model runs (:func:`genrekit.runtime.device.torch_device`).

    Raises
    ------
    ParameterError
        Unknown partition, or the partition holds no tracks (the message gives the counts).
    StoreError
        The store's features differ from the model's.
    """
    from ..checkpoint import load_checkpoint
    from ..runtime.device import torch_device
    from ..datasets.store import open_store

    target = torch_device(device)
    if partition not in ("test", "val"):
        raise ParameterError(f"The partition to evaluate (--split, partition=...) must be one of test or val. Got {partition!r} instead.")
    run = Path(run)
    checkpoint = load_checkpoint(run / "model.pt")
    meta = checkpoint.metadata
    store_path = Path(store) if store is not None else Path(meta.get("training_data", {}).get("store", ""))
    st = open_store(store_path)
    if st.config != checkpoint.feature_config:
        raise StoreError(
            f"{store_path}: its features ({st.config.kind}, {st.meta['feature_shape']}) were computed with another "
            "config than the model's; prepare a store with the model's feature config."
        )
    split_config = _split_from_metadata(meta, run / "model.pt")
    split = make_split(st.tracks, split_config)
    parts = segment_partitions(split, st.track_ids)
    indices = np.flatnonzero(parts == partition)
    if len(indices) == 0:
        counts = {p: int(len(np.unique(st.track_ids[parts == p]))) for p in PARTITIONS}
        raise ParameterError(
            f"The {split_config.strategy!r} split of {store_path} has no {partition!r} tracks "
            f"(train {counts['train']}, val {counts['val']}, test {counts['test']}); evaluate another partition, e.g. --split val."
        )
    label_index = {name: i for i, name in enumerate(checkpoint.labels)}
    unknown = sorted(set(st.labels[indices].tolist()) - set(label_index))
    if unknown:
        raise ParameterError(f"The store has labels the model does not know: {', '.join(unknown)}; the model knows {', '.join(checkpoint.labels)}.")
    model = checkpoint.build().to(target)
    logits = predict_logits(model, st.features, indices, mean=checkpoint.mean, std=checkpoint.std, on_progress=on_progress)
    y = np.array([label_index[label] for label in st.labels[indices]])
    evaluation = evaluate_predictions(softmax(logits), y, st.track_ids[indices], checkpoint.labels)
    paths = {t.track_id: str(t.path) for t in st.tracks}
    leaky = bool(meta.get("split", {}).get("leaky", split.leaky))
    summary = {
        "run": str(run),
        "model": checkpoint.model_name,
        "split": {
            "protocol": split_config.strategy,
            "config": split_config.to_dict(),
            "partition": partition,
            "leaky": leaky,
            **({"leaky_label": LEAKY_LABEL} if leaky else {}),
        },
        **({"warning": LEAKY_LABEL} if leaky else {}),
        "store": str(store_path),
        **evaluation.headline(),
        "per_genre": evaluation.per_genre,
        "epochs": meta.get("epochs"),
        "train_seconds": meta.get("train_seconds"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = Path(out_dir) if out_dir is not None else run / f"eval-{partition}"
    write_evaluation(evaluation, summary, out, paths=paths)
    return EvaluationReport(evaluation, summary, out)


def _genre_scores(
    i: int, precision: np.ndarray, recall: np.ndarray, f1: np.ndarray, support: np.ndarray, pred: np.ndarray
) -> dict[str, float | None]:
    """One genre's track-level scores; sklearn's zero_division=0 placeholders become None (reported as "n/a")."""
    has_tracks, predicted = int(support[i]) > 0, bool((pred == i).any())
    return {
        "precision": float(precision[i]) if predicted else None,
        "recall": float(recall[i]) if has_tracks else None,
        "f1": float(f1[i]) if has_tracks else None,
        "support": int(support[i]),
    }


def write_evaluation(evaluation: Evaluation, summary: dict[str, Any], out_dir: str | Path, *, paths: dict[str, str]) -> None:
    """Write ``summary.json``, ``detailed_results.csv``, ``confusion_matrix.csv`` (+ ``_normalized``) and ``confusion_matrix.png``.

    ``detailed_results.csv`` has the original's columns: genre, track, file_path, true_label,
    predicted_label, confidence, num_segments, correct, one probability column per genre, and the
    segment predictions as a JSON list of genre names.
    """
    from ..plots.metrics import plot_confusion

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = evaluation.label_names
    tr = evaluation.tracks
    with open(out / "detailed_results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["genre", "track", "file_path", "true_label", "predicted_label", "confidence", "num_segments", "correct",
                         *(f"prob_{n}" for n in names), "segment_predictions"])
        for i, track_id in enumerate(tr.track_ids.tolist()):
            pred = int(tr.soft[i])
            true = names[int(tr.y_true[i])]
            writer.writerow([
                true, track_id, paths.get(track_id, ""), true, names[pred], f"{tr.probs[i, pred]:.4f}", int(tr.n_segments[i]),
                int(pred == tr.y_true[i]), *(f"{p:.4f}" for p in tr.probs[i]), json.dumps([names[p] for p in tr.segment_predictions[i]]),
            ])
    counts = evaluation.confusion
    totals = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    for name, matrix, fmt in (("confusion_matrix.csv", counts, "{:d}"), ("confusion_matrix_normalized.csv", normalized, "{:.4f}")):
        with open(out / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["true\\predicted", *names])
            for i, row in enumerate(matrix):
                writer.writerow([names[i], *(fmt.format(v) for v in row.tolist())])
    split = summary.get("split", {})
    title = f"{summary.get('model', '')} · {split.get('protocol', '')} / {split.get('partition', '')}"
    if split.get("leaky"):
        title += " · LEAKY"
    plot_confusion(counts, names, out / _FIGURES["confusion_matrix"], title=title, unit="tracks")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


@dataclass(frozen=True)
class CompareRow:
    """One line of ``genrekit compare``: a run evaluated on one partition (or its validation at training time)."""

    run: str
    model: str
    protocol: str
    partition: str
    track_accuracy: float
    ci95: tuple[float, float]
    macro_f1: float
    segment_accuracy: float
    n_tracks: int
    epochs: int | None
    train_seconds: float | None
    leaky: bool

    @property
    def label(self) -> str:
        return LEAKY_LABEL if self.leaky else ""


def compare(runs: Sequence[str | Path]) -> list[CompareRow]:
    """Rows for runs side by side: every ``eval-*/summary.json`` of each run, else the validation numbers in its ``model.pt``.

    Raises
    ------
    ModelNotFoundError
        A run folder has no ``model.pt``.
    """
    from ..checkpoint import load_checkpoint

    rows = []
    for run in map(Path, runs):
        checkpoint = load_checkpoint(run / "model.pt")
        meta = checkpoint.metadata
        summaries = sorted(run.glob("eval-*/summary.json"))
        for path in summaries:
            s = json.loads(path.read_text())
            rows.append(CompareRow(
                run=run.name, model=s["model"], protocol=s["split"]["protocol"], partition=s["split"]["partition"],
                track_accuracy=s["track_accuracy"], ci95=tuple(s["track_accuracy_ci95"]), macro_f1=s["macro_f1"],
                segment_accuracy=s["segment_accuracy"], n_tracks=s["n_tracks"], epochs=s.get("epochs"),
                train_seconds=s.get("train_seconds"), leaky=bool(s["split"].get("leaky")),
            ))
        if not summaries:
            v = meta.get("validation") or {}
            split = meta.get("split", {})
            rows.append(CompareRow(
                run=run.name, model=checkpoint.model_name, protocol=split.get("protocol", "?"), partition="val (training)",
                track_accuracy=v.get("track_accuracy", float("nan")), ci95=tuple(v.get("track_accuracy_ci95", (float("nan"),) * 2)),
                macro_f1=v.get("macro_f1", float("nan")), segment_accuracy=v.get("segment_accuracy", float("nan")),
                n_tracks=v.get("n_tracks", 0), epochs=meta.get("epochs"), train_seconds=meta.get("train_seconds"),
                leaky=bool(split.get("leaky")),
            ))
    return rows
