"""Library runs: classify a whole music library into a results file that survives interruption.

``genrekit predict ~/Music --out results.parquet`` (or ``.csv``, ``.jsonl``) writes one row per file as
results come in: path, content hash, genre, confidence, the uncertain flag, every genre's probability
(``p_<genre>``), musicnn's strongest tags (``tags``, ``tag:score;...``, empty for a model without), duration and, for a file that could not be classified, the reason (``error``).
Run it again with the same output and every file whose path and bytes (the content hash of the feature
store, :func:`genrekit.datasets.discover.file_hash`) are already there is skipped; a changed file is classified
again. Files are hashed here, before decoding, whatever the engine: the engine is given each content to
classify once, and a copy of it (same bytes, another path) gets its row without being decoded again.
With the Ray engine this process therefore reads every file once to hash it (~1 ms a 30 s WAV locally).
Failed files are rows too, and are not retried: decoding them is deterministic.

How each format survives ``kill -9``:

- CSV and JSONL are appended a row at a time and each row goes to the operating system at once, so a
  killed process loses only the files in flight; they are fsync'ed every ``_SYNC_ROWS`` rows or
  ``_SYNC_SECONDS`` s against power loss. A row torn by a kill is cut off when the file is opened again,
  once its first line has shown it is a genrekit results file of this model (a header of these columns,
  or a first row with them): a file that is not genrekit's is refused and left as it was.
- Parquet cannot be appended to: its footer is written on close, and a killed writer leaves a file that
  nothing can read. Rows go instead to small Parquet files in ``<out>.parts/``, each written under a
  temporary name, fsync'ed and renamed when complete (every ``_PART_ROWS`` rows or ``_PART_SECONDS`` s;
  every ``_MAX_PARTS`` parts are merged into one), and are consolidated into ``<out>`` when the run
  ends. A kill loses the files in flight and the rows of the part being filled (at most
  ``_PART_SECONDS`` s of results). Row groups of one open file would save the consolidation, but not
  the rows of a killed run.

A run holds the lock of its results file (``<out>.lock``, see :func:`genrekit._io.exclusive`) from
start to end: a second run on the same file is refused, naming the first. A full or read-only disk
stops the run with an :class:`~genrekit.exceptions.OutputError`, every row written so far kept.

Paths are written as :func:`genrekit._io.readable` text: a name that is not UTF-8 keeps its odd bytes
as ``\\xNN``, in every format.

When a run ends, the file is rewritten once (to a temporary name, then renamed): one row per path, the
latest, sorted by path, so a resumed run and an uninterrupted one leave the same file.

Per-file work is an engine's (:mod:`genrekit.engines`: local processes or a Ray cluster); this module decides
what it computes and is the one place that writes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write, exclusive, output_errors, readable, write_all
from ..datasets.discover import file_hash
from ..exceptions import ParameterError, ResumeError
from ..tags import DEFAULT_TAGS, format_tags

if TYPE_CHECKING:
    import pyarrow as pa

    from ..classifier import GenreClassifier, Prediction, PredictionError
    from ..engines import Engine

__all__ = ["RESULT_FORMATS", "LibraryReport", "ResultsFile", "classify_library", "read_results", "result_columns", "result_row", "rows_close"]

RESULT_FORMATS = (".parquet", ".csv", ".jsonl")
_SYNC_ROWS, _SYNC_SECONDS = 64, 2.0
_PART_ROWS, _PART_SECONDS = 256, 1.0
_MAX_PARTS = 64  # then they are merged into one: a long run reads back and consolidates few files
_FLOAT_COLUMNS = ("confidence", "duration_s")
_PART_NAME = re.compile(r"part-\d{6}\.parquet(\.tmp)?")  # all a parts folder of genrekit's holds
_HEADER_BYTES = 1 << 20  # a first line longer than this is no genrekit header or row
ProgressCallback = Callable[[int, int, str], None]
Row = dict[str, Any]


def result_columns(labels: Sequence[str]) -> list[str]:
    """The columns of a results file for a model with these genres, in file order."""
    return ["path", "content_hash", "genre", "confidence", "uncertain", *(f"p_{g}" for g in labels), "tags", "duration_s", "error"]


def result_row(result: Prediction | PredictionError, content_hash: str | None, labels: Sequence[str], tags: int = DEFAULT_TAGS) -> Row:
    """One results-file row: a prediction's values (its ``tags`` strongest tags), or a failed file's reason with the other values empty."""
    row: Row = dict.fromkeys(result_columns(labels))
    row["path"], row["content_hash"] = result.path, content_hash
    error = getattr(result, "error", None)
    if error is not None:
        row["error"] = error
        return row
    prediction: Prediction = result  # type: ignore[assignment]  # not an error, so a Prediction
    row.update(genre=prediction.genre, confidence=prediction.confidence, uncertain=prediction.uncertain, duration_s=prediction.duration_s)
    row.update({f"p_{g}": prediction.probabilities[g] for g in labels})
    row["tags"] = format_tags(prediction.tags, tags) or None  # empty as the other empty values, the same in every format
    return row


def _column_kind(column: str) -> str:
    if column == "uncertain":
        return "bool"
    return "float" if column in _FLOAT_COLUMNS or column.startswith("p_") else "str"


def _schema(columns: Sequence[str]) -> pa.Schema:
    import pyarrow as pa

    kinds = {"str": pa.string(), "float": pa.float64(), "bool": pa.bool_()}
    return pa.schema([(c, kinds[_column_kind(c)]) for c in columns])


def _check_columns(path: Path, found: Sequence[str], columns: Sequence[str]) -> None:
    if list(found) != list(columns):
        raise ResumeError(
            f"{path}: its columns ({', '.join(found)}) are not this model's ({', '.join(columns)}); "
            "results of another model (other genres) or not a genrekit results file; it was left as it is: choose another --out"
        )


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline: what a killed writer leaves. Only for a file proven
    genrekit's (:func:`_check_header`): in any other file that line is someone's data."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        tail = b""
        while size and b"\n" not in tail:  # read back from the end to the last newline
            step = min(size, 1 << 16)
            size -= step
            f.seek(size)
            tail = f.read(step) + tail
        if tail and not tail.endswith(b"\n"):
            f.truncate(size + tail.rfind(b"\n") + 1)


class _TextFormat:
    """CSV or JSON Lines, appended a row at a time; read back with pyarrow (typed, and compact in memory)."""

    def __init__(self, path: Path, columns: list[str], kind: str) -> None:
        self.path, self.columns, self.kind = path, columns, kind
        self.schema = _schema(columns)
        self._fd: int | None = None

    def read(self) -> pa.Table:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return self.schema.empty_table()
        _check_header(self.path, self.kind, self.columns)  # before anything is changed
        _cut_torn_tail(self.path)
        try:
            if self.kind == "jsonl":
                import pyarrow.json as pajson

                return pajson.read_json(self.path, parse_options=pajson.ParseOptions(explicit_schema=self.schema, newlines_in_values=False))
            import pyarrow.csv as pacsv

            return pacsv.read_csv(
                self.path,
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=self.schema, null_values=[""], strings_can_be_null=True, true_values=["true"], false_values=["false"]
                ),
            )
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise ResumeError(f"{self.path}: not a readable results file ({e}); choose another --out") from e

    def _lines(self, rows: Iterable[Row]) -> Iterator[str]:
        for row in rows:
            if self.kind == "jsonl":
                yield json.dumps({c: row[c] for c in self.columns}, ensure_ascii=False) + "\n"
            else:
                yield _csv_line([_to_text(row[c]) for c in self.columns])

    def append(self, rows: list[Row]) -> None:
        """Write ``rows`` with plain writes: in the OS at once, so a killed process loses none of them.
        A failed write (a full disk) is taken back whole: no torn row is left for the next run."""
        text = "".join(self._lines(rows))
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if size == 0 and self.kind == "csv":
            text = _csv_line(self.columns) + text
        try:
            write_all(self._fd, text.encode("utf-8"))
        except OSError:
            os.ftruncate(self._fd, size)
            raise

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def rewrite(self, table: pa.Table) -> None:
        self.close()
        with atomic_write(self.path, "w", newline="", encoding="utf-8") as f:
            if self.kind == "csv":
                f.write(_csv_line(self.columns))
            for batch in table.to_batches(max_chunksize=10_000):
                f.writelines(self._lines(batch.to_pylist()))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _csv_line(values: Sequence[str]) -> str:
    buf: list[str] = []
    csv.writer(_ListWriter(buf), lineterminator="\n").writerow(values)
    return "".join(buf)


class _ListWriter:
    def __init__(self, buf: list[str]) -> None:
        self.write = buf.append


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)  # repr: floats read back exactly


class _ParquetFormat:
    """Parquet: complete part files while running, one file when the run ends (see the module docstring)."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        self.schema = _schema(columns)
        self._n_parts = 0

    def read(self) -> pa.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = [self.path] if self.path.exists() else []
        if self.parts.exists():
            strangers = [p.name for p in self.parts.iterdir()] if self.parts.is_dir() else [self.parts.name]
            if any(not _PART_NAME.fullmatch(name) for name in strangers):  # it is emptied and removed at the end
                raise ResumeError(f"{self.parts}: not the parts folder of a genrekit results file (it holds other files); choose another --out")
            for tmp in self.parts.glob("*.tmp"):  # a part a killed run did not finish
                tmp.unlink()
            parts = sorted(self.parts.glob("part-*.parquet"))
            files += parts
            self._n_parts = 1 + max((int(p.stem.removeprefix("part-")) for p in parts), default=-1)
        tables = [self.schema.empty_table()]
        for file in files:
            try:
                table = pq.read_table(file)
            except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
                raise ResumeError(f"{file}: not a readable Parquet file ({e}); choose another --out") from e
            _check_columns(file, table.schema.names, self.schema.names)
            tables.append(table.cast(self.schema))
        return pa.concat_tables(tables)

    def _write(self, table: pa.Table, path: Path) -> None:
        import pyarrow.parquet as pq

        with atomic_write(path) as f:
            pq.write_table(table, f)

    def append(self, rows: list[Row]) -> None:
        import pyarrow as pa

        self.parts.mkdir(exist_ok=True)
        self._write(pa.Table.from_pylist(rows, schema=self.schema), self.parts / f"part-{self._n_parts:06d}.parquet")
        self._n_parts += 1
        parts = sorted(self.parts.glob("part-*.parquet"))
        if len(parts) >= _MAX_PARTS:
            self._merge(parts)

    def _merge(self, parts: list[Path]) -> None:
        """Parts as one new part, then the old ones removed: a kill in between leaves rows twice, and
        the latest row of a path is the one kept."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._write(pa.concat_tables([pq.read_table(p) for p in parts]), self.parts / f"part-{self._n_parts:06d}.parquet")
        self._n_parts += 1
        for part in parts:
            part.unlink()

    def sync(self) -> None:
        """Parts are durable once written."""

    def rewrite(self, table: pa.Table) -> None:
        self._write(table, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)

    def close(self) -> None:
        """Nothing is held open."""


def _latest_per_path(table: pa.Table) -> pa.Table:
    """One row per path, the last one written, sorted by path."""
    import numpy as np
    import pyarrow as pa

    indexed = table.append_column("_row", pa.array(np.arange(len(table), dtype=np.int64)))
    last = indexed.group_by("path").aggregate([("_row", "max")])["_row_max"]
    return table.take(last).sort_by("path")


class ResultsFile:
    """A results file opened for a run: what is already there, and the one place that adds rows.

    Parameters
    ----------
    path : path
        ``.parquet``, ``.csv`` or ``.jsonl``; created if missing, continued if there.
    labels : sequence of str
        The model's genres; a file with other ``p_<genre>`` columns is refused.

    Attributes
    ----------
    table : pyarrow.Table
        The rows there when the file was opened (a torn last row cut off): typed, and compact for a
        million rows, where Python dicts would take gigabytes.

    Raises
    ------
    ParameterError
        The extension is not one of :data:`RESULT_FORMATS`.
    ResumeError
        The file exists and has other columns or cannot be read.
    """

    def __init__(self, path: str | Path, labels: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = result_columns(labels)
        suffix = _check_suffix(self.path)
        self._format: _TextFormat | _ParquetFormat = (
            _ParquetFormat(self.path, self.columns) if suffix == ".parquet" else _TextFormat(self.path, self.columns, suffix[1:])
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.table = self._format.read()
        self._pending: list[Row] = []
        self._last = time.monotonic()

    def row(self, index: int) -> Row:
        """Row ``index`` of :attr:`table` as a dict."""
        return self.table.slice(index, 1).to_pylist()[0]

    def add(self, row: Row) -> None:
        """Record one file's row: durable as the module docstring says."""
        self._pending.append(row)
        if isinstance(self._format, _TextFormat):
            self._format.append([row])
            if len(self._pending) >= _SYNC_ROWS or time.monotonic() - self._last >= _SYNC_SECONDS:
                self.flush()
        elif len(self._pending) >= _PART_ROWS or time.monotonic() - self._last >= _PART_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Make every added row durable now."""
        if isinstance(self._format, _ParquetFormat) and self._pending:
            self._format.append(self._pending)
        self._format.sync()
        self._pending = []
        self._last = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._format.close()

    def finish(self) -> pa.Table:
        """Close, and rewrite the file as one row per path (the latest), sorted by path; returns those rows."""
        self.close()
        self.table = _latest_per_path(self._format.read())
        self._format.rewrite(self.table)
        return self.table


def _check_suffix(path: Path) -> str:
    """The format of results file ``path`` (its lowercase extension); ParameterError for another one."""
    suffix = path.suffix.lower()
    if suffix not in RESULT_FORMATS:
        raise ParameterError(f"--out {path}: a results file ends in {', '.join(RESULT_FORMATS)}; got {suffix or 'no extension'!r}")
    return suffix


def read_results(path: str | Path) -> list[Row]:
    """The rows of a results file, whatever its genres (for tests, benchmarks and scripts)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    labels = [c[2:] for c in _header(path) if c.startswith("p_")]
    return _TextFormat(path, result_columns(labels), path.suffix.lower()[1:]).read().to_pylist()


