"""``genrekit tag``: write the genre of a library run into each file's genre field, safely.

A music library is the user's, and often the only copy, so every write is built to be undone and to
leave the audio alone:

- Only the genre field changes (ID3v2 ``TCON`` for MP3, the ``GENRE`` Vorbis comment for Ogg Vorbis,
  Opus and FLAC, ``©gen`` for MP4/M4A), written with mutagen. An MP3's ID3v1 tag and everything after
  the ID3v2 tag are kept byte for byte (mutagen would rebuild ID3v1 from ID3v2), and an ID3v2.3 tag
  stays 2.3 (mutagen saves 2.4 by default, renaming other frames).
- A file whose bytes are not the ones the library run classified (its content hash, the same
  :func:`genrekit.datasets.discover.file_hash`) is skipped: the result may not be about this audio.
- The file is copied beside itself, the copy is tagged, its audio payload checked against the
  original's (:mod:`._payload`), fsync'ed, logged, and renamed over the original: a crash leaves the old
  file or the new one, never half of one, and a copy's name that a later run removes.
- Each write is a line of the undo log (JSON Lines, fsync'ed before the rename), holding the field's
  values before and after, so :func:`undo_tags` restores them exactly, including "no genre field".
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..datasets.discover import file_hash
from ..exceptions import GenrekitError, ParameterError, Mention
from .._io import fsync_dir
from ._payload import PayloadError, id3v2_size, payload_digest
from ._results import Results, load_results

__all__ = ["TagAction", "TagReport", "tag_files", "undo_tags"]

# File extension -> how its genre field is written.
KINDS = {".mp3": "id3", ".ogg": "ogg", ".oga": "ogg", ".opus": "ogg", ".flac": "flac", ".m4a": "mp4", ".mp4": "mp4", ".m4b": "mp4"}
NO_GENRE_FIELD = (".wav", ".au", ".snd", ".aif", ".aiff", ".aifc", ".caf", ".w64", ".rf64", ".raw")
UNDO_FORMAT = "genrekit-tag-undo"
_TMP_SUFFIX = ".genrekit-tag.tmp"
ProgressCallback = Callable[[int, int, str], None]
State = dict[str, Any]  # {"fields": {name: list of values, or None when absent}, "tag": whether a tag block exists}


class TagError(GenrekitError, ValueError):
    """An undo log that cannot be read."""


@dataclass(frozen=True)
class TagAction:
    """What :func:`tag_files` or :func:`undo_tags` did, or would do, to one file.

    ``action`` is "write" (the genre is, or would be, set), "same" (the file already says so),
    "keep" (another genre is there and ``overwrite`` is off), "skip" (the results say not to;
    ``skipped_because`` says why: "failed", "uncertain" or "below_min_confidence") or "error" (the file
    cannot be tagged: missing, changed, read-only, no genre field, unreadable). ``reason`` says it in
    words; ``parts`` holds those words with the parameters they name as :class:`Mention` objects, so a
    front end can say them as its own options (:meth:`render`).
    """

    path: str
    action: str
    genre: str | None
    previous: str | None
    parts: tuple[str | Mention, ...]
    skipped_because: str | None = None

    @property
    def reason(self) -> str:
        """Why, in the library's words (parameters named as in Python)."""
        return "".join(map(str, self.parts))

    def render(self, mention: Callable[[Mention], str]) -> str:
        """The reason with each :class:`Mention` said by ``mention``."""
        return "".join(mention(p) if isinstance(p, Mention) else p for p in self.parts)


@dataclass(frozen=True)
class TagReport:
    """The outcome of :func:`tag_files` or :func:`undo_tags`: one :class:`TagAction` per file."""

    actions: list[TagAction]
    dry_run: bool
    undo_log: Path | None
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_errors(self) -> int:
        return self.counts.get("error", 0)


def _shown(values: list[Any] | None) -> str | None:
    return "; ".join(str(v) for v in values) if values else None


def _existing(state: State) -> str | None:
    """The genre a player shows now, from whichever genre field is set."""
    for values in state["fields"].values():
        if values:
            return _shown(values)
    return None


# --- reading and writing the genre field, per kind ------------------------------------------------


