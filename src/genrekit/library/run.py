"""Library runs: classify a whole music library into a results file that survives interruption.

``genrekit predict ~/Music --out results.parquet`` (or ``.csv``, ``.jsonl``) writes one row per file as
results come in, in the one row layout of :mod:`genrekit.library.formats` (which also says how each format
survives ``kill -9``). Run it again with the same output and every file whose path and bytes (the content
hash of the feature store, :func:`genrekit.datasets.discover.file_hash`) are already there is skipped; a
changed file is classified again. The engine hashes every file before any is decoded (locally in a thread
of this process, on Ray in tasks, so this process reads no audio there); then this module gives it each
content to classify once, and a copy (same bytes, another path) gets its row without being decoded again.
Failed files are rows too, and are not retried: decoding them is deterministic.

A run holds the lock of its results file (``<out>.lock``, see :func:`genrekit._io.exclusive`) from
start to end: a second run on the same file is refused, naming the first. A full or read-only disk
stops the run with an :class:`~genrekit.exceptions.OutputError`, every row written so far kept.

Paths are written as :func:`genrekit._io.readable` text: a name that is not UTF-8 keeps its odd bytes
as ``\\xNN``, in every format.

Per-file work is an engine's (:mod:`genrekit.engines`: local processes or a Ray cluster); this module decides
what it computes and is the one place that writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import exclusive, output_errors, readable
from ..results import PredictionError
from ..exceptions import Mention, WorkerDiedError
from .formats import ResultsFile, Row, check_suffix, result_row

if TYPE_CHECKING:

    from ..classifier import GenreClassifier
    from ..engines import Engine

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


def _copy_row(row: Row, path: str) -> Row:
    """``row`` for another file with the same bytes: the same values under its own path."""
    return dict(row, path=path)


def classify_library(
    sources: Iterable[str | Path],
    out: str | Path,
    model: GenreClassifier,
    *,
    engine: str | Engine = "local",
    jobs: int | None = None,
    max_duration: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> LibraryReport:
    """Classify every audio file under ``sources`` into the results file ``out``, continuing it if it exists.

    Parameters
    ----------
    sources : iterable of path
        Files and folders (searched recursively), as :func:`genrekit.datasets.discover.find_audio_files` takes them.
    out : path
        ``.parquet``, ``.csv`` or ``.jsonl`` (see the module docstring).
    model : GenreClassifier
    engine : {"local", "ray"} or Engine, default="local"
        Where files are decoded and classified (:mod:`genrekit.engines`): a registered engine's name, built
        with ``jobs``, or an engine object (``RayEngine(address="auto")``), which has its own options. The
        rows are the same: what is classified, skipped or copied is decided here, whatever the engine.
    jobs : int, optional
        The engine's workers when it is named: local decoding processes, or the CPUs of a Ray instance
        started for the run (default: all cores).
    max_duration : float > 0, optional
        Files longer than this many seconds become error rows without being decoded.
    on_progress : callable(done, total, path), optional

    Returns
    -------
    LibraryReport
        Files seen, classified now, skipped (already in ``out``), copied from a file with the same
        bytes, and the failed files of this library with their reasons (rows with an error).
    """
    from ..datasets.discover import find_audio_files
    from ..engines import get_engine

    start = time.perf_counter()
    runner = get_engine(engine, jobs=jobs)
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
            with runner.session():  # one for hashing and classifying: a cluster is joined once
                for failure in missing:
                    record(result_row(failure, None, labels))
                for path, digest, reason in runner.hash_files(paths):  # all hashed before decoding: a file's copies are decoded once
                    if digest is None:
                        record(result_row(PredictionError(path, "unreadable", reason or "cannot be read"), None, labels))
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
                for digest, result in runner.classify(model, todo, max_duration=max_duration):
                    row = result_row(result, digest, labels)
                    record(row, computed=True)
                    for other in copies[digest]:
                        record(_copy_row(row, other))
                        report.n_copied += 1
        except WorkerDiedError as e:
            raise WorkerDiedError(f"{e}. Files finished so far are kept: run again with the same ", Mention("out"), " to continue") from e
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
        with exclusive(out, out.with_name(out.name + ".lock"), parameter="out"):
            yield


def _readable_row(row: Row) -> Row:
    """``row`` as written: its path, and the path in its error, as :func:`readable` text (valid UTF-8)."""
    return dict(row, path=readable(row["path"]), error=None if row.get("error") is None else readable(str(row["error"])))


