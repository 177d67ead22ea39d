"""The feature store: per-segment features of a whole dataset in one memory-mapped float16 array.

Layout of a store folder::

    store.json     config, counts, format version; written last, so its presence means "complete"
    features.npy   float16 array of shape (n_segments, *feature_shape), read memory-mapped
    segments.csv   one row per segment: track_id, label, segment_index, start_s, path
    tracks.csv     one row per stored track: track_id, label, path, content_hash, group, n_segments, first_segment
    errors.csv     files that could not be used: path, kind, reason (see :class:`genrekit.results.PredictionError`)
    cache/<config hash>/<content hash>.npy   per-track features; what makes re-runs and updates cheap
    cache/<config hash>/<content hash>.error.json   why a file could not be used (kind, reason), so reruns skip it

:func:`open_store` reads a store; :mod:`genrekit.datasets.prepare` builds one.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FeatureConfig
from ..exceptions import StoreError
from .discover import Track
from .splits import Split, segment_partitions

__all__ = ["FORMAT_VERSION", "FeatureStore", "open_store"]

FORMAT_VERSION = 1
_STORE_JSON = "store.json"
_STORE_FILES = (_STORE_JSON, "features.npy", "segments.csv", "tracks.csv", "errors.csv")
_PARTITIONS = ("train", "val", "test")
_ERROR_SUFFIX = ".error.json"  # cache entry of a file that could not be used: its reason, so reruns skip it
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:  # as _write_csv wrote it
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class FeatureStore:
    """A complete store opened for reading; ``features`` is memory-mapped (nothing loaded until indexed).

    Attributes
    ----------
    features : ndarray of shape (n_segments, *feature_shape), float16
    track_ids, labels : ndarray of str, shape (n_segments,)
        Track and label of every segment.
    segment_index : ndarray of int, shape (n_segments,)
    start_s : ndarray of float, shape (n_segments,)
    tracks : list of Track
        The stored tracks, in store order.
    errors : list of (path, reason)
    """

    path: Path
    config: FeatureConfig
    meta: dict[str, Any]
    features: np.ndarray
    track_ids: np.ndarray
    labels: np.ndarray
    segment_index: np.ndarray
    start_s: np.ndarray
    tracks: list[Track]
    errors: list[tuple[str, str]]

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["labels"])

    def summary(self) -> dict[str, Any]:
        """Tracks and segments per label: what ``genrekit info`` prints."""
        tracks = Counter(t.label for t in self.tracks)
        segments = Counter(self.labels.tolist())
        return {label: {"tracks": tracks[label], "segments": segments[label]} for label in self.label_names}

    def partition_counts(self, split: Split) -> dict[str, dict[str, int]]:
        """Per label, how many tracks each partition (train, val, test) holds; segments for a leaky split,
        whose partitions are per segment. What ``genrekit info --split`` prints."""
        if split.leaky:
            parts = segment_partitions(split, self.track_ids)
            return {
                label: {p: int(((self.labels == label) & (parts == p)).sum()) for p in _PARTITIONS} for label in self.label_names
            }
        counts = Counter((t.label, split.partition.get(t.track_id, "")) for t in self.tracks)
        return {label: {p: counts[label, p] for p in _PARTITIONS} for label in self.label_names}


def open_store(path: str | Path) -> FeatureStore:
    """Open a store written by :func:`prepare_store`.

    Raises
    ------
    StoreError
        The folder is not a store, or an interrupted ``prepare`` left it incomplete.
    """
    path = Path(path)
    meta = _read_json(path / _STORE_JSON)
    if meta is None:
        hint = " (an interrupted prepare? run `genrekit prepare` again to finish it)" if (path / "cache").exists() else ""
        raise StoreError(f"{path}: not a complete genrekit feature store{hint}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise StoreError(f"{path}: store format {meta.get('format_version')} is not supported (expected {FORMAT_VERSION}); rebuild it")
    try:
        features = np.load(path / "features.npy", mmap_mode="r")
        rows = _read_csv(path / "segments.csv")
        tracks = [
            Track(r["track_id"], r["label"], Path(r["path"]), r["group"] or None, r["content_hash"])
            for r in _read_csv(path / "tracks.csv")
        ]
        config = FeatureConfig.from_dict(meta["feature_config"])
    except (OSError, ValueError, KeyError) as e:
        raise StoreError(f"{path}: store files are missing or damaged ({e}); run `genrekit prepare` again") from e
    if len(rows) != len(features) or len(features) != meta["n_segments"]:
        raise StoreError(f"{path}: segments.csv and features.npy disagree; rebuild the store")
    return FeatureStore(
        path=path,
        config=config,
        meta=meta,
        features=features,
        track_ids=np.array([r["track_id"] for r in rows], dtype=str),
        labels=np.array([r["label"] for r in rows], dtype=str),
        segment_index=np.array([int(r["segment_index"]) for r in rows], dtype=np.int64),
        start_s=np.array([float(r["start_s"]) for r in rows], dtype=np.float64),
        tracks=tracks,
        errors=[(r["path"], r["reason"]) for r in _read_csv(path / "errors.csv")],
    )
