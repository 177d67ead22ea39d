"""Prediction results as text, one writer per output format, picked by name or extension (whisper's ``get_writer``).

``genrekit predict --format json|csv`` prints with these; the table is the CLI's own (a rich display, not a
file format). The CSV writer prints the rows of a results file (:func:`genrekit.library.formats.result_row`,
encoded as a library run appends them), so one row layout serves the terminal and the resumable file alike;
with ``segments``, one row per segment instead. Each writer takes the results and what describes them, and
returns the text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

from .._text import words
from ..exceptions import ParameterError
from ..results import Prediction, PredictionError
from ..tags import DEFAULT_TAGS, format_tags
from .formats import encode_rows, result_columns, result_row

__all__ = ["WRITERS", "get_writer", "write_csv", "write_json"]

Results = Sequence[Prediction | PredictionError]
Writer = Callable[..., str]


def write_json(
    results: Results, *, model: dict[str, Any], labels: Sequence[str], top_k: int = 3, segments: bool = False, tags: int = DEFAULT_TAGS
) -> str:
    """``{"model": ..., "results": [...]}``: the documented schema of each result (:meth:`Prediction.to_dict`,
    :meth:`PredictionError.to_dict`)."""
    return json.dumps({"model": model, "results": [r.to_dict(top_k=top_k, segments=segments, tags=tags) for r in results]}, indent=2)


def write_csv(
    results: Results, *, model: dict[str, Any], labels: Sequence[str], top_k: int = 3, segments: bool = False, tags: int = DEFAULT_TAGS
) -> str:
    """The rows of a results file (:func:`~genrekit.library.formats.result_columns`; ``content_hash`` empty, as
    nothing here hashes files), or with ``segments`` one row per segment (path, segment_index, start_s, end_s,
    genre, confidence, p_<genre>..., tags); ``tags``: the ``tags`` strongest as ``tag:score;...`` (empty for a
    model without tags). ``top_k`` is the JSON's: every probability is a column here."""
    if segments:
        return _segment_csv(results, labels, tags)
    return encode_rows("csv", result_columns(labels), (result_row(r, None, labels, tags) for r in results), header=True)


def _segment_csv(results: Results, labels: Sequence[str], tags: int) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "segment_index", "start_s", "end_s", "genre", "confidence", *(f"p_{g}" for g in labels), "tags"])
    for r in results:
        for i, s in enumerate(getattr(r, "segments", ())):
            writer.writerow([r.path, i, f"{s.start_s:.3f}", f"{s.end_s:.3f}", s.genre or "", f"{s.confidence:.6f}",
                             *(f"{s.probabilities[g]:.6f}" for g in labels), format_tags(s.tags, tags)])
    return buf.getvalue()


WRITERS: dict[str, Writer] = {"json": write_json, "csv": write_csv}


def get_writer(fmt: str) -> Writer:
    """The writer of format ``fmt``: a name (``"csv"``) or a file's extension (``".csv"``, any case).

    Raises
    ------
    ParameterError
        No writer of that name; the message lists the formats.
    """
    name = fmt.lower().removeprefix(".")
    if name not in WRITERS:
        raise ParameterError.invalid("fmt", words(WRITERS), fmt, subject="The output format")
    return WRITERS[name]
