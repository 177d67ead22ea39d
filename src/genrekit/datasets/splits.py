"""Train/validation/test splits, made over tracks before any segment exists.

Strategies
----------
``filtered``
    The fault-filtered, artist-aware GTZAN split of Kereliuk, Sturm & Larsen (2015) (443/197/290
    tracks), shipped with the package; with a partial dataset the lists are intersected with what exists.
``random``
    Stratified by label over tracks; byte-identical files and tracks sharing a ``group`` stay together.
``kfold``
    Stratified k-fold over the same units: fold ``fold`` is the test set, fold ``fold + 1`` the validation set.
``leaky-segments``
    The original hobby pipeline's random split over *segments*. Segments of one track land in both
    train and test, so its accuracy is inflated; every report of it carries :data:`LEAKY_LABEL`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, ClassVar, Literal

import numpy as np

from .discover import Track
from .._params import Constraint, Interval, OneOf, check_params
from ..exceptions import Mention, ParameterError

__all__ = [
    "STRATEGIES",
    "PARTITIONS",
    "LEAKY_LABEL",
    "SplitConfig",
    "Split",
    "filtered_lists",
    "make_split",
    "segment_partitions",
]

Strategy = Literal["filtered", "random", "kfold", "leaky-segments"]
STRATEGIES: tuple[str, ...] = ("filtered", "random", "kfold", "leaky-segments")
PARTITIONS = ("train", "val", "test")
LEAKY_LABEL = "LEAKY: segments of one track in both train and test"
_FILTERED_FILES = {"train": "train_filtered.txt", "val": "valid_filtered.txt", "test": "test_filtered.txt"}


@dataclass(frozen=True)
class SplitConfig:
    """How to split. ``val_fraction``/``test_fraction`` apply to ``random`` and ``leaky-segments``;
    ``n_folds``/``fold`` to ``kfold``. The default is the original's 80/20 train/validation."""

    strategy: Strategy = "random"
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    n_folds: int = 10
    fold: int = 0

    _constraints: ClassVar[dict[str, Constraint]] = {
        "strategy": OneOf(STRATEGIES),
        "seed": Interval(integer=True),
        "val_fraction": Interval(0, 1),
        "test_fraction": Interval(0, 1),
        "n_folds": Interval(3, None, integer=True),
        "fold": Interval(0, None, integer=True),
    }

    def __post_init__(self) -> None:
        check_params(self, self._constraints)
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ParameterError(
                "val_fraction and test_fraction must be in [0, 1) with a sum below 1. "
                f"Got {self.val_fraction!r} and {self.test_fraction!r} instead."
            )
        if not self.fold < self.n_folds:
            raise ParameterError.invalid("fold", f"in [0, {self.n_folds})", self.fold)

    @property
    def leaky(self) -> bool:
        return self.strategy == "leaky-segments"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Split:
    """The partition of every track (``train``/``val``/``test``); empty for ``leaky-segments``,
    whose partition is per segment (see :func:`segment_partitions`). ``excluded`` lists tracks in no partition."""

    config: SplitConfig
    partition: dict[str, str]
    excluded: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def leaky(self) -> bool:
        return self.config.leaky

    def tracks_in(self, name: str) -> list[str]:
        return sorted(t for t, p in self.partition.items() if p == name)

    def counts(self) -> dict[str, int]:
        counts = Counter(self.partition.values())
        return {p: counts.get(p, 0) for p in PARTITIONS}


def filtered_lists() -> dict[str, list[str]]:
    """Track ids of the fault-filtered GTZAN split as shipped: {"train": [...443], "val": [...197], "test": [...290]}."""
    root = resources.files("genrekit") / "data" / "splits"
    lists = {}
    for part, name in _FILTERED_FILES.items():
        lines = (root / name).read_text().split()
        lists[part] = [line.rsplit("/", 1)[-1].rsplit(".", 1)[0] for line in lines]
    return lists


