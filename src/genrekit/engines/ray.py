"""The Ray engine: genrekit's per-file pipeline on a Ray cluster, for libraries one machine cannot finish.

The work is the local engine's, function for function: the caller's per-file function for ``prepare``
(:meth:`RayEngine.map_files`), and :func:`genrekit.features.pipeline.featurize_file` then the classifier's soft vote
for ``predict`` (:meth:`RayEngine.classify`). Ray Data runs it the way its docs recommend for batch inference:

- decoding and features are stateless tasks (``map_batches`` with a function), a few files a task;
- the model runs in tasks too, loaded once per worker process from one object-store copy (``ray.put``),
  with as many intra-op threads as a model task has CPUs (the runner's rebuild sets them). Not in an actor pool: Ray Data passes an actor its
  constructor arguments through the object store, which Ray logs as an error for every restartable actor
  (ray-project/ray#53727), and tasks are re-run on a dead worker as actors are restarted;
- results (features, predictions) stream back to the driver, the one place that writes (the results file,
  the feature store), and that decides what is computed: files already done and byte-identical copies are
  never sent.

Files are read by path: the audio must be on storage that every node sees under the same path (a
shared or network file system); paths are made absolute before they are sent. Ray retries a task whose
worker died (Ray Data's default), so a killed worker costs time, not files.

Needs the ``ray`` extra: ``pip install 'genrekit[ray]'``, on every node.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..datasets.discover import hash_file
from ..exceptions import GenrekitError, Mention, ParameterError

if TYPE_CHECKING:
    from ..config import FeatureConfig
    from ..classifier import GenreClassifier
    from ..features.pipeline import FileResult
    from ..results import Prediction, PredictionError

__all__ = ["RayEngine", "RayUnavailableError"]

# Logical memory a decode task reserves: Ray Data measured up to 247 MiB a worker (torch imported, one
# 30 s clip streamed) and asks for 1.25x that.
# A remote argument the model tasks do not have also keeps Ray Data from fusing decoding into them (it
# fuses a map into a following one with the same arguments), which would decode on the model's CPUs.
_TASK_MEMORY = 320 * 2**20
# Files per decode task: small enough to balance a few files over many workers and to lose little work
# when a worker dies, large enough that Ray's per-task cost (~ms) stays small against ~50 ms a file.
_FILES_PER_TASK = 4
_MAX_BLOCKS = 10_000  # a million files: 100 a task
Row = dict[str, Any]


class RayUnavailableError(GenrekitError, ImportError):
    """``--engine ray`` without Ray installed."""


def _import_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    try:
        import ray
        import ray.data  # the ray[data] extra
    except ImportError as e:
        raise RayUnavailableError(Mention("engine", "ray"), f" needs Ray Data: pip install 'genrekit[ray]' ({e})") from e
    return ray


@dataclass(frozen=True)
class RayEngine:
    """Where and how to run genrekit's per-file work on Ray: the :class:`~genrekit.engines.Engine` registered as ``ray``.

    Parameters
    ----------
    address : str, optional
        ``None`` starts a Ray instance on this machine for the run (or uses the one this process already
        started); ``"auto"`` joins the cluster started here with ``ray start``; ``"HOST:PORT"`` joins that one.
    num_cpus : int, optional
        CPUs of a Ray instance started for the run (default: all); a running cluster has its own.
    model_cpus : float, default=1
        CPUs of each model task: its torch threads. As many run as the cluster has CPUs free.
    """

    address: str | None = None
    num_cpus: int | None = None
    model_cpus: float = 1.0

    def __post_init__(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ParameterError.invalid("num_cpus", ">= 1", self.num_cpus)
        if self.model_cpus <= 0:
            raise ParameterError.invalid("model_cpus", "> 0", self.model_cpus)

    @classmethod
    def from_options(cls, *, jobs: int | None = None, address: str | None = None) -> RayEngine:
        """The engine registered as ``ray``: the cluster at ``address``, or one started here with ``jobs`` CPUs
        (a running cluster has its own CPUs, so ``jobs`` does not apply to it)."""
        return cls(address=address, num_cpus=jobs if address is None else None)

    @contextmanager
    def session(self) -> Iterator[Any]:
        """Ray, connected: joined or started for this block (and shut down after it if started here).

        SIGTERM keeps the handler it had: ``ray.init`` installs one that dumps a native stack and exits 15,
        where genrekit's CLI stops the run as the local engine does ("terminated", 143). An instance started
        here is watched by :mod:`genrekit.engines._reaper`, which ends it should this process die unseen (``kill -9``).
        """
        ray = _import_ray()
        if ray.is_initialized():
            yield ray
            return
        main_thread = threading.current_thread() is threading.main_thread()
        on_sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
        try:
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus if self.address is None else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except ConnectionError as e:  # Ray's own is a 40-line traceback
            raise ParameterError(
                Mention("address", self.address), f" reaches no running Ray cluster ({str(e).splitlines()[0]}). "
                "Start one with `ray start --head`, or leave address out to run Ray on this machine."
            ) from e
        if on_sigterm is not None:
            signal.signal(signal.SIGTERM, on_sigterm)
        reaper = _start_reaper() if self.address is None else None
        try:
            yield ray
        finally:
            ray.shutdown()
            if reaper is not None:
                _stop_reaper(reaper)

    def _dataset(self, ray: Any, items: list[Row]) -> Any:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # genrekit draws its own
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes on progress bars and execution are not the user's
        n_blocks = min(max(1, math.ceil(len(items) / _FILES_PER_TASK)), _MAX_BLOCKS)
        return ray.data.from_items(items, override_num_blocks=n_blocks)

    def _cpus(self, ray: Any) -> tuple[float, float]:
        """CPUs of a decode task and of a model task: the model's ``model_cpus``, but on a one-CPU
        cluster both get half, or model tasks could hold the only CPU while no file is decoded."""
        total = float(ray.cluster_resources().get("CPU", 1.0))
        return min(1.0, total / 2), min(self.model_cpus, total / 2)

    def classify(
        self, model: GenreClassifier, items: Sequence[tuple[str, str]], *, max_duration: float | None = None
    ) -> Generator[tuple[str, Prediction | PredictionError], None, None]:
        """``(content hash, prediction or error)`` of each ``(path, content hash)`` item, as they finish:
        files decoded and featurized in decode tasks, classified in model tasks (see the module docstring)."""
        if not items:
            return
        with self.session() as ray:
            task_cpus, model_cpus = self._cpus(ray)
            ds = self._dataset(ray, [{"path": p, "content_hash": h} for p, h in items])
            ds = ds.map_batches(
                _featurize_batch, fn_kwargs={"config": model.input_config, "max_duration": max_duration}, batch_size=None, num_cpus=task_cpus, memory=_TASK_MEMORY
            )
            threads = max(1, int(model_cpus))
            # One copy in the object store, held by this driver for the run: a task re-run elsewhere reads it again.
            rebuild = ray.put(model._rebuild(threads=threads))
            ds = ds.map_batches(
                _classify_batch, fn_kwargs={"model": [rebuild]}, batch_size=_FILES_PER_TASK, num_cpus=model_cpus
            )
            for row in ds.iter_rows():
                yield str(row["content_hash"]), pickle.loads(row["result"])

    def hash_files(self, paths: Sequence[str]) -> Generator[tuple[str, str | None, str | None], None, None]:
        """Hashed in Ray tasks, spread over the cluster as decoding is: this process reads no audio."""
        submitted = _absolute(paths)
        for row in self._file_job(submitted, _hash_batch):
            yield submitted[str(row["path"])], str(row["content_hash"]) or None, str(row["reason"]) or None

    def map_files(self, work: Callable[[str], FileResult], paths: Iterable[str], *, preload: Sequence[str] = ()) -> Generator[FileResult, None, None]:
        """``work(path)`` in Ray tasks, each result naming its path as given (relative paths are sent absolute,
        and put back in messages). ``preload`` is not needed: Ray's worker processes outlive their tasks.

        Paths are collected first, then run as one Ray Data job: Ray starts only if there is a file to compute.
        """
        submitted = _absolute(paths)
        for row in self._file_job(submitted, _map_batch, fn_kwargs={"work": work}, memory=_TASK_MEMORY):
            yield _as_given(pickle.loads(row["result"]), submitted)

    def _file_job(self, submitted: dict[str, str], batch: Callable[..., dict[str, np.ndarray]], **options: Any) -> Iterator[dict[str, Any]]:
        """The rows of one Ray Data job running ``batch`` over the files of ``submitted`` (absolute path -> as
        given), a few files a task; Ray is not joined when there is no file."""
        if not submitted:
            return
        with self.session() as ray:
            task_cpus, _ = self._cpus(ray)
            ds = self._dataset(ray, [{"path": p} for p in submitted])
            yield from ds.map_batches(batch, batch_size=None, num_cpus=task_cpus, **options).iter_rows()


def _absolute(paths: Iterable[str]) -> dict[str, str]:
    """Each path made absolute (what a task on another machine can open) -> the path as given (what results name)."""
    return {str(Path(path).absolute()): path for path in paths}

def _start_reaper() -> subprocess.Popen[bytes]:
    """:mod:`genrekit.engines._reaper` watching this process, in its own session (a Ctrl-C to the terminal's group is not for it)."""
    script = Path(__file__).with_name("_reaper.py")
    return subprocess.Popen([sys.executable, "-I", str(script), str(os.getpid())], stdin=subprocess.PIPE, start_new_session=True)


def _stop_reaper(reaper: subprocess.Popen[bytes]) -> None:
    """Tell the watchdog the instance is ended (``done``, then end of file), and collect it."""
    assert reaper.stdin is not None  # started with stdin=PIPE
    try:
        reaper.stdin.write(b"done")
        reaper.stdin.close()
    except OSError:  # it is gone already: nothing to tell
        pass
    reaper.wait()


def _featurize_batch(batch: dict[str, np.ndarray], config: FeatureConfig, max_duration: float | None = None) -> dict[str, np.ndarray]:
    """Decode and featurize a few files (a Ray task): the local engine's :func:`~genrekit.features.pipeline.featurize_file`,
    pickled for the trip."""
    from ..features.pipeline import featurize_file

    items = [pickle.dumps(featurize_file(path, config, max_duration=max_duration), protocol=5) for path in map(str, batch["path"])]
    return {"content_hash": batch["content_hash"], "featurized": np.array(items, dtype=object)}


# The model of the current run in this Ray worker process, under its object-store reference: loaded by the
# process's first model task, kept for its next ones.
_MODELS: dict[str, Any] = {}


def _classify_batch(batch: dict[str, np.ndarray], model: list[Any]) -> dict[str, np.ndarray]:
    """The local engine's soft vote on a few featurized files (a Ray task).

    ``model`` is ``[ObjectRef of GenreClassifier._rebuild()]``, in a list so that Ray passes the reference,
    not its value. Results travel back pickled, with the content hash each file was sent with.
    """
    import ray

    key = model[0].hex()
    if key not in _MODELS:
        _MODELS.clear()  # another run's model
        factory, args, kwargs = ray.get(model[0])  # the model, whichever runtime runs it, on the task's threads
        _MODELS[key] = factory(*args, **kwargs)
    classifier = _MODELS[key]
    results = []
    for item in batch["featurized"]:
        result = classifier.predict_featurized(pickle.loads(item))
        results.append(pickle.dumps(result, protocol=5))
    return {"content_hash": batch["content_hash"], "result": np.array(results, dtype=object)}


def _hash_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Content hashes of a few files (a Ray task): "" for a file that could not be read, with the reason."""
    hashed = [hash_file(str(path)) for path in batch["path"]]
    return {
        "path": batch["path"],
        "content_hash": np.array([digest or "" for digest, _ in hashed], dtype=object),
        "reason": np.array([reason or "" for _, reason in hashed], dtype=object),
    }


def _map_batch(batch: dict[str, np.ndarray], work: Callable[[str], FileResult]) -> dict[str, np.ndarray]:
    """A caller's per-file ``work`` on a few files (a Ray task), pickled for the trip."""
    results = [pickle.dumps(work(str(path)), protocol=5) for path in batch["path"]]
    return {"result": np.array(results, dtype=object)}


def _as_given(result: FileResult, given: dict[str, str]) -> FileResult:
    """``result`` of an absolute path, with the path as the caller gave it (``given``: absolute -> as given),
    in its failure too."""
    absolute = result.path
    path = given[absolute]
    if path == absolute:
        return result
    return replace(
        result,
        path=path,
        failure=None if result.failure is None else replace(result.failure, path=path),
    )
