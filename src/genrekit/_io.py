"""Writing outputs safely: atomic files, one run per output, disk errors in words, names fit to show.

- :func:`atomic_write`: a file is replaced whole or not at all (temporary name, fsync, ``os.replace``);
  a failed write leaves no temporary file behind.
- :func:`exclusive`: an output (results file, feature store, run folder) is written by one run at a
  time. The lock is ``fcntl.flock`` on a small file that also names its holder (pid, host, start): the
  kernel drops the lock when its process dies, even by ``kill -9``, so a stale lock is simply taken.
- :func:`output_errors`: a full disk, a read-only one or a folder without write permission becomes one
  :class:`~genrekit.exceptions.OutputError` naming the path and the reason, not a traceback.
- :func:`readable` and :func:`printable`: POSIX paths are bytes, and a name that is not UTF-8
  (``café.ogg`` written in Latin-1) reaches Python as a string with surrogate escapes, which cannot be
  written as UTF-8 text; names may also hold terminal escape sequences. These give the text written to
  results files and printed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .exceptions import GenrekitError, InUseError, Mention, OutputError

__all__ = ["LOCK_NAME", "atomic_write", "exclusive", "fsync_dir", "output_errors", "printable", "readable", "write_all"]

LOCK_NAME = ".genrekit.lock"  # the lock file of a folder output (store, run folder), inside it
# Errors that say "this place cannot take the output", whatever the file: what output_errors reports in words.
_OUTPUT_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "a file of that name is in the way of a folder",  # mkdir over a file
    errno.ENOTDIR: "a file is in the way of a folder",  # a path through a file
}
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_IN_THE_WAY = {errno.EEXIST, errno.ENOTDIR}
# Control characters (C0, DEL, C1): ESC starts terminal sequences (colours, window titles, cursor moves).
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROL_BUT_NEWLINE = {c: v for c, v in _CONTROL.items() if c != 0x0A}


def readable(text: str) -> str:
    """``text`` with the bytes a file name held that are not UTF-8 written as ``\\xNN``: valid UTF-8
    text for results files, JSON and the terminal. UTF-8 names are returned unchanged.

    The file is still opened by its real name (the surrogate-escaped string); only what is written
    and shown changes. Two names differing only in such a byte and a literal ``\\xNN`` would read
    alike: a risk accepted for keeping every other name as it is.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """:func:`readable` ``text`` with control characters shown as ``\\xNN``: a file name with ``\\033[31m``
    or ``\\033]0;TITLE`` must not recolour the terminal or retitle its window, nor a newline in a name
    fake an output line. ``keep_newlines`` for whole messages of several lines."""
    return readable(text).translate(_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may take only part of them)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX; a no-op where folders cannot be opened or synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open ``path.tmp`` for writing; when the block ends, fsync it and rename it over ``path``.

    A failure (or a kill) leaves ``path`` as it was; on an exception the temporary file is removed
    (a full disk would otherwise keep it, and a kill leaves it for the owner's next run to remove).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _describe(e: OSError, path: Path) -> str:
    where = e.filename if isinstance(e.filename, str) else str(path)
    reason = _OUTPUT_ERRNOS[e.errno or 0]
    if e.errno in _FULL:
        hint = "what was written so far is kept: free some space and run the same command again to continue"
    elif e.errno in _IN_THE_WAY:
        hint = "choose another place; the file is left as it is"
    else:
        hint = "choose a writable place, or make this one writable"
    return f"{printable(where)}: cannot write ({reason}); {hint}"


@contextmanager
def output_errors(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` that says the output cannot be written (full, read-only, not permitted) into
    an :class:`OutputError` naming the file (or ``path`` when the error names none) and the reason."""
    try:
        yield
    except GenrekitError:
        raise
    except OSError as e:
        if e.errno not in _OUTPUT_ERRNOS:
            raise
        raise OutputError(e.filename if isinstance(e.filename, str) else path, e.errno or 0, _describe(e, path)) from e


def _holder_info(fd: int) -> dict[str, Any] | None:
    """What the holder of lock file ``fd`` wrote when it took it (pid, host, started), or None."""
    try:
        info = json.loads(os.pread(fd, 4096, 0))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and {"pid", "host", "started"} <= info.keys() else None


def _holder(fd: int) -> str:
    """Who holds the lock of ``fd``, in words."""
    for _ in range(20):  # a holder that has just taken the lock may not have written its name yet
        info = _holder_info(fd)
        if info is not None:
            return f"pid {info['pid']} on {info['host']}, since {info['started']}"
        time.sleep(0.01)
    return "holder unknown"


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a lock's holder removes it when done)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def _lock(lock_file: Path) -> int:
    """A descriptor of ``lock_file`` holding its exclusive lock; raises BlockingIOError when another holds it."""
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(fd, lock_file):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its holder removed the file between our open and lock: lock the new one


@contextmanager
def exclusive(target: Path, lock_file: Path, *, parameter: str) -> Iterator[None]:
    """Hold the exclusive lock of output ``target`` (the file ``lock_file``) while the block runs.

    Raises
    ------
    InUseError
        Another live process holds it; the message names it (pid, host, start time) and ``parameter``
        (a :class:`~genrekit.exceptions.Mention`), the caller's parameter that chooses another output.
    """
    try:
        fd = _lock(lock_file)
    except BlockingIOError:
        with open(lock_file, "rb") as f:
            holder = _holder(f.fileno())
        raise InUseError(
            f"{printable(str(target))}: in use by another genrekit run ({holder}); wait for it to end or choose another ", Mention(parameter)
        ) from None
    if os.fstat(fd).st_size and _holder_info(fd) is None:  # someone's own file of that name: not ours to rewrite
        os.close(fd)
        raise OutputError(lock_file, errno.EEXIST, f"{printable(str(lock_file))}: exists and is not a genrekit lock file; "
                          "it was left as it is: move it away or choose another ", Mention(parameter))
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        os.ftruncate(fd, 0)
        write_all(fd, json.dumps(info).encode())
        yield
    finally:
        try:
            if _same_file(fd, lock_file):  # gone when removed with its folder (a run refused before its first epoch)
                os.unlink(lock_file)  # while still locked: an opener that locks it next sees it gone and retries
        finally:
            os.close(fd)
