"""Worker processes that never outlive the command that started them.

A ``kill -9`` of ``genrekit prepare`` or a folder ``predict`` used to leave the fork server, its workers
and the resource tracker running (~600 MB for over 80 s): a worker blocked on its task queue never
learns that the parent is gone. Each worker therefore watches the process that created the pool and
exits the moment it ends, and an interrupted pool is stopped at once instead of finishing its queue.
"""

from __future__ import annotations

import os
import select
import threading
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["watch_parent", "stop_pool"]

_POLL_SECONDS = 1.0


def _wait_for_exit(pid: int) -> None:
    """Block until process ``pid`` has ended: a pidfd on Linux (no polling), else a once-a-second check."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # not Linux >= 5.3
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
            time.sleep(_POLL_SECONDS)
    select.select([fd], [], [])


def watch_parent(pid: int) -> None:
    """Exit this (worker) process as soon as process ``pid`` ends; call it from a pool's initializer.

    With the forkserver start method a worker's parent is the fork server, not the command, so the
    command's pid is passed in and watched from a daemon thread.
    """

    def watch() -> None:
        _wait_for_exit(pid)
        os._exit(1)

    threading.Thread(target=watch, name="genrekit-parent-watch", daemon=True).start()


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and terminate the workers: an interrupted command ends now, not after its queue."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public API before Python 3.14
        process.terminate()
