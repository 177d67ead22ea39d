"""The local engine: per-file work in worker processes on this machine, that never outlive their command.

:class:`LocalEngine` is the :class:`~genrekit.engines.Engine` of ``prepare`` and library runs by default;
:class:`BoundedPool` is the one loop that feeds its workers, shared with :meth:`GenreClassifier.predict_many`.

:func:`open_pool` starts worker processes from a fork server that has imported the feature code once, and
torch only where the work needs it (~2 CPU s saved per worker). A worker process started that way re-imports the caller's
``__main__`` script; a plain script without an ``if __name__ == "__main__":`` guard would then run its own
work again in every worker and break the pool (``BrokenProcessPool``), so for such a script the pool is
threads instead: decoding (libsndfile), resampling (soxr) and features (NumPy) release the GIL. A pool
broken by a worker's death is raised as :class:`~genrekit.exceptions.WorkerDiedError`.

A ``kill -9`` of ``genrekit prepare`` or a folder ``predict`` used to leave the fork server, its workers
and the resource tracker running (~600 MB for over 80 s): a worker blocked on its task queue never
learns that the parent is gone. Each worker therefore watches the process that created the pool and
exits the moment it ends, and an interrupted pool is stopped at once instead of finishing its queue.

:class:`BoundedPool` feeds such a pool: ``prepare`` (results in completion order) and ``predict_many``
(results in input order) both submit through it, so the window of work in flight, the lazy start, the
in-process path for one job and the stop on interruption exist once.
"""

from __future__ import annotations

import ast
import functools
import itertools
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ..datasets.discover import hash_file
from ..exceptions import ParameterError, WorkerDiedError

if TYPE_CHECKING:
    from ..classifier import GenreClassifier
    from ..features.pipeline import FileResult
    from ..results import Prediction, PredictionError

__all__ = ["BoundedPool", "LocalEngine", "default_jobs", "main_is_safe_to_import", "open_pool", "watch_parent", "stop_pool"]

