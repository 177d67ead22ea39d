"""Read a library run's results file (``.parquet``, ``.csv``, ``.jsonl``) for the organize commands.

One reader for all three formats, and read-only: a results file may belong to a run in progress or to
the user, so a torn last line (what ``kill -9`` leaves in CSV/JSONL) is dropped in memory, never cut
from the file, and a Parquet run's ``.parts/`` folder is read as it is.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import GenrekitError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Results", "ResultsFileError", "load_results", "relative", "top_folder"]

FORMATS = (".parquet", ".csv", ".jsonl")
REQUIRED = ("path", "content_hash", "genre", "confidence", "uncertain", "error")


class ResultsFileError(GenrekitError, ValueError):
    """A results file that is missing, unreadable or not a genrekit library run's."""


@dataclass(frozen=True)
class Results:
    """A results file's rows as columns, one row per path (the latest written), sorted by path.

    Attributes
    ----------
    source : Path
    labels : list of str
        The genres of the model that wrote the file (its ``p_<genre>`` columns), in file order.
    paths, content_hashes, genres, confidences, uncertain, durations, errors, error_kinds : list
        One entry per row; a failed file has ``error`` (the reason) and ``error_kind`` (one of
        :data:`genrekit.results.FAILURE_KINDS`) set and ``None`` in genre and confidence.
    probabilities : dict of str to list of float or None
        ``p_<genre>`` columns by genre.
    """

    source: Path
    labels: list[str]
    paths: list[str]
    content_hashes: list[str | None]
    genres: list[str | None]
    confidences: list[float | None]
    uncertain: list[bool | None]
    durations: list[float | None]
    errors: list[str | None]
    error_kinds: list[str | None]
    probabilities: dict[str, list[float | None]]

    def __len__(self) -> int:
        return len(self.paths)

    def status(self, i: int) -> str:
        """``"failed"``, ``"uncertain"`` or ``"confident"``: what each command sorts rows by."""
        if self.errors[i] or self.genres[i] is None:
            return "failed"
        return "uncertain" if self.uncertain[i] else "confident"


def load_results(path: str | os.PathLike[str]) -> Results:
    """The rows of a library run's results file, read without changing it.

    Raises
    ------
    ResultsFileError
        The file is missing, has another extension, cannot be parsed, or lacks a results column.
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in FORMATS:
        raise ResultsFileError(f"{source}: a results file ends in {', '.join(FORMATS)}; got {suffix or 'no extension'!r}")
    parts = source.with_name(source.name + ".parts")
    if not source.is_file() and not (suffix == ".parquet" and parts.is_dir()):
        raise ResultsFileError(f"{source}: no such results file (write one with: genrekit predict FOLDER --out {source.name})")
    try:
        table = _read_parquet(source, parts) if suffix == ".parquet" else _read_text(source, suffix[1:])
    except (OSError, ValueError, UnicodeDecodeError) as e:  # pyarrow's ArrowInvalid is a ValueError
        if isinstance(e, ResultsFileError):
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ResultsFileError(f"{source}: not a readable results file ({reason})") from e
    missing = [c for c in REQUIRED if c not in table.schema.names]
    if missing:
        raise ResultsFileError(f"{source}: not a genrekit results file (no column {', '.join(repr(c) for c in missing)})")
    table = _latest_per_path(table)
    labels = [c[2:] for c in table.schema.names if c.startswith("p_")]

    def column(name: str) -> list[Any]:
        return table[name].to_pylist() if name in table.schema.names else [None] * len(table)

    return Results(
        source=source,
        labels=labels,
        paths=column("path"),
        content_hashes=column("content_hash"),
        genres=[g or None for g in column("genre")],
        confidences=column("confidence"),
        uncertain=column("uncertain"),
        durations=column("duration_s"),
        errors=[e or None for e in column("error")],
        error_kinds=[k or None for k in column("error_kind")],
        probabilities={g: column(f"p_{g}") for g in labels},
    )


def _read_parquet(source: Path, parts: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [source] if source.is_file() else []
    if parts.is_dir():  # a run still going (or killed): its finished parts; *.tmp ones are incomplete
        files += sorted(parts.glob("part-*.parquet"))
    tables = [pq.read_table(f) for f in files]
    if not tables:
        raise ResultsFileError(f"{source}: the run has written no results yet")
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _read_text(source: Path, kind: str) -> pa.Table:
    """CSV or JSONL, typed by column name as the library run writes them."""
    import pyarrow as pa

    data = source.read_bytes()
    if data and not data.endswith(b"\n"):  # a torn last row: dropped here, the file is left as it is
        data = data[: data.rfind(b"\n") + 1]
    first = data[: data.find(b"\n")].decode("utf-8") if b"\n" in data else ""
    if kind == "jsonl":
        try:
            header = list(json.loads(first)) if first.strip() else []
        except ValueError as e:
            raise ResultsFileError(f"{source}: not a JSON Lines results file (first line: {e})") from e
    else:
        import csv

        header = next(csv.reader([first]), [])
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ResultsFileError(f"{source}: not a genrekit results file (no column {', '.join(repr(c) for c in missing)})")
    kinds = {c: pa.bool_() if c == "uncertain" else pa.float64() if c in ("confidence", "duration_s") or c.startswith("p_") else pa.string() for c in header}
    schema = pa.schema(list(kinds.items()))
    if kind == "jsonl":
        import pyarrow.json as pajson

        return pajson.read_json(io.BytesIO(data), parse_options=pajson.ParseOptions(explicit_schema=schema, newlines_in_values=False))
    import pyarrow.csv as pacsv

    return pacsv.read_csv(
        io.BytesIO(data),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types=schema, null_values=[""], strings_can_be_null=True, true_values=["true"], false_values=["false"]),
    )


def _latest_per_path(table: pa.Table) -> pa.Table:
    """One row per path, the last one written, sorted by path: what a finished run's file holds."""
    import numpy as np
    import pyarrow as pa

    indexed = table.append_column("_row", pa.array(np.arange(len(table), dtype=np.int64)))
    last = indexed.group_by("path", use_threads=False).aggregate([("_row", "max")])["_row_max"]
    return table.take(last).sort_by("path")


def relative(path: str, root: str) -> str:
    """``path`` below ``root`` (string slicing: ``os.path.relpath`` would cost seconds on 100,000 rows)."""
    if root and path.startswith(root):
        rest = path[len(root):]
        if rest[:1] in ("/", os.sep):
            return rest[1:]
        if root.endswith(("/", os.sep)):
            return rest
    return path


def top_folder(path: str, root: str) -> str:
    """The first folder of ``path`` under ``root`` (``"."`` for a file directly in ``root``)."""
    head, _, rest = relative(path, root).replace(os.sep, "/").partition("/")
    return head if rest else "."
