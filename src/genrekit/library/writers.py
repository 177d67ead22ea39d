"""Prediction results as text, one writer per output format, picked by name (whisper's ``get_writer``).

``genrekit predict --format json|csv`` writes with these; the table is the CLI's own (a rich display,
not a file format). Each writer takes the results and what describes them, and returns the text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

from ..exceptions import ParameterError
from .._text import words
from ..results import Prediction, PredictionError
from ..tags import DEFAULT_TAGS, format_tags

__all__ = ["WRITERS", "get_writer", "notes", "write_csv", "write_json"]

Results = Sequence[Prediction | PredictionError]
Writer = Callable[..., str]


def notes(result: Prediction | PredictionError) -> str:
    """A result's warnings without the path the row already names."""
    return "; ".join(w.removeprefix(f"{result.path}: ") for w in getattr(result, "warnings", ()))


def write_json(
    results: Results, *, model: dict[str, Any], labels: Sequence[str], top_k: int = 3, segments: bool = False, tags: int = DEFAULT_TAGS
) -> str:
    """``{"model": ..., "results": [...]}``: the documented schema of each result (:meth:`Prediction.to_dict`)."""
    return json.dumps({"model": model, "results": [r.to_dict(top_k=top_k, segments=segments, tags=tags) for r in results]}, indent=2)


def write_csv(
    results: Results, *, model: dict[str, Any], labels: Sequence[str], top_k: int = 3, segments: bool = False, tags: int = DEFAULT_TAGS
) -> str:
    """One row per track (path, genre, confidence, uncertain, top_k, error, warnings, p_<genre>..., tags), or
    with ``segments`` one row per segment; ``tags``: the ``tags`` strongest as ``tag:score;...`` (empty for a
    model without tags)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    prob_cols = [f"p_{g}" for g in labels]
    if segments:
        writer.writerow(["path", "segment_index", "start_s", "end_s", "genre", "confidence", *prob_cols, "tags"])
        for r in results:
            for i, s in enumerate(getattr(r, "segments", ())):
                writer.writerow([r.path, i, f"{s.start_s:.3f}", f"{s.end_s:.3f}", s.genre or "", f"{s.confidence:.6f}",
                                 *(f"{s.probabilities[g]:.6f}" for g in labels), format_tags(s.tags, tags)])
        return buf.getvalue()
    writer.writerow(["path", "genre", "confidence", "uncertain", "top_k", "error", "warnings", *prob_cols, "tags"])
    for r in results:
        if isinstance(r, PredictionError):
            writer.writerow([r.path, "", "", "", "", r.error, "", *([""] * len(labels)), ""])
            continue
        top = ";".join(f"{g}:{p:.4f}" for g, p in r.top(top_k))
        writer.writerow([r.path, r.genre or "", f"{r.confidence:.6f}", str(r.uncertain).lower(), top, "", notes(r),
                         *(f"{r.probabilities[g]:.6f}" for g in labels), format_tags(r.tags, tags)])
    return buf.getvalue()


WRITERS: dict[str, Writer] = {"json": write_json, "csv": write_csv}


def get_writer(fmt: str) -> Writer:
    """The writer of format ``fmt``.

    Raises
    ------
    ParameterError
        No writer of that name; the message lists the formats.
    """
    if fmt not in WRITERS:
        raise ParameterError.invalid("fmt", words(WRITERS), fmt, subject="The output format")
    return WRITERS[fmt]
