"""From a library run's results to an organized library: an HTML report, playlists per genre, genre tags.

Each reads a ``genrekit predict`` results file (``.parquet``, ``.csv``, ``.jsonl``) through
:func:`load_results` and never changes it.
"""

from __future__ import annotations

from ._results import Results, ResultsFileError, load_results
from .playlists import PlaylistSummary, write_playlists
from .report import ReportSummary, report
from .tagging import TagAction, TagError, TagReport, tag_files, undo_tags

__all__ = [
    "PlaylistSummary",
    "ReportSummary",
    "Results",
    "ResultsFileError",
    "TagAction",
    "TagError",
    "TagReport",
    "load_results",
    "report",
    "tag_files",
    "undo_tags",
    "write_playlists",
]
