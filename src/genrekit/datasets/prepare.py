"""Build a feature store (:mod:`genrekit.datasets.store` says its layout): decode, segment and featurize every
track of a dataset once, in parallel, cached by content, incrementally and atomically.

Per-file work (:func:`process_file`, the one per-file pipeline of :mod:`genrekit.features.pipeline`) is a pure
function of (file, config) that an engine (:mod:`genrekit.engines`) runs where it likes: in local worker
processes or on a cluster; only the calling process decides what is computed and writes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from .._io import LOCK_NAME, atomic_write, exclusive, output_errors
from ..audio import path_problem
from ..config import FeatureConfig, config_hash
from .discover import Track, discover, warn_duplicates
from ..engines import get_engine
from ..exceptions import ParameterError, StoreError, Mention, WorkerDiedError
from ..features.kinds import kind_module
from ..features.pipeline import FileResult, featurize_file
from ..results import FAILURE_KINDS, PredictionError
from .store import _ERROR_SUFFIX, _STORE_FILES, _STORE_JSON, FORMAT_VERSION, _read_json

if TYPE_CHECKING:
    from ..engines import Engine

__all__ = ["FileResult", "PrepareReport", "process_file", "prepare_store"]

ProgressCallback = Callable[[int, int, str], None]


def process_file(path: str | Path, config: FeatureConfig, *, max_duration: float | None = None) -> FileResult:
    """Decode, segment and featurize one file for the store: :func:`genrekit.features.pipeline.featurize_file` with
    float16 features. Never raises for bad audio: the reason is returned; any other exception is a bug and
    propagates, so ``prepare`` fails instead of skipping every file.

    Files longer than ``max_duration`` seconds are refused before they are decoded.
    """
    return featurize_file(path, config, max_duration=max_duration, half=True)


@dataclass
class PrepareReport:
    """Summary of a :func:`prepare_store` run."""

    store: Path
    n_tracks: int = 0
    n_computed: int = 0
    n_cached: int = 0
    n_segments: int = 0
    up_to_date: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


# The store's CSV files keep paths as the file system's bytes: a name that is not UTF-8 (Latin-1 from an
# old disk) reads back as the same path. UTF-8 names are written as before.
_PATH_TEXT: dict[str, Any] = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}


def _write_csv(path: Path, header: list[str], rows: Iterator[list[Any]] | list[list[Any]]) -> None:
    with atomic_write(path, "w", **_PATH_TEXT) as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _tracks_digest(tracks: list[Track], config_key: str) -> str:
    digest = hashlib.blake2b(config_key.encode(), digest_size=16)
    for t in tracks:
        digest.update(f"{t.track_id}\0{t.label}\0{t.path}\0{t.content_hash}\0{t.group}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _cache_file(cache_dir: Path, track: Track) -> Path:
    return cache_dir / f"{track.content_hash}.npy"


def _check_store_folder(out: Path) -> None:
    """Refuse to write (and prune caches) in a folder that holds something other than a store."""
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out}: exists and is not a folder; choose a new or empty folder for the store")
    if not out.exists() or not any(p.name != LOCK_NAME for p in out.iterdir()) or (out / _STORE_JSON).exists():
        return
    cache = out / "cache"
    if cache.is_dir() and all(re.fullmatch(r"[0-9a-f]{16}", p.name) for p in cache.iterdir()):
        return  # an interrupted store
    raise StoreError(f"{out}: folder is not empty and is not a genrekit feature store; choose a new or empty folder")


def prepare_store(
    source: str | Path | list[Track],
    out: str | Path,
    config: FeatureConfig | None = None,
    *,
    jobs: int | None = None,
    max_duration: float | None = None,
    on_progress: ProgressCallback | None = None,
    engine: str | Engine = "local",
) -> PrepareReport:
    """Build or update the feature store ``out`` from a dataset.

    Unchanged files are read from the store's cache; new or changed files are computed in parallel;
    unreadable files are listed in ``errors.csv`` and the report, and every other file is stored.
    With another feature config than the existing store's, the store is rebuilt from scratch.

    Parameters
    ----------
    source : path or list of Track
        Anything :func:`genrekit.datasets.discover.discover` accepts, or tracks already discovered.
    out : path
        Store folder: new, empty, or a store made by this function.
    config : FeatureConfig, optional
        Defaults to the original pipeline's log-mel.
    jobs : int, optional
        The engine's workers when it is named: local worker processes (threads in a script without a
        ``__main__`` guard), or the CPUs of a Ray instance started for the run; defaults to the cores this
        process may use.
    max_duration : float > 0, optional
        Skip files longer than this many seconds (from the header, before decoding); not remembered in
        the cache, so a rerun with a higher limit processes them.
    on_progress : callable(done, total, path), optional
        Called once before the first file (``path=""``) and after each file; the CLI draws a progress bar with it.
    engine : {"local", "ray"} or Engine, default="local"
        Where :func:`process_file` runs (:mod:`genrekit.engines`): a registered engine's name, built with
        ``jobs``, or an engine object (``RayEngine(address="auto")``), which has its own options. The store
        is the same: what is computed, cached and written is decided here, whatever the engine.

    The store is locked for the whole run (``out/.genrekit.lock``, see :func:`genrekit._io.exclusive`).

    Raises
    ------
    StoreError
        ``out`` exists and holds something other than a store (nothing in it is touched).
    InUseError
        Another ``prepare`` is writing ``out``.
    OutputError
        The disk is full or read-only: what was computed so far stays cached for the next run.
    ParameterError
        ``jobs`` is below 1, ``max_duration`` is not positive, or ``engine`` names no registered engine.
    DatasetError
        ``source`` cannot be read as a dataset.
    """
    start = time.perf_counter()
    config = config or FeatureConfig()
    _check_arguments(jobs, max_duration)
    runner = get_engine(engine, jobs=jobs)
    out = Path(out)
    _check_store_folder(out)
    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        with exclusive(out, out / LOCK_NAME, parameter="out"):
            return _prepare(source, out, config, runner, max_duration, on_progress, start)


def _prepare(
    source: str | Path | list[Track],
    out: Path,
    config: FeatureConfig,
    engine: Engine,
    max_duration: float | None,
    on_progress: ProgressCallback | None,
    start: float,
) -> PrepareReport:
    """:func:`prepare_store` once it holds ``out``."""
    listed = discover(source, hashes=False) if not isinstance(source, list) else source
    key = config_hash(config)
    existing = _read_json(out / _STORE_JSON)
    cache_dir = _open_cache(out, key)
    run = _PrepareRun(out, cache_dir, PrepareReport(store=out, n_tracks=len(listed)), len(listed), on_progress)
    run.advance("", 0)
    work = functools.partial(process_file, config=config, max_duration=max_duration)
    # Files are hashed by the engine where it reads them (locally a thread running ahead, on Ray tasks) while
    # it draws the ones to compute from this generator: hashing, worker start-up and features overlap.
    with engine.session():  # one for hashing and computing: a cluster is joined once
        to_compute = (path for track in _hashed(listed, engine) if (path := run.route(track)) is not None)
        with closing(engine.map_files(work, to_compute, preload=(kind_module(config.kind),))) as results:
            _hand_over(results, run.on_result)
    order = {str(t.path): i for i, t in enumerate(listed)}
    run.tracks.sort(key=lambda t: order[str(t.path)])  # the store's order is the listing's, whatever order hashes came in
    if not isinstance(source, list):
        warn_duplicates(run.tracks)  # as discover() would have
    _write_store(run, existing, config, key)
    run.report.seconds = time.perf_counter() - start
    return run.report


def _hand_over(results: Iterator[FileResult], on_result: Callable[[FileResult], None]) -> None:
    """Pass each of an engine's ``results`` to ``on_result``; a dead worker becomes a StoreError that says what to do."""
    try:
        for result in results:
            on_result(result)
    except WorkerDiedError as e:
        raise StoreError(
            f"{e}. Files finished so far are cached: run prepare again to continue; with ", Mention("jobs", 1),
            " the last file shown is the one that crashes.",
        ) from e


