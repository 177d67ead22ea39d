"""Metric math: segment and track accuracy, per-genre scores, confidence intervals, confusion matrices.

A track's prediction is the mean of its segment probabilities (soft vote, the original's rule);
majority vote is reported beside it. Per-genre precision/recall/F1 and the confusion matrix are
over tracks, because a track is what a user classifies. The 95 % interval of track accuracy comes
from a bootstrap over tracks: with ~100 validation tracks it is several points wide, and two runs
whose intervals overlap widely are not shown to differ.

Nothing here reads or writes files: :mod:`genrekit.evaluation.reports` evaluates run folders and writes
the report files from these numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import ParameterError

__all__ = [
    "N_BOOTSTRAP",
    "TrackPredictions",
    "Evaluation",
    "predict_logits",
    "softmax",
    "aggregate_tracks",
    "evaluate_predictions",
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