def _load_id3(path: Path) -> Any:
    from mutagen.id3 import ID3, ID3NoHeaderError

    try:
        return ID3(path, translate=False, load_v1=False)  # as stored: no v1 frames merged, no 2.3 -> 2.4 renames
    except ID3NoHeaderError:
        return None


def _load_other(path: Path, kind: str) -> Any:
    if kind == "mp4":
        from mutagen.mp4 import MP4

        return MP4(path)
    import mutagen
    from mutagen.flac import FLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis

    audio = mutagen.File(path)
    allowed = (FLAC,) if kind == "flac" else (OggVorbis, OggOpus)
    if not isinstance(audio, allowed):
        raise PayloadError(f"not {'a FLAC' if kind == 'flac' else 'an Ogg Vorbis or Opus'} file (mutagen reads it as {type(audio).__name__ if audio else 'nothing'})")
    return audio


def read_state(path: Path, kind: str) -> State:
    """The genre field(s) of ``path`` as stored, and whether it has a tag block at all."""
    if kind == "id3":
        from mutagen.mp3 import MP3

        MP3(path)  # raises unless there are MPEG audio frames: an ID3 tag is never added to a file that is not an MP3
        tags = _load_id3(path)
        if tags is None:
            return {"fields": {"TCON": None}, "tag": False}
        if tags.version < (2, 3, 0):
            raise PayloadError("an ID3v2.2 tag: genrekit writes ID3v2.3 and 2.4 only (convert the tag with a tagger first)")
        frames = tags.getall("TCON")
        return {"fields": {"TCON": [t for f in frames for t in f.text] or None}, "tag": True}
    audio = _load_other(path, kind)
    tags = audio.tags
    if kind == "mp4":  # mutagen reads a numeric gnre atom as ©gen text, so gnre is only ever removed
        if tags is None:
            return {"fields": {"©gen": None, "gnre": None}, "tag": False}
        return {"fields": {"©gen": list(tags["©gen"]) if "©gen" in tags else None, "gnre": list(tags["gnre"]) if "gnre" in tags else None}, "tag": True}
    if tags is None:
        return {"fields": {"genre": None}, "tag": False}
    return {"fields": {"genre": list(tags["genre"]) if "genre" in tags else None}, "tag": True}


def _write_state(path: Path, kind: str, state: State) -> None:
    """Set the genre field(s) of ``path`` to ``state``; with ``state["tag"]`` false, drop a tag block left empty."""
    fields = state["fields"]
    if kind == "id3":
        _write_id3(path, fields["TCON"], keep_block=state["tag"])
        return
    audio = _load_other(path, kind)
    if audio.tags is None:
        audio.add_tags()
    tags = audio.tags
    for name, values in fields.items():
        if values:
            tags[name] = values
        elif name in tags:
            del tags[name]
    if state["tag"] or list(tags.keys()):
        audio.save()
    elif kind == "mp4":
        audio.delete(path)
    else:
        audio.delete()  # FLAC: the Vorbis comment block goes, as before the tag was written


def _write_id3(path: Path, values: list[str] | None, *, keep_block: bool) -> None:
    """Rewrite only the ID3v2 tag at the start of ``path``; the bytes after it (audio, ID3v1, APE) stay as they were."""
    from mutagen.id3 import ID3, TCON

    with open(path, "rb") as f:
        data = f.read()
    rest = data[id3v2_size(data):]
    tags = _load_id3(path) or ID3()
    version = 3 if tags.version == (2, 3, 0) else 4
    tags.delall("TCON")
    if values:
        tags.add(TCON(encoding=1 if version == 3 else 3, text=values))  # v2.3 has no UTF-8: UTF-16
    if not keep_block and not tags.keys():
        head = b""
    else:
        tags.save(path, v1=0, v2_version=version, v23_sep=None)  # v1=0: mutagen's v1 is replaced by the original tail below
        with open(path, "rb") as f:
            saved = f.read()
        head = saved[: id3v2_size(saved)]
    with open(path, "wb") as f:
        f.write(head + rest)


# --- the write itself ----------------------------------------------------------------------------


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{_TMP_SUFFIX}")


