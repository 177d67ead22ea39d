"""Reports of evaluated runs: ``genrekit evaluate`` (:func:`evaluate_run`, the files of :func:`write_evaluation`)
and ``genrekit compare`` (:func:`compare`), from the numbers of :mod:`genrekit.evaluation.metrics`.

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

from .._io import output_errors
from ..datasets.splits import LEAKY_LABEL, PARTITIONS, SplitConfig, make_split, segment_partitions
from ..exceptions import CheckpointError, Mention, ParameterError, StoreError
from .metrics import Evaluation, evaluate_predictions, predict_logits, softmax

__all__ = ["EvaluationReport", "CompareRow", "evaluate_run", "write_evaluation", "compare"]


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
        raise ParameterError.invalid("partition", "one of test or val", partition, subject="The partition to evaluate")
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
            f"(train {counts['train']}, val {counts['val']}, test {counts['test']}); evaluate another partition, e.g. ", Mention("partition", "val"), "."
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


def write_evaluation(evaluation: Evaluation, summary: dict[str, Any], out_dir: str | Path, *, paths: dict[str, str]) -> None:
    """Write ``summary.json``, ``detailed_results.csv``, ``confusion_matrix.csv`` (+ ``_normalized``) and ``confusion_matrix.png``.

    ``detailed_results.csv`` has the original's columns: genre, track, file_path, true_label,
    predicted_label, confidence, num_segments, correct, one probability column per genre, and the
    segment predictions as a JSON list of genre names.
    """
    from ..plots.metrics import plot_confusion

    out = Path(out_dir)
    with output_errors(out):  # a file in the way, or a read-only place: an OutputError naming it
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
