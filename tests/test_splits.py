"""Splits over tracks: every strategy deterministic, leak-free (ids, duplicates, groups), and as documented."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrekit.datasets.discover import GTZAN_GENRES, Track, discover
from genrekit.exceptions import DatasetWarning, ParameterError
from genrekit.datasets.splits import LEAKY_LABEL, PARTITIONS, Split, SplitConfig, filtered_lists, make_split, segment_partitions


def _tracks(per_label: dict[str, int], dup_pairs: int = 0, group_size: int = 1, seed: int = 0) -> list[Track]:
    """Synthetic tracks (no files needed); ``dup_pairs`` pairs share a hash, groups of ``group_size`` share an artist."""
    rng = random.Random(seed)
    tracks = [
        Track(f"{label}.{k:05d}", label, Path(f"/x/{label}.{k:05d}.wav"), f"{label}-artist{k // group_size}" if group_size > 1 else None, f"h-{label}-{k}")
        for label, n in per_label.items()
        for k in range(n)
    ]
    for _ in range(dup_pairs):
        a, b = rng.sample(range(len(tracks)), 2)
        tracks[b] = Track(tracks[b].track_id, tracks[b].label, tracks[b].path, tracks[b].group, tracks[a].content_hash)
    return tracks


def _assert_leak_free(tracks: list[Track], split: Split) -> None:
    assert set(split.partition) <= {t.track_id for t in tracks}
    assert not set(split.partition) & set(split.excluded)
    assert set(split.partition.values()) <= set(PARTITIONS)
    for key in ("content_hash", "group"):
        parts: dict[str, set[str]] = defaultdict(set)
        for t in tracks:
            if getattr(t, key) is not None and t.track_id in split.partition:
                parts[getattr(t, key)].add(split.partition[t.track_id])
        assert all(len(p) == 1 for p in parts.values()), f"a {key} spans partitions"


def _n_units(tracks: list[Track]) -> int:
    """How many sets of tracks are tied together by a shared hash or group."""
    parent = {t.track_id: t.track_id for t in tracks}

    def root(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    first: dict[tuple[str, str], str] = {}
    for t in tracks:
        for key in (("hash", t.content_hash), ("group", t.group)):
            if key[1] is not None:
                parent[root(t.track_id)] = root(first.setdefault(key, t.track_id))  # type: ignore[arg-type]
    return len({root(t.track_id) for t in tracks})


TRACK_LEVEL = [
    SplitConfig(strategy="random", seed=3),
    SplitConfig(strategy="random", seed=3, val_fraction=0.15, test_fraction=0.15),
    SplitConfig(strategy="kfold", seed=3, n_folds=5, fold=2),
]


@pytest.mark.parametrize("config", TRACK_LEVEL, ids=["random", "random-test", "kfold"])
def test_track_level_split_is_complete_deterministic_and_leak_free(config: SplitConfig) -> None:
    tracks = _tracks({"blues": 20, "jazz": 30, "rock": 12}, dup_pairs=5)
    split = make_split(tracks, config)
    assert set(split.partition) == {t.track_id for t in tracks} and not split.excluded
    _assert_leak_free(tracks, split)
    assert make_split(tracks, config) == split
    assert make_split(list(reversed(tracks)), config) == split  # a set of tracks, not a sequence
    other = make_split(tracks, SplitConfig(**{**config.to_dict(), "seed": 4}))
    assert other.partition != split.partition


def test_random_split_is_stratified_80_20_by_default() -> None:
    split = make_split(_tracks({"blues": 50, "jazz": 20}))
    for label, n in (("blues", 50), ("jazz", 20)):
        parts = [p for t, p in split.partition.items() if t.startswith(label)]
        assert parts.count("val") == round(0.2 * n) and parts.count("train") == round(0.8 * n)
    assert split.counts() == {"train": 56, "val": 14, "test": 0}


def test_random_split_keeps_groups_together() -> None:
    tracks = _tracks({"reggae": 40, "pop": 40}, group_size=5)
    split = make_split(tracks, SplitConfig(strategy="random", seed=1, test_fraction=0.2))
    _assert_leak_free(tracks, split)
    assert all(split.counts()[p] > 0 for p in PARTITIONS)


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(5, 25), min_size=2, max_size=4),
    dup_pairs=st.integers(0, 8),
    group_size=st.integers(1, 4),
    seed=st.integers(0, 2**31),
    strategy=st.sampled_from(["random", "kfold"]),
    val_fraction=st.sampled_from([0.1, 0.2, 0.3]),
    test_fraction=st.sampled_from([0.0, 0.2]),
)
def test_leak_free_property(
    counts: list[int], dup_pairs: int, group_size: int, seed: int, strategy: str, val_fraction: float, test_fraction: float
) -> None:
    tracks = _tracks({f"label{i}": n for i, n in enumerate(counts)}, dup_pairs, group_size, seed)
    config = SplitConfig(
        strategy=strategy,  # type: ignore[arg-type]
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        n_folds=5,
        fold=seed % 5,
    )
    if strategy == "kfold" and _n_units(tracks) < 5:
        with pytest.raises(ParameterError, match="independent units"):
            make_split(tracks, config)
        return
    split = make_split(tracks, config)
    assert set(split.partition) == {t.track_id for t in tracks}
    _assert_leak_free(tracks, split)
    shuffled = tracks[:]
    random.Random(seed).shuffle(shuffled)
    assert make_split(shuffled, config) == split


def test_kfold_folds_cover_every_track_once_as_test() -> None:
    tracks = _tracks({"a": 23, "b": 31, "c": 10}, dup_pairs=4, group_size=2)
    times_test: dict[str, int] = defaultdict(int)
    for fold in range(10):
        split = make_split(tracks, SplitConfig(strategy="kfold", n_folds=10, fold=fold, seed=7))
        _assert_leak_free(tracks, split)
        for tid in split.tracks_in("test"):
            times_test[tid] += 1
        next_split = make_split(tracks, SplitConfig(strategy="kfold", n_folds=10, fold=(fold + 1) % 10, seed=7))
        assert split.tracks_in("val") == next_split.tracks_in("test")  # val is the next fold
        assert split.counts()["train"] > 0.7 * len(tracks)
    assert times_test == {t.track_id: 1 for t in tracks}


def test_kfold_needs_enough_tracks_per_label_and_units() -> None:
    with pytest.raises(ParameterError, match="n_folds=10"):
        make_split(_tracks({"a": 20, "b": 4}), SplitConfig(strategy="kfold"))
    with pytest.raises(ParameterError, match="independent units"):  # 4 artists cannot fill 5 folds
        make_split(_tracks({"a": 10, "b": 10}, group_size=8), SplitConfig(strategy="kfold", n_folds=5))


@pytest.mark.shared_data
def test_shared_data_filtered_lists_are_the_published_ones(shared_data: Path) -> None:
    lists = filtered_lists()
    assert {p: len(ids) for p, ids in lists.items()} == {"train": 443, "val": 197, "test": 290}
    assert not set(lists["train"]) & set(lists["val"]) and not set(lists["val"]) & set(lists["test"])
    names = {"train": "train_filtered.txt", "val": "valid_filtered.txt", "test": "test_filtered.txt"}
    for part, name in names.items():
        published = (shared_data / "gtzan-splits" / name).read_text().split()
        assert lists[part] == [line.split("/")[1].removesuffix(".wav") for line in published]


def _gtzan_tracks() -> list[Track]:
    return [
        Track(f"{g}.{k:05d}", g, Path(f"/gtzan/{g}/{g}.{k:05d}.wav"), None, f"hash-{g}-{k}") for g in GTZAN_GENRES for k in range(100)
    ]


def test_filtered_split_full_dataset() -> None:
    tracks = _gtzan_tracks()
    split = make_split(tracks, SplitConfig(strategy="filtered"))
    assert split.counts() == {"train": 443, "val": 197, "test": 290}
    assert len(split.excluded) == 70
    _assert_leak_free(tracks, split)
    assert make_split(tracks, SplitConfig(strategy="filtered", seed=9)).partition == split.partition


def test_filtered_split_partial_dataset_reports_counts() -> None:
    lists = filtered_lists()
    listed = {tid for ids in lists.values() for tid in ids}
    unlisted = next(t.track_id for t in _gtzan_tracks() if t.track_id not in listed)  # a GTZAN fault
    present = set(lists["train"][:100] + lists["val"][:30] + [unlisted])
    tracks = [t for t in _gtzan_tracks() if t.track_id in present]
    tracks.append(Track("mine/song", "mine", Path("/x/song.wav"), None, "hash-mine"))
    split = make_split(tracks, SplitConfig(strategy="filtered"))
    assert split.counts() == {"train": 100, "val": 30, "test": 0}
    assert split.excluded == tuple(sorted([unlisted, "mine/song"]))
    assert "filtered split: 100 of 443 listed train tracks present" in split.notes
    assert "filtered split: 30 of 197 listed val tracks present" in split.notes
    assert "filtered split: 0 of 290 listed test tracks present" in split.notes
    assert any(note.startswith("2 tracks are in no list") for note in split.notes)


def test_filtered_split_keeps_duplicates_listed_apart_on_one_side() -> None:
    lists = filtered_lists()
    a, b = lists["train"][0], lists["test"][0]
    tracks = [t if t.track_id != b else Track(t.track_id, t.label, t.path, None, "hash-shared") for t in _gtzan_tracks()]
    tracks = [t if t.track_id != a else Track(t.track_id, t.label, t.path, None, "hash-shared") for t in tracks]
    split = make_split(tracks, SplitConfig(strategy="filtered"))
    _assert_leak_free(tracks, split)
    assert split.partition[b] == "test" and a in split.excluded
    assert any(a in note for note in split.notes)


def test_filtered_split_on_non_gtzan_names_is_an_error() -> None:
    with pytest.raises(ParameterError, match="filtered"):
        make_split([Track("mine/a", "mine", Path("a.wav"))], SplitConfig(strategy="filtered"))


def test_leaky_segments_split_leaks_and_says_so() -> None:
    tracks = _tracks({"a": 10, "b": 10})
    split = make_split(tracks, SplitConfig(strategy="leaky-segments", seed=5))
    assert split.leaky and LEAKY_LABEL in split.notes and split.partition == {}
    segment_ids = np.repeat([t.track_id for t in tracks], 10)
    parts = segment_partitions(split, segment_ids)
    assert parts.shape == (200,) and set(parts) == {"train", "val"}
    assert (parts == "val").sum() == 40
    leaked = [tid for tid in set(segment_ids) if {"train", "val"} <= set(parts[segment_ids == tid])]
    assert len(leaked) > 5  # segments of one track on both sides: the point of this strategy
    np.testing.assert_array_equal(segment_partitions(split, segment_ids), parts)
    other = segment_partitions(make_split(tracks, SplitConfig(strategy="leaky-segments", seed=6)), segment_ids)
    assert (other != parts).any()


def test_segment_partitions_follow_tracks() -> None:
    tracks = _tracks({"a": 10, "b": 10})
    split = make_split(tracks, SplitConfig(strategy="random"))
    segment_ids = np.array(["a.00000", "a.00000", "b.00003", "unknown"])
    parts = segment_partitions(split, segment_ids)
    assert parts.tolist() == [split.partition["a.00000"]] * 2 + [split.partition["b.00003"], ""]
    assert segment_partitions(split, np.array([], dtype=str)).shape == (0,)


def test_split_config_validation() -> None:
    with pytest.raises(ParameterError, match="strategy"):
        SplitConfig(strategy="by-artist")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="sum below 1"):
        SplitConfig(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ParameterError, match="fold"):
        SplitConfig(strategy="kfold", n_folds=5, fold=5)
    with pytest.raises(ParameterError, match="empty"):
        make_split([], SplitConfig())


@pytest.mark.parametrize("strategy", ["random", "kfold"])
def test_discovered_duplicates_stay_together(make_dataset: Callable[..., Path], strategy: str) -> None:
    root = make_dataset(labels=("blues", "rock"), per_label=6, seconds=0.2)
    for k in range(3):  # pop.00054 = pop.00060 style copies, under new names
        (root / "rock" / f"rock.{10 + k:05d}.wav").write_bytes((root / "rock" / f"rock.{k:05d}.wav").read_bytes())
    with pytest.warns(DatasetWarning):
        tracks = discover(root)
    for seed in range(5):
        split = make_split(tracks, SplitConfig(strategy=strategy, seed=seed, n_folds=3, test_fraction=0.3))  # type: ignore[arg-type]
        _assert_leak_free(tracks, split)
        assert all(split.partition[f"rock.{k:05d}"] == split.partition[f"rock.{10 + k:05d}"] for k in range(3))