def _check_arguments(jobs: int | None, max_duration: float | None) -> None:
    if jobs is not None and jobs < 1:
        raise ParameterError.invalid("jobs", ">= 1", jobs, optional="None for all cores")
    if max_duration is not None and not max_duration > 0:
        raise ParameterError.invalid("max_duration", "> 0 seconds", max_duration, optional="None for no limit")


def _open_cache(out: Path, key: str) -> Path:
    """The cache folder of config ``key`` in store ``out``, created; caches of other configs and files a
    killed run left half-written are removed."""
    cache_dir = out / "cache" / key
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out / "cache").iterdir():
        if stale.name != key:
            (out / _STORE_JSON).unlink(missing_ok=True)  # the features it describes are about to go
            shutil.rmtree(stale, ignore_errors=True)
    for partial in [*cache_dir.glob("*.tmp.npy"), *cache_dir.glob("*.tmp")]:  # left by a killed run
        partial.unlink(missing_ok=True)
    return cache_dir


@dataclass
class _PrepareRun:
    """What one :func:`prepare_store` run has seen so far: shared by the loop over tracks and the
    handler of worker results, which run in the same thread."""

    out: Path
    cache_dir: Path
    report: PrepareReport
    total: int
    on_progress: ProgressCallback | None
    tracks: list[Track] = field(default_factory=list)
    errors: dict[str, PredictionError] = field(default_factory=dict)
    in_flight: dict[str, list[Track]] = field(default_factory=dict)  # content hash -> tracks waiting for it
    by_path: dict[str, Track] = field(default_factory=dict)
    done: int = 0
    submitted: int = 0

    def advance(self, path: str, n: int = 1) -> None:
        """Count ``n`` more tracks done (0: announce the run) and tell the progress callback."""
        self.done += n
        if self.on_progress is not None:
            self.on_progress(self.done, self.total, path)

    def route(self, track: Track) -> str | None:
        """Settle a hashed track from what is known (cached features or error, a copy already in flight),
        or return its path: a file the engine must compute. Copies of a file are computed once, whatever
        the engine: its result is cached for all of them."""
        self.tracks.append(track)
        path = str(track.path)
        if track.content_hash is None:
            self.errors[path] = PredictionError(path, "unreadable", path_problem(track.path) or "cannot be read")
        elif _cache_file(self.cache_dir, track).exists():
            self.report.n_cached += 1
        elif (known := _cached_error(self.cache_dir, track)) is not None:
            self.errors[path] = known
        elif track.content_hash in self.in_flight:
            self.in_flight[track.content_hash].append(track)
            return None  # counted when its copy is done: copies are computed once
        else:
            (self.out / _STORE_JSON).unlink(missing_ok=True)  # from here until the end, the store reads as incomplete
            self.in_flight[track.content_hash] = [track]
            self.by_path[path] = track
            self.submitted += 1
            return path
        self.advance(path)
        return None

    def on_result(self, result: FileResult) -> None:
        """Cache a worker's result (features, or a lasting error) for the track and its copies."""
        track = self.by_path.pop(result.path)
        same = self.in_flight.pop(str(track.content_hash))
        self.report.warnings.extend((result.path, note) for note in result.warnings)
        target = _cache_file(self.cache_dir, track)
        if result.failure is not None:
            if result.failure.lasting:
                _atomic_write_text(target.with_suffix(_ERROR_SUFFIX), json.dumps({"kind": result.failure.kind, "reason": result.failure.error}))
            self.errors.update((str(t.path), replace(result.failure, path=str(t.path))) for t in same)
        else:
            with atomic_write(target) as f:
                np.save(f, np.asarray(result.features))  # a plain .npy: no zip and CRC to pay on write and on every read
            self.report.n_computed += 1
            self.report.n_cached += len(same) - 1
        self.advance(result.path, len(same))