_POLL_SECONDS = 1.0
HASH_AHEAD = 1024  # files hashed ahead of the caller: long enough to cover the first worker's start-up (~1 s)
IN_FLIGHT_PER_JOB = 4  # enough queued work that no worker waits for the caller, little enough that memory stays flat
# What the fork server imports once for every worker, beside the modules the caller's work needs.
_PRELOAD = ("genrekit.features.pipeline",)
P = ParamSpec("P")
R = TypeVar("R")


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


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity (``taskset``, a container's cpuset) and its cgroup v2 CPU
    quota (``docker --cpus``, Kubernetes limits), not the host's core count, which oversubscribes a
    container and makes every thread wait for a core."""
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):  # no cgroup v2 CPU controller here
        pass
    return cpus


def default_jobs() -> int:
    """Workers when the caller names none: :func:`usable_cpus`."""
    return usable_cpus()


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
    watch_parent(parent)
    if setup is not None:
        function, args = setup
        function(*args)
    one_torch_thread()


def one_torch_thread() -> int | None:
    """Run PyTorch on one thread, if this process has imported it (a preload, a model it runs); returns
    the thread count it had. One worker per core: intra-op threads would only contend. PyTorch is never
    imported for this: classifying with onnxruntime does not need it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    threads = int(torch.get_num_threads())
    torch.set_num_threads(1)
    return threads


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


class BoundedPool(Generic[R]):
    """Runs tasks in a pool of ``jobs`` workers with at most ``IN_FLIGHT_PER_JOB * jobs`` of them in flight.

    The window keeps every worker busy while the caller goes on producing work (hashing files, reading
    paths), without queueing a whole dataset's futures or results in memory. ``submit`` hands back the
    results that became ready (blocking only while the window is full), ``drain`` the rest: in submission
    order when ``ordered`` (``predict_many`` yields results in input order), else as they complete
    (``prepare`` caches each file as soon as it is done, so a slow file holds up no other).

    The pool is opened by ``start(jobs)`` on the first submission, so work that turns out to need no
    worker (every file cached) starts none. With one job, tasks run in this process as they are
    submitted. Leaving the ``with`` block on any exception, ``GeneratorExit`` of a caller's generator
    included, stops the pool at once (:func:`stop_pool`) instead of finishing its queue; otherwise it
    waits for the workers to exit.

    Parameters
    ----------
    jobs : int >= 1
        Workers; 1 runs every task in this process.
    ordered : bool
        Hand back results in submission order (True) or in completion order (False).
    start : callable(jobs) -> Executor, default=open_pool
        Opens the pool: :func:`open_pool` with the caller's ``preload`` or ``setup``, or any executor.
    """

    def __init__(self, jobs: int, *, ordered: bool, start: Callable[[int], Executor] = open_pool) -> None:
        self.jobs = max(1, jobs)
        self.ordered = ordered
        self.limit = IN_FLIGHT_PER_JOB * self.jobs
        self._start = start
        self._pool: Executor | None = None
        self._pending: deque[Future[R]] = deque()

    def __enter__(self) -> BoundedPool[R]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        if self._pool is None:
            return
        self._pending.clear()
        if kind is not None:  # interrupted (Ctrl-C, SIGTERM), failed, or the caller stopped early
            # Terminated, not waited for: a worker terminated while it held the task queue's lock would
            # block the wait forever (and the workers watch this process anyway).
            stop_pool(self._pool)
            return
        self._pool.shutdown(wait=True)

    @property
    def in_processes(self) -> bool:
        """Whether tasks run in worker processes (opening the pool if needed): a caller whose task differs
        between processes and threads (a per-process model) asks before submitting."""
        return self.jobs > 1 and isinstance(self._open(), ProcessPoolExecutor)

    def _open(self) -> Executor:
        if self._pool is None:
            self._pool = self._start(self.jobs)
        return self._pool

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> list[R]:
        """Run ``fn(*args, **kwargs)`` in a worker; the results ready once the window has room again.

        Blocks only while ``limit`` tasks are in flight. A task's exception is raised here or in :meth:`drain`.
        """
        if self.jobs == 1:
            return [fn(*args, **kwargs)]
        with _worker_deaths():
            self._pending.append(self._open().submit(fn, *args, **kwargs))
        return self._collect() if len(self._pending) >= self.limit else []

    def drain(self) -> Iterator[R]:
        """The results of every task still in flight, as each is ready."""
        while self._pending:
            yield from self._collect()

    def _collect(self) -> list[R]:
        """Wait for the next result: the oldest task's when ordered, else those of every task done by then."""
        with _worker_deaths():
            if self.ordered:
                return [self._pending.popleft().result()]
            done, rest = wait(self._pending, return_when=FIRST_COMPLETED)
            self._pending = deque(f for f in self._pending if f in rest)
            return [f.result() for f in done]


@contextmanager
def _worker_deaths() -> Iterator[None]:
    """A broken process pool (a worker killed, out of memory, or crashed by a decoder) as genrekit's
    :class:`WorkerDiedError`, which callers above the engines know without knowing the pool."""
    try:
        yield
    except BrokenProcessPool as e:
        raise WorkerDiedError("a worker process died (out of memory, or a decoder crashed on a corrupt file)") from e


@dataclass(frozen=True)
class LocalEngine:
    """Per-file work in worker processes on this machine (threads in a script without a ``__main__`` guard).

    Parameters
    ----------
    jobs : int >= 1, optional
        Workers (default: the CPUs this process may use, :func:`usable_cpus`); with 1, or a single file to
        compute, every file runs in this process and no worker is started.

    Raises
    ------
    ParameterError
        ``jobs`` is below 1.
    """

    jobs: int | None = None

    def __post_init__(self) -> None:
        if self.jobs is not None and self.jobs < 1:
            raise ParameterError.invalid("jobs", ">= 1", self.jobs, optional="None for all cores")

    @classmethod
    def from_options(cls, *, jobs: int | None = None, address: str | None = None) -> LocalEngine:
        """The engine registered as ``local``: it runs here, so it has no cluster ``address``."""
        if address is not None:
            raise ParameterError(f"The 'address' parameter is where a Ray cluster runs: use it with engine 'ray'. Got {address!r} with engine 'local'.")
        return cls(jobs)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Nothing to set up: the workers of each call start with its first file and end with its last."""
        yield

    def map_files(self, work: Callable[[str], FileResult], paths: Iterable[str], *, preload: Sequence[str] = ()) -> Generator[FileResult, None, None]:
        """``work(path)`` in a :class:`BoundedPool`, results as they complete: a slow file holds up no other.

        Workers start on the second path drawn (none for a run with a single file to compute), from a fork
        server that has imported ``preload`` (torch for musicnn embeddings, nothing more for log-mels): its
        imports overlap with the caller's work on the paths that follow (hashing them).
        """
        pending = iter(paths)
        first = list(itertools.islice(pending, 2))
        if not first:
            return
        jobs = (self.jobs or default_jobs()) if len(first) > 1 else 1
        with BoundedPool["FileResult"](jobs, ordered=False, start=functools.partial(open_pool, preload=(*_PRELOAD, *preload))) as pool:
            for path in itertools.chain(first, pending):
                yield from pool.submit(work, path)
            yield from pool.drain()

    def hash_files(self, paths: Sequence[str]) -> Generator[tuple[str, str | None, str | None], None, None]:
        """Hashed in order, in a thread of this process that runs up to :data:`HASH_AHEAD` files ahead of the
        caller (reading and hashing release the GIL, so hashing overlaps the caller's work on the files it
        has): worker processes would add their start-up and nothing else."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genrekit-hash")
        queue: deque[tuple[str, Future[tuple[str | None, str | None]]]] = deque()
        try:
            for path in paths:
                queue.append((path, pool.submit(hash_file, path)))
                if len(queue) > HASH_AHEAD:
                    done, future = queue.popleft()
                    yield (done, *future.result())
            while queue:
                done, future = queue.popleft()
                yield (done, *future.result())
        finally:
            pool.shutdown(cancel_futures=True)  # a caller that stops early does not wait for the files ahead

    def classify(
        self, model: GenreClassifier, items: Sequence[tuple[str, str]], *, max_duration: float | None = None
    ) -> Generator[tuple[str, Prediction | PredictionError], None, None]:
        """:meth:`GenreClassifier.predict_many`: workers that each decode files and run their own copy of the model."""
        results = model.predict_many([path for path, _ in items], jobs=self.jobs, max_duration=max_duration)
        for (_, digest), result in zip(items, results):
            yield digest, result
