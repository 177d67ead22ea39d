"""Library runs: classify a whole music library into a results file that survives interruption.

``genrekit predict ~/Music --out results.parquet`` (or ``.csv``, ``.jsonl``) writes one row per file as
results come in, in the one row layout of :mod:`genrekit.library.formats` (which also says how each format
survives ``kill -9``). Run it again with the same output and every file whose path and bytes (the content
hash of the feature store, :func:`genrekit.datasets.discover.file_hash`) are already there is skipped; a
changed file is classified again. Locally, files are hashed before decoding, and a copy of a known file
(same bytes, another path) gets its row without being decoded again; the Ray engine hashes each file in the
task that decodes it, so that the driver does not read a whole library, and decodes copies again (to the
same row). Failed files are rows too, and are not retried: decoding them is deterministic.

A run holds the lock of its results file (``<out>.lock``, see :func:`genrekit._io.exclusive`) from
start to end: a second run on the same file is refused, naming the first. A full or read-only disk
stops the run with an :class:`~genrekit.exceptions.OutputError`, every row written so far kept.

Paths are written as :func:`genrekit._io.readable` text: a name that is not UTF-8 keeps its odd bytes
as ``\\xNN``, in every format.

Per-file work is the engines' (local processes, :meth:`GenreClassifier.predict_many`, or a Ray cluster,
:mod:`genrekit.engines.ray`); this module is the one place that writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import exclusive, output_errors, readable
from ..datasets.discover import file_hash
from .formats import ResultsFile, Row, check_suffix, result_row

if TYPE_CHECKING:
    from ..classifier import GenreClassifier
    from ..engines.ray import RayEngine

__all__ = ["LibraryReport", "classify_library"]

ProgressCallback = Callable[[int, int, str], None]


@dataclass
class LibraryReport:
    """Summary of a :func:`classify_library` run."""

    out: Path
    n_files: int = 0
    n_computed: int = 0
    n_skipped: int = 0
    n_copied: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_errors(self) -> int:
        return len(self.errors)


def hash_file(path: str) -> tuple[str | None, str | None]:
    """(content hash, None), or (None, the reason) for a file that cannot be read: what a row is keyed on."""
    try:
        return file_hash(Path(path)), None
    except OSError as e:
        return None, f"{path}: cannot be read ({e.strerror or e})"


def _hashes(paths: list[str]) -> Iterator[tuple[str, str | None, str | None]]:
    """(path, content hash, error) of each file, in order; hashing runs ahead in a thread (it releases the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        for path, (digest, error) in zip(paths, pool.map(hash_file, paths)):
            yield path, digest, error


def _copy_row(row: Row, path: str) -> Row:
    """``row`` for another file with the same bytes: its path, and its path in the error message."""
    copy = dict(row, path=path)
    if copy.get("error"):
        copy["error"] = str(copy["error"]).replace(str(row["path"]), path)
    return copy


def classify_library(
    sources: Iterable[str | Path],
    out: str | Path,
    model: GenreClassifier,
    *,
    engine: RayEngine | None = None,
    jobs: int | None = None,
    max_duration: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> LibraryReport:
    """Classify every audio file under ``sources`` into the results file ``out``, continuing it if it exists.

    Parameters
    ----------
    sources : iterable of path
        Files and folders (searched recursively), as :func:`genrekit.classifier.find_audio_files` takes them.
    out : path
        ``.parquet``, ``.csv`` or ``.jsonl`` (see the module docstring).
    model : GenreClassifier
    engine : RayEngine, optional
        Run the per-file work on a Ray cluster; by default it runs here, in ``jobs`` worker processes.
    jobs : int, optional
        Local decoding processes (default: all cores); ignored with ``engine``.
    max_duration : float > 0, optional
        Files longer than this many seconds become error rows without being decoded.
    on_progress : callable(done, total, path), optional

    Returns
    -------
    LibraryReport
        Files seen, classified now, skipped (already in ``out``), copied from a file with the same
        bytes, and the failed files of this library with their reasons (rows with an error).
    """
    from ..classifier import find_audio_files

    start = time.perf_counter()
    files, missing = find_audio_files(sources)
    paths = [str(p.absolute()) for p in files]  # absolute: the same rows from any folder, and on any cluster node
    labels = model.classes_
    out = Path(out)
    with _held(out):
        results = ResultsFile(out, labels)
        report = LibraryReport(results.path, n_files=len(paths) + len(missing))
        hashes = results.table["content_hash"].to_pylist()
        done = set(zip(results.table["path"].to_pylist(), hashes))
        known = {digest: i for i, digest in enumerate(hashes) if digest}  # content hash -> its row in the file
        todo: list[tuple[str, str]] = []
        copies: dict[str, list[str]] = {}  # content hash -> other paths with those bytes in this run
        seen: set[str] = set()  # the paths of this library, as written in the file
        n_done = 0

        def record(row: Row, *, computed: bool = False) -> None:
            nonlocal n_done
            row = _readable_row(row)
            results.add(row)
            seen.add(row["path"])
            n_done += 1
            report.n_computed += computed
            if on_progress is not None:
                on_progress(n_done, report.n_files, row["path"])

        def skip(path: str) -> None:
            nonlocal n_done
            seen.add(readable(path))
            report.n_skipped += 1
            n_done += 1

        if on_progress is not None:
            on_progress(0, report.n_files, "")
        try:
            for failure in missing:
                record(result_row(failure, None, labels))
            if engine is not None:  # files are hashed where they are decoded, not all read here by the driver
                latest = dict(zip(results.table["path"].to_pylist(), hashes))
                for row in engine.classify(model, [(p, latest.get(readable(p))) for p in paths], max_duration=max_duration):
                    if row.pop("skipped", False):
                        skip(row["path"])
                    else:
                        record(row, computed=row["content_hash"] is not None)
            else:  # hashed here, ahead of the decoding processes: a file's copies are decoded once
                for path, digest, error in _hashes(paths):
                    if digest is None:
                        record(dict(dict.fromkeys(results.columns), path=path, error=error))
                    elif (readable(path), digest) in done:
                        skip(path)
                    elif digest in known:
                        record(_copy_row(results.row(known[digest]), path))
                        report.n_copied += 1
                    elif digest in copies:
                        copies[digest].append(path)
                    else:
                        copies[digest] = []
                        todo.append((path, digest))
                if on_progress is not None:
                    on_progress(n_done, report.n_files, "")
                for row in _classify_here(model, todo, jobs, max_duration):
                    record(row, computed=True)
                    for other in copies.get(row["content_hash"], ()):
                        record(_copy_row(row, other))
                        report.n_copied += 1
        finally:
            results.close()
        final = results.finish()
    report.errors = [(p, e) for p, e in zip(final["path"].to_pylist(), final["error"].to_pylist()) if e and p in seen]
    report.seconds = time.perf_counter() - start
    return report


@contextmanager
def _held(out: Path) -> Iterator[None]:
    """The run's hold on ``out``: its lock, and disk errors (full, read-only) as one-line OutputErrors."""
    check_suffix(out)  # before anything is created beside it
    with output_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(out, out.with_name(out.name + ".lock"), option="--out"):
            yield


def _readable_row(row: Row) -> Row:
    """``row`` as written: its path, and the path in its error, as :func:`readable` text (valid UTF-8)."""
    return dict(row, path=readable(row["path"]), error=None if row.get("error") is None else readable(str(row["error"])))


def _classify_here(model: GenreClassifier, todo: list[tuple[str, str]], jobs: int | None, max_duration: float | None) -> Iterator[Row]:
    """The local engine: :meth:`GenreClassifier.predict_many` (worker processes that decode and run the model)."""
    digests = dict(todo)
    for result in model.predict_many([p for p, _ in todo], jobs=jobs, max_duration=max_duration):
        yield result_row(result, digests[str(result.path)], model.classes_)