def _write_store(run: _PrepareRun, existing: dict[str, Any] | None, config: FeatureConfig, key: str) -> None:
    """Consolidate the cache into the store's files, unless nothing changed since the store was written."""
    out, report = run.out, run.report
    digest = _tracks_digest(run.tracks, key)
    failures = sorted(run.errors.values(), key=lambda f: f.path)
    report.errors = [(f.path, f.error) for f in failures]
    if (
        existing
        and run.submitted == 0
        and existing.get("format_version") == FORMAT_VERSION
        and existing.get("tracks_digest") == digest
        and all((out / name).is_file() for name in _STORE_FILES)
    ):
        report.up_to_date = True
        report.n_segments = existing["n_segments"]
        return
    (out / _STORE_JSON).unlink(missing_ok=True)
    stored = [t for t in run.tracks if str(t.path) not in run.errors]
    failed = [t for t in run.tracks if str(t.path) in run.errors and t.content_hash is not None]
    report.n_segments = _consolidate(out, run.cache_dir, stored, failed, config, failures, digest, key)


def _hashed(tracks: list[Track], engine: Engine) -> Iterator[Track]:
    """``tracks`` with content hashes, hashed by ``engine`` (in the order it gives them): a track that has
    one keeps it, an unreadable file keeps ``None`` (its failure is reported as the file's)."""
    waiting: dict[str, list[Track]] = {}
    for track in tracks:
        if track.content_hash is not None:
            yield track
        else:
            waiting.setdefault(str(track.path), []).append(track)
    for path, digest, _ in engine.hash_files(list(waiting)):
        for track in waiting.pop(path):
            yield replace(track, content_hash=digest) if digest is not None else track


