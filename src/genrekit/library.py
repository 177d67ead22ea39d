"""Library runs: classify a whole music library into a results file that survives interruption.

``genrekit predict ~/Music --out results.parquet`` (or ``.csv``, ``.jsonl``) writes one row per file as
results come in: path, content hash, genre, confidence, the uncertain flag, every genre's probability
(``p_<genre>``), duration and, for a file that could not be classified, the reason (``error``).
Run it again with the same output and every file whose path and bytes (the content hash of the feature
store, :func:`genrekit.datasets.file_hash`) are already there is skipped; a copy of a known file (same
bytes, another path) gets its row without being decoded again; a changed file is classified again.
Failed files are rows too, and are not retried: decoding them is deterministic.

How each format survives ``kill -9``:

- CSV and JSONL are appended a row at a time and each row goes to the operating system at once, so a
  killed process loses only the files in flight; they are fsync'ed every ``_SYNC_ROWS`` rows or
  ``_SYNC_SECONDS`` s against power loss. A row torn by a kill is cut off when the file is opened again.
- Parquet cannot be appended to: its footer is written on close, and a killed writer leaves a file that
  nothing can read. Rows go instead to small Parquet files in ``<out>.parts/``, each written under a
  temporary name, fsync'ed and renamed when complete (every ``_PART_ROWS`` rows or ``_PART_SECONDS`` s;
  every ``_MAX_PARTS`` parts are merged into one), and are consolidated into ``<out>`` when the run ends. A kill loses the files in flight and the rows
  of the part being filled (at most ``_PART_SECONDS`` s of results). Row groups of one open file would
  save the consolidation, but not the rows of a killed run.

When a run ends, the file is rewritten once (to a temporary name, then renamed): one row per path, the
latest, sorted by path, so a resumed run and an uninterrupted one leave the same file.

Per-file work is the engines' (local processes, :meth:`GenreClassifier.predict_many`, or a Ray cluster,
:mod:`genrekit.ray_engine`); this module is the one place that writes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .datasets import file_hash
from .exceptions import ParameterError, ResumeError

if TYPE_CHECKING:
    from .inference import GenreClassifier, Prediction, PredictionError
    from .ray_engine import RayEngine

__all__ = ["RESULT_FORMATS", "LibraryReport", "ResultsFile", "classify_library", "read_results", "result_columns", "result_row", "rows_close"]

RESULT_FORMATS = (".parquet", ".csv", ".jsonl")
_SYNC_ROWS, _SYNC_SECONDS = 64, 2.0
_PART_ROWS, _PART_SECONDS = 256, 1.0
_MAX_PARTS = 64  # then they are merged into one: a long run reads back and consolidates few files
_FLOAT_COLUMNS = ("confidence", "duration_s")
ProgressCallback = Callable[[int, int, str], None]
Row = dict[str, Any]


def result_columns(labels: Sequence[str]) -> list[str]:
    """The columns of a results file for a model with these genres, in file order."""
    return ["path", "content_hash", "genre", "confidence", "uncertain", *(f"p_{g}" for g in labels), "duration_s", "error"]


def result_row(result: Prediction | PredictionError, content_hash: str | None, labels: Sequence[str]) -> Row:
    """One results-file row: a prediction's values, or a failed file's reason with the other values empty."""
    row: Row = dict.fromkeys(result_columns(labels))
    row["path"], row["content_hash"] = result.path, content_hash
    error = getattr(result, "error", None)
    if error is not None:
        row["error"] = error
        return row
    prediction: Prediction = result  # type: ignore[assignment]  # not an error, so a Prediction
    row.update(genre=prediction.genre, confidence=prediction.confidence, uncertain=prediction.uncertain, duration_s=prediction.duration_s)
    row.update({f"p_{g}": prediction.probabilities[g] for g in labels})
    return row


def _column_kind(column: str) -> str:
    if column == "uncertain":
        return "bool"
    return "float" if column in _FLOAT_COLUMNS or column.startswith("p_") else "str"


class _Format(Protocol):
    def read(self) -> list[Row]: ...
    def append(self, rows: list[Row]) -> None: ...
    def sync(self) -> None: ...
    def rewrite(self, rows: list[Row]) -> None: ...


def _check_columns(path: Path, found: Sequence[str], columns: Sequence[str]) -> None:
    if list(found) != list(columns):
        raise ResumeError(
            f"{path}: its columns ({', '.join(found)}) are not this model's ({', '.join(columns)}); "
            "results of another model (other genres) or not a genrekit results file: choose another --out"
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline: what a killed writer leaves."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


class _TextFormat:
    """CSV or JSON Lines, appended a row at a time."""

    def __init__(self, path: Path, columns: list[str], kind: str) -> None:
        self.path, self.columns, self.kind = path, columns, kind
        self._file: Any = None

    def read(self) -> list[Row]:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        _cut_torn_tail(self.path)
        with open(self.path, newline="", encoding="utf-8") as f:
            if self.kind == "jsonl":
                rows = [json.loads(line) for line in f if line.strip()]
                if rows:
                    _check_columns(self.path, list(rows[0]), self.columns)
                return rows
            reader = csv.reader(f)
            header = next(reader, None) or []
            _check_columns(self.path, header, self.columns)
            return [{c: _from_text(c, v) for c, v in zip(header, values)} for values in reader]

    def _lines(self, rows: Iterable[Row]) -> Iterator[str]:
        for row in rows:
            if self.kind == "jsonl":
                yield json.dumps({c: row[c] for c in self.columns}, ensure_ascii=False) + "\n"
            else:
                yield _csv_line([_to_text(row[c]) for c in self.columns])

    def append(self, rows: list[Row]) -> None:
        if self._file is None:
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = open(self.path, "a", newline="", encoding="utf-8")
            if new and self.kind == "csv":
                self._file.write(_csv_line(self.columns))
        self._file.writelines(self._lines(rows))
        self._file.flush()  # in the OS from here: a killed process loses none of it

    def sync(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())

    def rewrite(self, rows: list[Row]) -> None:
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if self.kind == "csv":
                f.write(_csv_line(self.columns))
            f.writelines(self._lines(rows))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _csv_line(values: Sequence[str]) -> str:
    buf: list[str] = []
    csv.writer(_ListWriter(buf)).writerow(values)
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


def _from_text(column: str, text: str) -> Any:
    if text == "":
        return None
    kind = _column_kind(column)
    if kind == "float":
        return float(text)
    return text == "true" if kind == "bool" else text


class _ParquetFormat:
    """Parquet: complete part files while running, one file when the run ends (see the module docstring)."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        import pyarrow as pa

        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        kinds = {"str": pa.string(), "float": pa.float64(), "bool": pa.bool_()}
        self.schema = pa.schema([(c, kinds[_column_kind(c)]) for c in columns])
        self._n_parts = 0

    def read(self) -> list[Row]:
        import pyarrow.parquet as pq

        rows: list[Row] = []
        files = [self.path] if self.path.exists() else []
        if self.parts.is_dir():
            for tmp in self.parts.glob("*.tmp"):  # a part a killed run did not finish
                tmp.unlink()
            files += sorted(self.parts.glob("part-*.parquet"))
            self._n_parts = len(files)
        for file in files:
            try:
                table = pq.read_table(file)
            except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
                raise ResumeError(f"{file}: not a readable Parquet file ({e}); choose another --out") from e
            _check_columns(file, table.schema.names, self.schema.names)
            rows += table.to_pylist()
        return rows

    def _write(self, rows: list[Row], path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            pq.write_table(pa.Table.from_pylist(rows, schema=self.schema), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def append(self, rows: list[Row]) -> None:
        self.parts.mkdir(exist_ok=True)
        self._write(rows, self.parts / f"part-{self._n_parts:06d}.parquet")
        self._n_parts += 1
        parts = sorted(self.parts.glob("part-*.parquet"))
        if len(parts) >= _MAX_PARTS:
            self._merge(parts)

    def _merge(self, parts: list[Path]) -> None:
        """Parts as one new part, then the old ones removed: a kill in between leaves rows twice, and
        the latest row of a path is the one kept."""
        import pyarrow.parquet as pq

        rows = [r for part in parts for r in pq.read_table(part).to_pylist()]
        self._write(rows, self.parts / f"part-{self._n_parts:06d}.parquet")
        self._n_parts += 1
        for part in parts:
            part.unlink()

    def sync(self) -> None:
        """Parts are durable once written."""

    def rewrite(self, rows: list[Row]) -> None:
        self._write(rows, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)

    def close(self) -> None:
        """Nothing is held open."""


class ResultsFile:
    """A results file opened for a run: the rows already there, and one place that adds rows.

    Parameters
    ----------
    path : path
        ``.parquet``, ``.csv`` or ``.jsonl``; created if missing, continued if there.
    labels : sequence of str
        The model's genres; a file with other ``p_<genre>`` columns is refused.

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
        suffix = self.path.suffix.lower()
        if suffix not in RESULT_FORMATS:
            raise ParameterError(f"--out {self.path}: a results file ends in {', '.join(RESULT_FORMATS)}; got {suffix or 'no extension'!r}")
        self._format: _TextFormat | _ParquetFormat = (
            _ParquetFormat(self.path, self.columns) if suffix == ".parquet" else _TextFormat(self.path, self.columns, suffix[1:])
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = self._format.read()
        self._pending: list[Row] = []
        self._last = time.monotonic()

    def add(self, row: Row) -> None:
        """Record one file's row: durable as the module docstring says."""
        self.rows.append(row)
        if isinstance(self._format, _TextFormat):
            self._format.append([row])
            self._pending.append(row)
            if len(self._pending) >= _SYNC_ROWS or time.monotonic() - self._last >= _SYNC_SECONDS:
                self._format.sync()
                self._pending.clear()
                self._last = time.monotonic()
            return
        self._pending.append(row)
        if len(self._pending) >= _PART_ROWS or time.monotonic() - self._last >= _PART_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Make every added row durable now."""
        if isinstance(self._format, _ParquetFormat) and self._pending:
            self._format.append(self._pending)
        self._format.sync()
        self._pending = []
        self._last = time.monotonic()

    def finish(self) -> list[Row]:
        """Rewrite the file as one row per path (the latest), sorted by path; returns those rows."""
        latest = {row["path"]: row for row in self.rows}
        rows = [latest[p] for p in sorted(latest)]
        self._pending = []
        self._format.rewrite(rows)
        self.rows = rows
        return rows

    def close(self) -> None:
        self.flush()
        self._format.close()


def read_results(path: str | Path) -> list[Row]:
    """The rows of a results file, whatever its genres (for tests, benchmarks and scripts)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    labels = [c[2:] for c in _header(path) if c.startswith("p_")]
    return _TextFormat(path, result_columns(labels), path.suffix.lower()[1:]).read()


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        first = f.readline()
    if path.suffix.lower() == ".jsonl":
        return list(json.loads(first)) if first.strip() else []
    return next(csv.reader([first]), [])


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


def _hashes(paths: list[str]) -> Iterator[tuple[str, str | None, str | None]]:
    """(path, content hash, error) of each file, in order; hashing runs ahead in a thread (it releases the GIL)."""

    def one(path: str) -> tuple[str, str | None, str | None]:
        try:
            return path, file_hash(Path(path)), None
        except OSError as e:
            return path, None, f"{path}: cannot be read ({e.strerror or e})"

    with ThreadPoolExecutor(max_workers=1) as pool:
        yield from pool.map(one, paths)


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
    on_progress: ProgressCallback | None = None,
) -> LibraryReport:
    """Classify every audio file under ``sources`` into the results file ``out``, continuing it if it exists.

    Parameters
    ----------
    sources : iterable of path
        Files and folders (searched recursively), as :func:`genrekit.inference.find_audio_files` takes them.
    out : path
        ``.parquet``, ``.csv`` or ``.jsonl`` (see the module docstring).
    model : GenreClassifier
    engine : RayEngine, optional
        Run the per-file work on a Ray cluster; by default it runs here, in ``jobs`` worker processes.
    jobs : int, optional
        Local decoding processes (default: all cores); ignored with ``engine``.
    on_progress : callable(done, total, path), optional

    Returns
    -------
    LibraryReport
        Files seen, classified now, skipped (already in ``out``), copied from a file with the same
        bytes, and the failed files of this library with their reasons (rows with an error).
    """
    from .inference import find_audio_files

    start = time.perf_counter()
    files, missing = find_audio_files(sources)
    paths = [str(p.absolute()) for p in files]  # absolute: the same rows from any folder, and on any cluster node
    labels = model.classes_
    results = ResultsFile(out, labels)
    report = LibraryReport(results.path, n_files=len(paths) + len(missing))
    done = {(row["path"], row["content_hash"]) for row in results.rows}
    known = {row["content_hash"]: row for row in results.rows if row["content_hash"]}
    todo: list[tuple[str, str]] = []
    copies: dict[str, list[str]] = {}  # content hash -> other paths with those bytes in this run
    rows: dict[str, Row] = {}  # path -> this run's row, for the report
    n_done = 0

    def record(row: Row, *, computed: bool = False) -> None:
        nonlocal n_done
        results.add(row)
        rows[row["path"]] = row
        n_done += 1
        report.n_computed += computed
        if on_progress is not None:
            on_progress(n_done, report.n_files, row["path"])

    if on_progress is not None:
        on_progress(0, report.n_files, "")
    try:
        for error in missing:
            record(result_row(error, None, labels))
        for path, digest, error in _hashes(paths):
            if digest is None:
                record(dict(dict.fromkeys(results.columns), path=path, error=error))
            elif (path, digest) in done:
                rows[path] = known[digest]
                report.n_skipped += 1
                n_done += 1
            elif digest in known:
                record(_copy_row(known[digest], path))
                report.n_copied += 1
            elif digest in copies:
                copies[digest].append(path)
            else:
                copies[digest] = []
                todo.append((path, digest))
        if on_progress is not None:
            on_progress(n_done, report.n_files, "")
        engine_rows = engine.classify(model, todo) if engine is not None else _classify_here(model, todo, jobs)
        for row in engine_rows:
            record(row, computed=True)
            for other in copies.get(row["content_hash"], ()):
                record(_copy_row(row, other))
                report.n_copied += 1
    finally:
        results.close()
    final = results.finish()
    report.errors = [(row["path"], row["error"]) for row in final if row["path"] in rows and row["error"]]
    report.seconds = time.perf_counter() - start
    return report


def _classify_here(model: GenreClassifier, todo: list[tuple[str, str]], jobs: int | None) -> Iterator[Row]:
    """The local engine: :meth:`GenreClassifier.predict_many` (decoding in worker processes, the model here)."""
    digests = dict(todo)
    for result in model.predict_many([p for p, _ in todo], jobs=jobs):
        yield result_row(result, digests[str(result.path)], model.classes_)


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
