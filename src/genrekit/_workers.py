"""Worker pools for per-file work, shared by ``prepare`` and ``predict``, that never outlive their command.

:func:`open_pool` starts worker processes from a fork server that has imported the feature code once
(~2 CPU s of torch import saved per worker). A worker process started that way re-imports the caller's
``__main__`` script; a plain script without an ``if __name__ == "__main__":`` guard would then run its own
work again in every worker and break the pool (``BrokenProcessPool``), so for such a script the pool is
threads instead: decoding (libsndfile), resampling (soxr) and features (torch) release the GIL.

A ``kill -9`` of ``genrekit prepare`` or a folder ``predict`` used to leave the fork server, its workers
and the resource tracker running (~600 MB for over 80 s): a worker blocked on its task queue never
learns that the parent is gone. Each worker therefore watches the process that created the pool and
exits the moment it ends, and an interrupted pool is stopped at once instead of finishing its queue.
"""

from __future__ import annotations

import ast
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from typing import Any

__all__ = ["default_jobs", "main_is_safe_to_import", "open_pool", "watch_parent", "stop_pool"]

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


def default_jobs() -> int:
    """Workers when the caller names none: the cores this process may run on (its CPU affinity, as a
    container or ``taskset`` sets it), not every core of the machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def main_is_safe_to_import() -> bool:
    """Whether a worker process may import ``__main__`` without running the caller's work again.

    True for ``python -m`` modules, interactive sessions and ``-c``, console scripts, and scripts that
    have an ``if __name__ == "__main__":`` guard; False for a plain script without one (unreadable
    source counts as unguarded: threads are always safe).
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(getattr(main, "__spec__", None), "name", None) is not None:
        return True
    try:
        tree = ast.parse(open(path, "rb").read())
    except (OSError, SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.If) and _is_main_guard(node.test) for node in tree.body)


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
    )


def _init_worker(parent: int, setup: tuple[Callable[..., None], tuple[Any, ...]] | None = None) -> None:
    import torch

    torch.set_num_threads(1)  # one worker per core: intra-op threads would only contend
    watch_parent(parent)
    if setup is not None:
        function, args = setup
        function(*args)


def open_pool(jobs: int, *, preload: Sequence[str] = (), setup: tuple[Callable[..., None], tuple[Any, ...]] | None = None) -> Executor:
    """A pool of ``jobs`` workers for per-file work: processes from a fork server, or threads (see the module's note).

    The fork server imports ``preload`` once and forks workers that have it, instead of every worker
    importing it (torch: ~2 CPU s each); forking after a bare import is safe, torch starts its thread
    pools on first use. Each worker runs one torch thread, exits when this process ends, and then calls
    ``setup`` ``(function, args)`` once (e.g. to load a model); threads share this process's state and skip it.
    """
    if not main_is_safe_to_import():
        return ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="genrekit-worker")
    context = get_context("forkserver")
    context.set_forkserver_preload(["__main__", *preload])  # __main__: the default preload
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(os.getpid(), setup))


def stop_pool(pool: Executor) -> None:
    """Cancel what is queued and terminate the workers: an interrupted command ends now, not after its queue."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public API before Python 3.14
        process.terminate()