def _units(tracks: list[Track]) -> list[list[Track]]:
    """Tracks that must stay together (same content hash or same group), via union-find."""
    parent = list(range(len(tracks)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    for i, t in enumerate(tracks):
        for kind, value in (("hash", t.content_hash), ("group", t.group)):
            if value is None:
                continue
            key = (kind, value)
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    groups: dict[int, list[Track]] = defaultdict(list)
    for i, t in enumerate(tracks):
        groups[find(i)].append(t)
    return list(groups.values())


def _unit_label(unit: list[Track]) -> str:
    return Counter(t.label for t in unit).most_common(1)[0][0]


def _random_split(tracks: list[Track], config: SplitConfig) -> dict[str, str]:
    rng = np.random.default_rng(config.seed)
    by_label: dict[str, list[list[Track]]] = defaultdict(list)
    for unit in _units(tracks):
        by_label[_unit_label(unit)].append(unit)
    partition = {}
    for label in sorted(by_label):
        units = by_label[label]
        order = rng.permutation(len(units))
        n_test = int(round(config.test_fraction * len(units)))
        n_val = int(round(config.val_fraction * len(units)))
        for rank, idx in enumerate(order):
            part = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            for t in units[idx]:
                partition[t.track_id] = part
    return partition


def _kfold_split(tracks: list[Track], config: SplitConfig) -> dict[str, str]:
    from sklearn.model_selection import StratifiedGroupKFold

    units = _units(tracks)
    members = [t for unit in units for t in unit]
    groups = [i for i, unit in enumerate(units) for _ in unit]
    labels = [t.label for t in members]
    folds = StratifiedGroupKFold(n_splits=config.n_folds, shuffle=True, random_state=config.seed)
    fold_of = np.empty(len(members), dtype=int)
    for k, (_, test_idx) in enumerate(folds.split(np.zeros(len(members)), labels, groups)):
        fold_of[test_idx] = k
    val_fold = (config.fold + 1) % config.n_folds
    return {
        t.track_id: "test" if f == config.fold else "val" if f == val_fold else "train"
        for t, f in zip(members, fold_of)
    }


def _filtered_split(tracks: list[Track]) -> tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]:
    lists = filtered_lists()
    wanted = {tid: part for part, ids in lists.items() for tid in ids}
    partition = {t.track_id: wanted[t.track_id] for t in tracks if t.track_id in wanted}
    unlisted = sorted(t.track_id for t in tracks if t.track_id not in wanted)
    # Byte-identical copies or one group listed in several partitions (a renamed or altered copy of
    # GTZAN): keep the unit in its most held-out partition and leave the other members out.
    conflicts = []
    for unit in _units(tracks):
        parts = {partition[t.track_id] for t in unit if t.track_id in partition}
        if len(parts) > 1:
            keep = next(p for p in ("test", "val", "train") if p in parts)
            for t in unit:
                if partition.get(t.track_id, keep) != keep:
                    del partition[t.track_id]
                    conflicts.append(t.track_id)
    excluded = tuple(sorted(unlisted + conflicts))
    counts = Counter(partition.values())
    notes = tuple(f"filtered split: {counts.get(p, 0)} of {len(lists[p])} listed {p} tracks present" for p in PARTITIONS)
    if unlisted:
        notes += (f"{len(unlisted)} tracks are in no list (GTZAN faults or non-GTZAN files) and are left out",)
    if conflicts:
        notes += (
            f"{len(conflicts)} tracks are left out because a duplicate or group member is listed in another "
            f"partition: {', '.join(sorted(conflicts))}",
        )
    return partition, excluded, notes


def make_split(tracks: list[Track], config: SplitConfig | None = None) -> Split:
    """Split ``tracks`` by ``config.strategy``; deterministic for a given seed and set of tracks (in any order).

    Raises
    ------
    ParameterError
        ``tracks`` is empty, ``filtered`` matches no track (not GTZAN names), or ``kfold`` has fewer
        tracks per label, or fewer independent units (after merging duplicates and groups), than folds.
    """
    config = config or SplitConfig()
    if not tracks:
        raise ParameterError("Cannot split an empty list of tracks.")
    tracks = sorted(tracks, key=lambda t: t.track_id)  # the split depends on the set of tracks, not their order
    if config.strategy == "leaky-segments":
        return Split(config, {}, notes=(LEAKY_LABEL,))
    if config.strategy == "filtered":
        partition, excluded, notes = _filtered_split(tracks)
        if not partition:
            raise ParameterError(
                "The 'filtered' split lists GTZAN track ids (e.g. blues.00029) and none of the tracks match; "
                "use ", Mention("strategy", "random"), " or kfold for other datasets."
            )
        return Split(config, partition, excluded, notes)
    if config.strategy == "kfold":
        smallest = min(Counter(t.label for t in tracks).values())
        if smallest < config.n_folds:
            raise ParameterError(
                "kfold with ", Mention("n_folds", config.n_folds), f" needs at least that many tracks per label; the smallest label has {smallest}."
            )
        n_units = len(_units(tracks))
        if n_units < config.n_folds:
            raise ParameterError(
                "kfold with ", Mention("n_folds", config.n_folds), " needs at least that many independent units; duplicates and "
                f"groups leave {n_units}. Use fewer folds."
            )
        return Split(config, _kfold_split(tracks, config))
    return Split(config, _random_split(tracks, config))


def segment_partitions(split: Split, segment_track_ids: np.ndarray) -> np.ndarray:
    """Partition name of every segment (``""`` for excluded tracks).

    Track-level strategies give each segment its track's partition. ``leaky-segments`` shuffles the
    segments themselves with the split's seed and fractions, like the original pipeline.
    """
    segment_track_ids = np.asarray(segment_track_ids)
    if not split.leaky:
        lookup = np.vectorize(lambda t: split.partition.get(t, ""), otypes=[object])
        return lookup(segment_track_ids).astype("U5") if len(segment_track_ids) else np.array([], dtype="U5")
    config = split.config
    n = len(segment_track_ids)
    order = np.random.default_rng(config.seed).permutation(n)
    n_test = int(round(config.test_fraction * n))
    n_val = int(round(config.val_fraction * n))
    parts = np.full(n, "train", dtype="U5")
    parts[order[:n_test]] = "test"
    parts[order[n_test : n_test + n_val]] = "val"
    return parts