def _problem(path: Path) -> str | None:
    """Why ``path`` cannot be replaced by a tagged copy, or None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "vanished since the library run"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if not st.st_mode & 0o222:
        return "read-only file: left alone (make it writable to tag it)"
    if st.st_nlink > 1:
        return f"has {st.st_nlink} hard links: a tagged copy would split them, so it is left alone"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"its folder {path.parent} is not writable (the tagged copy is made beside the file)"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def _replace_with(path: Path, kind: str, state: State, *, expect_hash: str | None, log: _UndoLog | None, entry: dict[str, Any]) -> None:
    """Copy ``path`` beside itself, set ``state`` on the copy, check its payload, fsync, log, rename over ``path``."""
    tmp = _tmp_path(path)
    tmp.unlink(missing_ok=True)  # a copy left by a killed run: ours by its name
    before = path.stat()
    try:
        shutil.copyfile(path, tmp)
        if expect_hash is not None and file_hash(tmp) != expect_hash:
            raise _Changed("changed since the library run (its content hash differs from the results file's): run genrekit predict again")
        os.chmod(tmp, stat.S_IMODE(before.st_mode))
        if hasattr(os, "chown"):
            try:
                os.chown(tmp, before.st_uid, before.st_gid)
            except PermissionError:
                pass  # not ours to give away: the copy stays the user's
        payload = payload_digest(tmp, kind)
        _write_state(tmp, kind, state)
        if payload_digest(tmp, kind) != payload:
            raise PayloadError("the tagged copy's audio differs from the original's; nothing was changed (please report this file)")
        if read_state(tmp, kind)["fields"] != state["fields"]:
            raise PayloadError("the tagged copy does not read back as written; nothing was changed")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        now = path.stat()
        if (now.st_size, now.st_mtime_ns, now.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
            raise _Changed("changed while it was being tagged: left alone")
        if log is not None:
            log.add(entry)  # durable before the rename: a kill after it is undone from the log
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class _Changed(Exception):
    """The file is not the one expected; the message says how."""


class _UndoLog:
    """JSON Lines: a header, then one fsync'ed line per write."""

    def __init__(self, path: Path, results: Path) -> None:
        self.path = path
        if path.exists():
            raise ParameterError(Mention("undo_log", str(path)), ": exists; give a new file (an undo log is never overwritten)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "x", encoding="utf-8")
        except OSError as e:
            raise ParameterError(Mention("undo_log", str(path)), f": cannot be created ({e.strerror or e}); give another ", Mention("undo_log")) from e
        self.add({"format": UNDO_FORMAT, "version": 1, "results": str(results), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        fsync_dir(path.parent)

    def add(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def default_undo_log(results: Path) -> Path:
    """``<results>.tag-undo-<UTC time>.jsonl`` beside the results file: found with it, never overwritten."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return results.with_name(f"{results.name}.tag-undo-{stamp}.jsonl")


# --- the public functions ------------------------------------------------------------------------


def _counts(actions: list[TagAction]) -> dict[str, int]:
    return dict(Counter(a.action for a in actions))


def _plan(r: Results, i: int, *, min_confidence: float | None, include_uncertain: bool) -> tuple[str, tuple[str | Mention, ...]] | None:
    """(why skipped, the reason's parts) when the results say not to tag row ``i``, else None."""
    status = r.status(i)
    confidence = f"{r.confidences[i] or 0:.0%}"
    if status == "failed":
        return "failed", (f"failed in the library run: {r.errors[i] or 'no result'}",)
    if status == "uncertain" and not include_uncertain:
        return "uncertain", (f"uncertain ({confidence} {r.genres[i]}): ", Mention("include_uncertain", True), " to tag it")
    if min_confidence is not None and (r.confidences[i] or 0.0) < min_confidence:
        return "below_min_confidence", ("below ", Mention("min_confidence"), f" ({confidence} < {min_confidence:.0%})")
    return None


def tag_files(
    results: str | os.PathLike[str] | Results,
    *,
    write: bool = False,
    min_confidence: float | None = None,
    include_uncertain: bool = False,
    overwrite: bool = False,
    undo_log: str | os.PathLike[str] | None = None,
    on_progress: ProgressCallback | None = None,
    on_action: Callable[[TagAction], None] | None = None,
) -> TagReport:
    """Set each file's genre field to its genre in a library run's results; a dry run unless ``write``.

    Parameters
    ----------
    results : path or Results
        A ``genrekit predict`` results file or its :func:`load_results`.
    write : bool, default=False
        Change files; without it, report what would change and touch nothing.
    min_confidence : float in [0, 1], optional
        Leave files whose top genre's probability is lower.
    include_uncertain : bool, default=False
        Tag files the model was uncertain about too (they are left by default).
    overwrite : bool, default=False
        Replace a genre already in the file; by default it is kept.
    undo_log : path, optional
        The undo log to create (with ``write``); default ``<results>.tag-undo-<time>.jsonl``.
    on_progress : callable(done, total, path), optional
    on_action : callable(TagAction), optional
        Called as each file is decided, for output while the run goes on.

    Returns
    -------
    TagReport
        One :class:`TagAction` per row of the results, and the undo log written.

    Raises
    ------
    ParameterError
        ``min_confidence`` outside [0, 1], or ``undo_log`` exists.
    ResultsFileError
        The results file cannot be read.
    """
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ParameterError.invalid("min_confidence", "a number in [0, 1]", min_confidence)
    start = time.perf_counter()
    table = results if isinstance(results, Results) else load_results(results)
    log = _UndoLog(Path(undo_log) if undo_log is not None else default_undo_log(table.source), table.source) if write else None
    actions: list[TagAction] = []
    try:
        for i, path_text in enumerate(table.paths):
            action = _tag_one(table, i, write=write, min_confidence=min_confidence, include_uncertain=include_uncertain, overwrite=overwrite, log=log)
            actions.append(action)
            if on_action is not None:
                on_action(action)
            if on_progress is not None:
                on_progress(i + 1, len(table), path_text)
    finally:
        if log is not None:
            log.close()
    return TagReport(actions, dry_run=not write, undo_log=log.path if log else None, seconds=time.perf_counter() - start, counts=_counts(actions))


def _tag_one(r: Results, i: int, *, write: bool, min_confidence: float | None, include_uncertain: bool, overwrite: bool, log: _UndoLog | None) -> TagAction:
    path_text, genre = r.paths[i], r.genres[i]

    def act(action: str, *parts: str | Mention, previous: str | None = None) -> TagAction:
        return TagAction(path_text, action, genre, previous, parts)

    planned = _plan(r, i, min_confidence=min_confidence, include_uncertain=include_uncertain)
    if planned is not None:
        skipped_because, parts = planned
        return TagAction(path_text, "skip", genre, None, parts, skipped_because)
    path = Path(os.path.realpath(path_text))  # a symlink's target is tagged, and the link kept
    suffix = path.suffix.lower()
    kind = KINDS.get(suffix)
    if kind is None:
        why = "has no genre field genrekit writes" if suffix in NO_GENRE_FIELD else "is a format genrekit does not tag"
        return act("error", f"{suffix.lstrip('.').upper() or 'a file without extension'} {why} (MP3, Ogg Vorbis, Opus, FLAC and MP4/M4A are tagged)")
    problem = _problem(path)
    if problem is not None:
        return act("error", problem)
    _tmp_path(path).unlink(missing_ok=True)  # a copy a killed run left: ours by its name
    try:
        state = read_state(path, kind)
    except (PayloadError, OSError, ValueError) as e:
        return act("error", f"its tags cannot be read ({e})")
    except Exception as e:  # mutagen's errors (MutagenError and per-format ones) do not share one base we can name
        return act("error", f"its tags cannot be read ({type(e).__name__}: {e})")
    previous = _existing(state)
    target = [genre or ""]
    main = next(iter(state["fields"]))
    if state["fields"][main] == target:
        return act("same", f"already says {genre!r}", previous=previous)
    try:
        changed = file_hash(path) != r.content_hashes[i]
    except OSError as e:
        return act("error", f"cannot be read ({e.strerror or e})", previous=previous)
    if changed:
        return act("error", "changed since the library run (its content hash differs from the results file's): run genrekit predict again", previous=previous)
    if previous is not None and not overwrite:
        return act("keep", f"has genre {previous!r}: kept (", Mention("overwrite", True), f" to replace it with {genre!r})", previous=previous)
    new_fields = {name: (target if name == main else None) for name in state["fields"]}  # MP4: the numeric gnre goes, ©gen says it
    verb = "set" if write else "would set"
    reason = f"{verb} genre {genre!r} (was {previous!r})" if previous else f"{verb} genre {genre!r} (no genre before)"
    if not write:
        return act("write", reason, previous=previous)
    after = {"fields": new_fields, "tag": True}
    entry = {"path": str(path), "kind": kind, "before": state, "after": after}
    try:
        _replace_with(path, kind, after, expect_hash=r.content_hashes[i], log=log, entry=entry)
    except _Changed as e:
        return act("error", str(e), previous=previous)
    except (PayloadError, OSError) as e:
        return act("error", f"not tagged: {getattr(e, 'strerror', None) or e}", previous=previous)
    except Exception as e:  # mutagen's own errors while saving the copy; the original is untouched
        return act("error", f"not tagged: {type(e).__name__}: {e}", previous=previous)
    return act("write", reason, previous=previous)


def _read_log(path: Path) -> Iterator[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TagError(Mention("log", str(path)), ": no such undo log") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TagError(Mention("log", str(path)), f": cannot be read ({e})") from e
    lines = text.split("\n")
    if lines and lines[-1]:
        lines = lines[:-1]  # a line torn by a kill: its write never happened (the log comes first)
    entries = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError as e:
            raise TagError(Mention("log", str(path)), f": line {n} is not JSON ({e})") from e
    if not entries or entries[0].get("format") != UNDO_FORMAT:
        raise TagError(Mention("log", str(path)), ": not a genrekit tag undo log")
    yield from entries[1:]


def undo_tags(log: str | os.PathLike[str], *, on_progress: ProgressCallback | None = None, on_action: Callable[[TagAction], None] | None = None) -> TagReport:
    """Restore the genre fields that a ``tag_files(write=True)`` run changed, from its undo log.

    A file whose genre field is no longer what the run wrote (changed by hand or by another tagger since)
    is left alone and reported; one the run never got to replace (killed between log and rename) is
    already as before.

    Raises
    ------
    TagError
        The log is missing or is not a genrekit undo log.
    """
    start = time.perf_counter()
    entries = list(_read_log(Path(log)))
    for folder in sorted({Path(e["path"]).parent for e in entries}):  # copies a killed run left, logged file or not: ours by name
        for tmp in folder.glob(f".*{_TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
    actions: list[TagAction] = []
    for n, entry in enumerate(reversed(entries), 1):
        action = _undo_one(entry)
        actions.append(action)
        if on_action is not None:
            on_action(action)
        if on_progress is not None:
            on_progress(n, len(entries), action.path)
    return TagReport(actions, dry_run=False, undo_log=Path(log), seconds=time.perf_counter() - start, counts=_counts(actions))


def _undo_one(entry: dict[str, Any]) -> TagAction:
    path, kind, before, after = Path(entry["path"]), entry["kind"], entry["before"], entry["after"]
    genre = _shown(next(iter(after["fields"].values())))
    previous = _existing(before)

    def act(action: str, reason: str) -> TagAction:
        return TagAction(str(path), action, genre, previous, (reason,))

    problem = _problem(path)
    if problem is not None:
        return act("error", problem)
    _tmp_path(path).unlink(missing_ok=True)
    try:
        now = read_state(path, kind)
    except Exception as e:  # mutagen's errors, as in tag_files
        return act("error", f"its tags cannot be read ({type(e).__name__}: {e})")
    if now["fields"] == before["fields"]:
        return act("same", "already as before")
    if now["fields"] != after["fields"]:
        return act("error", f"its genre is now {_existing(now)!r}, not what genrekit wrote: left alone")
    try:
        _replace_with(path, kind, before, expect_hash=None, log=None, entry={})
    except (_Changed, PayloadError, OSError) as e:
        return act("error", f"not restored: {getattr(e, 'strerror', None) or e}")
    except Exception as e:  # mutagen's own errors while saving the copy
        return act("error", f"not restored: {type(e).__name__}: {e}")
    return act("write", f"restored genre {previous!r}" if previous else "restored: no genre field")
