"""Results files: the crash-safe formats of a library run (CSV, JSON Lines, Parquet) and their one row layout.

A results file holds one row per file (:func:`result_columns`): path, content hash, genre, confidence,
the uncertain flag, every genre's probability (``p_<genre>``), musicnn's strongest tags (``tags``,
``tag:score;...``, empty for a model without), duration, the decoding notes (``warnings``) and, for a file
that could not be classified, the reason (``error``, without the path: that is its own column) and the
kind of failure (``error_kind``, see :class:`genrekit.results.PredictionError`). ``genrekit predict --format
csv`` prints the same rows (:mod:`genrekit.library.writers` encodes them for both).

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

When a run ends, the file is rewritten once (to a temporary name, then renamed): one row per path, the
latest, sorted by path, so a resumed run and an uninterrupted one leave the same file.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write, write_all
from ..exceptions import ParameterError, ResumeError, Mention
from ..results import Prediction, PredictionError
from ..tags import DEFAULT_TAGS, format_tags

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["RESULT_FORMATS", "ROW_ENCODERS", "ResultsFile", "Row", "check_suffix", "encode_rows", "notes", "read_results", "result_columns", "result_row"]

RESULT_FORMATS = (".parquet", ".csv", ".jsonl")
_SYNC_ROWS, _SYNC_SECONDS = 64, 2.0
_PART_ROWS, _PART_SECONDS = 256, 1.0
_MAX_PARTS = 64  # then they are merged into one: a long run reads back and consolidates few files
_FLOAT_COLUMNS = ("confidence", "duration_s")
_PART_NAME = re.compile(r"part-\d{6}\.parquet(\.tmp)?")  # all a parts folder of genrekit's holds
_HEADER_BYTES = 1 << 20  # a first line longer than this is no genrekit header or row
Row = dict[str, Any]


def result_columns(labels: Sequence[str]) -> list[str]:
    """The columns of a results row for a model with these genres, in file order."""
    return [
        "path", "content_hash", "genre", "confidence", "uncertain", *(f"p_{g}" for g in labels), "tags", "duration_s", "warnings", "error", "error_kind",
    ]


def result_row(result: Prediction | PredictionError, content_hash: str | None, labels: Sequence[str], tags: int = DEFAULT_TAGS) -> Row:
    """One results row: a prediction's values (its ``tags`` strongest tags, its decoding notes ``; ``-separated),
    or a failed file's reason and kind with the other values empty."""
    row: Row = dict.fromkeys(result_columns(labels))
    row["path"], row["content_hash"] = result.path, content_hash
    if isinstance(result, PredictionError):
        row.update(error=result.error, error_kind=result.kind)
        return row
    row.update(genre=result.genre, confidence=result.confidence, uncertain=result.uncertain, duration_s=result.duration_s)
    row.update({f"p_{g}": result.probabilities[g] for g in labels})
    row["tags"] = format_tags(result.tags, tags) or None  # empty as the other empty values, the same in every format
    row["warnings"] = notes(result) or None
    return row


def notes(result: Prediction | PredictionError) -> str:
    """A result's decoding notes, ``; ``-separated (each is the note alone: the row names the path)."""
    return "; ".join(getattr(result, "warnings", ()))


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
            "results of another model (other genres) or not a genrekit results file; it was left as it is: choose another ", Mention("out")
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
            raise ResumeError(f"{self.path}: not a readable results file ({e}); choose another ", Mention("out")) from e

    def append(self, rows: list[Row]) -> None:
        """Write ``rows`` with plain writes: in the OS at once, so a killed process loses none of them.
        A failed write (a full disk) is taken back whole: no torn row is left for the next run."""
        text = encode_rows(self.kind, self.columns, rows)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if size == 0 and self.kind == "csv":
            text = csv_line(self.columns) + text
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
                f.write(csv_line(self.columns))
            for batch in table.to_batches(max_chunksize=10_000):
                f.write(encode_rows(self.kind, self.columns, batch.to_pylist()))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def csv_line(values: Sequence[str]) -> str:
    """One CSV record, ``\\n``-terminated, quoted as the ``csv`` module quotes."""
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


def _csv_rows(columns: Sequence[str], rows: Iterable[Row]) -> Iterator[str]:
    for row in rows:
        yield csv_line([_to_text(row[c]) for c in columns])


def _jsonl_rows(columns: Sequence[str], rows: Iterable[Row]) -> Iterator[str]:
    for row in rows:
        yield json.dumps({c: row[c] for c in columns}, ensure_ascii=False) + "\n"


# How rows become text, by format: results files append with these, and ``predict --format csv`` prints with
# them (:mod:`genrekit.library.writers`), so a row reads the same wherever it is written.
ROW_ENCODERS: dict[str, Callable[[Sequence[str], Iterable[Row]], Iterator[str]]] = {"csv": _csv_rows, "jsonl": _jsonl_rows}


def encode_rows(kind: str, columns: Sequence[str], rows: Iterable[Row], *, header: bool = False) -> str:
    """``rows`` as ``kind`` (``csv`` or ``jsonl``) text, one line each; a CSV ``header`` line first when asked."""
    text = "".join(ROW_ENCODERS[kind](columns, rows))
    return csv_line(columns) + text if header and kind == "csv" else text


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
                raise ResumeError(f"{self.parts}: not the parts folder of a genrekit results file (it holds other files); choose another ", Mention("out"))
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
                raise ResumeError(f"{file}: not a readable Parquet file ({e}); choose another ", Mention("out")) from e
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
        suffix = check_suffix(self.path)
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


def check_suffix(path: Path) -> str:
    """The format of results file ``path`` (its lowercase extension); ParameterError for another one."""
    suffix = path.suffix.lower()
    if suffix not in RESULT_FORMATS:
        raise ParameterError(Mention("out", str(path)), f": a results file ends in {', '.join(RESULT_FORMATS)}; got {suffix or 'no extension'!r}")
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
                          "it was left as it is: choose another ", Mention("out"))
    _check_columns(path, _header(path), columns)
