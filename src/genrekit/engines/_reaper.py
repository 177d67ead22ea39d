"""A watchdog that ends the local Ray instance a genrekit run started, should that run die without ending it.

``ray.shutdown()`` stops the instance when the driver exits in any way Python sees (an error, Ctrl-C, SIGTERM).
After ``kill -9`` of the driver (or the OOM killer) Ray's raylet and GCS go too, but its dashboard and
runtime-env agents stayed for good, orphaned. Linux has no parent-death signal for grandchildren, so the
driver starts this script (by path: standard library only, no genrekit or Ray import) in its own session,
with a pipe on its stdin. While the pipe is open it records the driver's descendants every
:data:`SCAN_S` seconds; when the driver dies the pipe closes without the word ``done``, and it ends
the recorded processes (SIGTERM, then SIGKILL after :data:`GRACE_S`). A process is identified by pid and
start time, so a reused pid is never signalled. Without ``/proc`` (not Linux) it only waits.

Usage: ``python _reaper.py DRIVER_PID``.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

SCAN_S = 0.5
GRACE_S = 2.0


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process that can be read in ``/proc``."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            table[int(entry)] = (int(fields[1]), fields[19])  # ppid; starttime (field 22 of stat(5))
    return table


def _descendants(root: int, table: dict[int, tuple[int, str]]) -> dict[int, str]:
    """pid -> start time of every process below ``root``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = {}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found[pid] = table[pid][1]
        stack.extend(children.get(pid, []))
    return found


def _signal_all(recorded: dict[int, str], signum: int) -> bool:
    """Send ``signum`` to each recorded process still running as itself; whether any was."""
    table = _processes()
    alive = [pid for pid, start in recorded.items() if pid in table and table[pid][1] == start]
    for pid in alive:
        try:
            os.kill(pid, signum)
        except OSError:
            pass
    return bool(alive)


def main(driver: int) -> None:
    scan = os.path.isdir("/proc")
    recorded: dict[int, str] = {}
    told = b""
    while True:
        if scan:
            table = _processes()
            recorded.update({pid: start for pid, start in _descendants(driver, table).items() if pid != os.getpid()})
        ready, _, _ = select.select([sys.stdin.buffer], [], [], SCAN_S)
        if ready:
            data = os.read(sys.stdin.fileno(), 64)
            if not data:
                break
            told += data
    if told.strip() == b"done" or not scan:
        return  # the driver ended the instance itself
    if _signal_all(recorded, signal.SIGTERM):
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and _signal_all(recorded, 0):
            time.sleep(0.1)
        _signal_all(recorded, signal.SIGKILL)


if __name__ == "__main__":
    main(int(sys.argv[1]))