def _first_line(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.readline(_HEADER_BYTES)


def _header(path: Path) -> list[str]:
    """The column names of a results file: its CSV header, or the keys of its first JSON Lines row."""
    first = _first_line(path).decode("utf-8", "replace")
    if path.suffix.lower() == ".jsonl":
        try:
            row = json.loads(first) if first.strip() else {}
        except ValueError:
            return []
        return list(row) if isinstance(row, dict) else []
    return next(csv.reader([first]), [])


def _check_header(path: Path, kind: str, columns: Sequence[str]) -> None:
    """Refuse a file that is not a genrekit results file of these columns: a whole first line (CSV header,
    or JSON Lines row) that names them. Nothing is changed in a refused file."""
    if not _first_line(path).endswith(b"\n"):
        raise ResumeError(f"{path}: not a genrekit results file (no {'header' if kind == 'csv' else 'complete first row'}); "
                          "it was left as it is: choose another --out")
    _check_columns(path, _header(path), columns)


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
    engine: str | Engine = "local",
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
    from ..classifier import find_audio_files
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
            for failure in missing:
                record(result_row(failure, None, labels))
            for path, digest, error in _hashes(paths):  # hashed ahead of the engine: a file's copies are decoded once
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
            for digest, result in runner.classify(model, todo, max_duration=max_duration):
                row = result_row(result, digest, labels)
                record(row, computed=True)
                for other in copies[digest]:
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
    _check_suffix(out)  # before anything is created beside it
    with output_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(out, out.with_name(out.name + ".lock"), option="--out"):
            yield


def _readable_row(row: Row) -> Row:
    """``row`` as written: its path, and the path in its error, as :func:`readable` text (valid UTF-8)."""
    return dict(row, path=readable(row["path"]), error=None if row.get("error") is None else readable(str(row["error"])))


def rows_close(a: Sequence[Row], b: Sequence[Row], *, atol: float = 1e-5) -> bool:
    """Whether two results tables hold the same files with the same values, floats within ``atol``."""
    if len(a) != len(b):
        return False
    for x, y in zip(sorted(a, key=lambda r: r["path"]), sorted(b, key=lambda r: r["path"])):
        if x.keys() != y.keys():
            return False
        for key, value in x.items():
            other = y[key]
            if isinstance(value, float) and isinstance(other, float):
                if not math.isclose(value, other, rel_tol=0.0, abs_tol=atol):
                    return False
            elif value != other:
                return False
    return True