def _cached_error(cache_dir: Path, track: Track) -> PredictionError | None:
    """Why an earlier run could not use a file with the same bytes, as this track's failure; ``None`` when
    no run failed on them (or its entry is unreadable, or of an older layout: the file is then tried again)."""
    try:
        known = json.loads(_cache_file(cache_dir, track).with_suffix(_ERROR_SUFFIX).read_text())
        kind, reason = known["kind"], known["reason"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return PredictionError(str(track.path), kind, str(reason)) if kind in FAILURE_KINDS else None


def _consolidate(
    out: Path,
    cache_dir: Path,
    tracks: list[Track],
    failed: list[Track],
    config: FeatureConfig,
    errors: list[PredictionError],
    digest: str,
    key: str,
) -> int:
    counts = []
    shape: tuple[int, ...] | None = None
    for t in tracks:
        cached = np.load(_cache_file(cache_dir, t), mmap_mode="r")  # reads the header only
        counts.append(len(cached))
        shape = shape or tuple(cached.shape[1:])  # not feature_shape(): it would import torch here
    n_segments = int(sum(counts))
    if shape is None:
        from ..features import feature_shape

        shape = feature_shape(config)
    hop, rate = config.audio.hop_samples, config.audio.sample_rate
    segment_rows: list[list[Any]] = []
    track_rows: list[list[Any]] = []
    offset = 0
    # Appended track by track with plain writes: a memory map of the new file would keep every written
    # page resident in this process, so its memory would grow with the dataset (~330 kB a 30 s clip).
    with atomic_write(out / "features.npy") as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False, "shape": (n_segments, *shape)}
        np.lib.format.write_array_header_1_0(f, header)
        for t, n in zip(tracks, counts):
            f.write(np.ascontiguousarray(np.load(_cache_file(cache_dir, t), mmap_mode="r"), dtype=np.float16).data)
            starts = np.arange(n, dtype=np.int64) * hop / rate  # as segment_audio: segments start every hop
            segment_rows.extend([t.track_id, t.label, i, f"{s:.3f}", str(t.path)] for i, s in enumerate(starts))
            track_rows.append([t.track_id, t.label, str(t.path), t.content_hash, t.group or "", n, offset])
            offset += n
    _write_csv(out / "segments.csv", ["track_id", "label", "segment_index", "start_s", "path"], segment_rows)
    _write_csv(out / "tracks.csv", ["track_id", "label", "path", "content_hash", "group", "n_segments", "first_segment"], track_rows)
    _write_csv(out / "errors.csv", ["path", "kind", "reason"], [[e.path, e.kind, e.error] for e in errors])
    meta = {
        "format_version": FORMAT_VERSION,
        "genrekit_version": __version__,
        "feature_config": config.to_dict(),
        "config_hash": key,
        "feature_shape": list(shape),
        "n_tracks": len(tracks),
        "n_segments": n_segments,
        "n_errors": len(errors),
        "labels": sorted({t.label for t in tracks}),
        "tracks_digest": digest,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_write_text(out / _STORE_JSON, json.dumps(meta, indent=2))
    keep = {_cache_file(cache_dir, t).name for t in tracks} | {_cache_file(cache_dir, t).with_suffix(_ERROR_SUFFIX).name for t in failed}
    for entry in cache_dir.iterdir():  # features of changed or removed files
        if entry.name not in keep:
            entry.unlink(missing_ok=True)
    return n_segments


