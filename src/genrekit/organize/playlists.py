"""``genrekit playlists``: one extended M3U playlist per genre from a library run's results.

Playlists are UTF-8 ``.m3u8`` files (the extension players read as UTF-8 without guessing) with
``#EXTINF`` lines, paths relative to the playlists' folder where possible so that the folder and the
music can move together. Files are listed by path, so the same results give the same bytes. Each
playlist is written to a temporary file, fsync'ed and renamed: a player never reads half of one.
Rerunning replaces the playlists genrekit wrote there (recognised by their ``#PLAYLIST`` line) and
removes those of genres no longer in the results; any other ``.m3u8`` file is left alone, and one in
the way of a genre's playlist is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import ParameterError, Mention
from .._io import atomic_write
from ._results import Results, load_results

__all__ = ["PlaylistSummary", "write_playlists"]

UNCERTAIN = "uncertain"
_MARK = "#PLAYLIST:genrekit "  # the extended-M3U title line, which also tells genrekit's playlists from others
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class PlaylistSummary:
    """What :func:`write_playlists` wrote: each playlist's path and number of entries."""

    out: Path
    playlists: dict[Path, int]
    removed: list[Path]
    n_failed: int


def write_playlists(
    results: str | os.PathLike[str] | Results,
    out: str | os.PathLike[str],
    *,
    include_uncertain: bool = False,
    absolute: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PlaylistSummary:
    """Write ``<genre>.m3u8`` for every genre with files, and ``uncertain.m3u8``, into the folder ``out``.

    Parameters
    ----------
    results : path or Results
        A ``genrekit predict`` results file or its :func:`load_results`.
    out : path
        The folder for the playlists (created if missing).
    include_uncertain : bool, default=False
        Put uncertain files in their genre's playlist instead of ``uncertain.m3u8``.
    absolute : bool, default=False
        Write absolute paths, for playlists that move without the music.
    on_progress : callable(done, total, playlist), optional

    Returns
    -------
    PlaylistSummary
        Files that failed in the library run are in no playlist (``n_failed``).

    Raises
    ------
    ParameterError
        ``out`` is a file, or a playlist's name is taken by a file genrekit did not write.
    """
    table = results if isinstance(results, Results) else load_results(results)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ParameterError(Mention("out", str(folder)), ": is a file; playlists go into a folder")
    lists: dict[str, list[int]] = {}
    n_failed = 0
    for i in range(len(table)):
        status = table.status(i)
        if status == "failed":
            n_failed += 1
        elif status == "uncertain" and not include_uncertain:
            lists.setdefault(UNCERTAIN, []).append(i)
        else:
            lists.setdefault(str(table.genres[i]), []).append(i)
    if not include_uncertain and UNCERTAIN in table.labels:
        raise ParameterError(f"{table.source}: the model has a genre called {UNCERTAIN!r}, which clashes with uncertain.m3u8; use ", Mention("include_uncertain"))
    names = {key: _file_name(key) for key in lists}
    clashes = [k for k in names if list(names.values()).count(names[k]) > 1]
    if clashes:
        raise ParameterError(f"genres {', '.join(sorted(clashes))} would share a playlist file name")
    targets = {key: folder / names[key] for key in sorted(lists)}
    for path in targets.values():
        if path.exists() and not _is_ours(path):
            raise ParameterError(f"{path}: exists and is not a genrekit playlist; choose another ", Mention("out"), " (genrekit never overwrites a file it did not write)")
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[Path, int] = {}
    entry = _Paths(folder.resolve(), absolute)
    for done, (key, path) in enumerate(targets.items()):
        with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(_playlist(table, key, lists[key], entry))
        written[path] = len(lists[key])
        if on_progress is not None:
            on_progress(done + 1, len(targets), path.name)
    removed = []
    for old in sorted(folder.glob("*.m3u8")):  # playlists of genres no longer there, from an earlier run
        if old not in written and _is_ours(old):
            old.unlink()
            removed.append(old)
    return PlaylistSummary(out=folder, playlists=written, removed=removed, n_failed=n_failed)


def _file_name(genre: str) -> str:
    """A genre as a file name: letters, digits, ``-``, ``_``, ``.`` and spaces kept, anything else ``_``."""
    name = re.sub(r"[^\w .-]", "_", genre).strip(" .") or "_"
    return f"{name}.m3u8"


def _is_ours(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = [f.readline() for _ in range(2)]
    except OSError:
        return False
    return head[0].strip() == "#EXTM3U" and head[1].startswith(_MARK)


class _Paths:
    """Entry paths, relative to the playlists' folder where possible; worked out once per music folder
    (``os.path.relpath`` per file costs seconds on 100,000 files)."""

    def __init__(self, base: Path, absolute: bool) -> None:
        self.base, self.absolute = base, absolute
        self._folders: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        folder, name = os.path.split(os.path.abspath(path))
        if folder not in self._folders:
            if self.absolute:
                self._folders[folder] = folder
            else:
                try:
                    self._folders[folder] = os.path.relpath(folder, self.base)
                except ValueError:  # another drive (Windows): no relative path exists
                    self._folders[folder] = folder
        return os.path.join(self._folders[folder], name)


def _playlist(table: Results, key: str, rows: list[int], entry: _Paths) -> str:
    title = "uncertain genre (check by ear)" if key == UNCERTAIN else key
    lines = ["#EXTM3U", f"{_MARK}{title}", f"# {len(rows)} files from {table.source.name}"]
    for i in rows:  # the results are sorted by path: the same results give the same playlist
        duration = table.durations[i]
        seconds = round(duration) if duration is not None else -1
        name = os.path.splitext(os.path.basename(table.paths[i]))[0].replace("\n", " ")
        lines.append(f"#EXTINF:{seconds},{name}")
        lines.append(entry(table.paths[i]))
    return "\n".join(lines) + "\n"
