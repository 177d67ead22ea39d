"""Where per-file work runs: an :class:`Engine`, chosen by name from a registry or passed as an object.

``prepare`` (:func:`genrekit.datasets.prepare.prepare_store`) and library runs
(:func:`genrekit.library.run.classify_library`) hold an engine and ask it for three things only: run a
per-file function over paths (:meth:`Engine.map_files`), hash files (:meth:`Engine.hash_files`), and classify
files with a model (:meth:`Engine.classify`). Everything else stays with the caller, the same for every
engine: the cache or results file, which files are already done, byte-identical copies (computed once, their
result copied), and every write. An
engine imports the per-file functions (:mod:`genrekit.features.pipeline`, the classifier) and nothing of
its callers, so the arrows point one way.

Engines shipped: ``local`` (:mod:`.local`, worker processes on this machine) and ``ray`` (:mod:`.ray`, a Ray
cluster). A third is one module with a class that has these methods and :meth:`Engine.session`, plus a
:func:`register_engine` call.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .._text import words
from ..exceptions import ParameterError

if TYPE_CHECKING:
    from ..classifier import GenreClassifier
    from ..features.pipeline import FileResult
    from ..results import Prediction, PredictionError

__all__ = ["Engine", "EngineFactory", "available_engines", "get_engine", "register_engine"]


@runtime_checkable
class Engine(Protocol):
    """What ``prepare`` and library runs need of the place their per-file work runs.

    Per-file work is a pure function of (file, config), and results come back to the caller, which is the
    only one that writes; so an engine may run it anywhere that sees the files under the same paths.
    No method needs :meth:`session` to be entered: each opens one for its own work when it has some (a call
    with nothing to do starts nothing), and one held by the caller is used instead.
    """

    def session(self) -> AbstractContextManager[object]:
        """The engine's resources (a cluster connection) set up for a block and torn down after it."""
        ...

    def map_files(self, work: Callable[[str], FileResult], paths: Iterable[str], *, preload: Sequence[str] = ()) -> Generator[FileResult, None, None]:
        """``work(path)`` for each path, handed back as each finishes (in any order), each naming its path as given.

        A generator: a caller that stops early (an error, Ctrl-C) closes it, and the engine stops its work then.

        ``paths`` may be lazy: the caller decides what to compute as it goes (hashing, the cache), and a
        result may come back before the last path is drawn. ``work`` must be picklable (a module-level
        function, or a :func:`functools.partial` of one) for an engine that runs it in other processes.
        ``preload`` names the modules ``work`` needs (a feature kind's): an engine whose workers start from
        one process may import them there once (the local engine's fork server); others may ignore it.
        """
        ...

    def hash_files(self, paths: Sequence[str]) -> Generator[tuple[str, str | None, str | None], None, None]:
        """``(path, content hash, None)`` or ``(path, None, why)`` of each file
        (:func:`genrekit.datasets.discover.hash_file`), in any order, read where the engine reads files.

        A library run hashes every file before decoding any, to take out files done before and copies of
        files it classifies; ``prepare`` hashes to find cached features and copies. On a cluster the
        hashing is spread like the decoding, so the calling process reads no audio.
        """
        ...

    def classify(
        self, model: GenreClassifier, items: Sequence[tuple[str, str]], *, max_duration: float | None = None
    ) -> Generator[tuple[str, Prediction | PredictionError], None, None]:
        """``(content hash, prediction or error)`` of each ``(path, content hash)`` item, as each finishes.

        Items are distinct files to decode: copies and files already done were taken out by the caller.
        Files longer than ``max_duration`` seconds come back as errors without being decoded.
        """
        ...


class EngineFactory(Protocol):
    """How a registered engine is built from the options a command has (``--jobs``, ``--address``)."""

    def __call__(self, *, jobs: int | None = None, address: str | None = None) -> Engine:
        """``jobs``: workers or CPUs on this machine (None: all it may use); ``address``: where a cluster
        runs (None: on this machine). An engine that cannot honour one raises :class:`ParameterError`."""
        ...


def _local(*, jobs: int | None = None, address: str | None = None) -> Engine:
    from .local import LocalEngine

    return LocalEngine.from_options(jobs=jobs, address=address)


def _ray(*, jobs: int | None = None, address: str | None = None) -> Engine:
    from .ray import RayEngine

    return RayEngine.from_options(jobs=jobs, address=address)


# Factories, not classes: naming an engine imports nothing (Ray's module is only loaded for ``ray``).
_ENGINES: dict[str, EngineFactory] = {"local": _local, "ray": _ray}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make ``engine=name`` (and ``--engine name``) build an engine with ``factory``.

    Raises
    ------
    ParameterError
        ``name`` is registered already.
    """
    if name in _ENGINES:
        raise ParameterError(f"The engine name {name!r} is taken; registered engines: {words(available_engines())}.")
    _ENGINES[name] = factory


def available_engines() -> list[str]:
    """Names of the registered engines, in registration order (``local`` first: the default)."""
    return list(_ENGINES)


def get_engine(engine: str | Engine, *, jobs: int | None = None, address: str | None = None) -> Engine:
    """The engine named ``engine`` built with these options, or ``engine`` itself when it is one already
    (it carries its own options: ``jobs`` and ``address`` are not used then).

    Raises
    ------
    ParameterError
        No engine of that name is registered, or the engine refuses an option.
    """
    if not isinstance(engine, str):
        return engine
    factory = _ENGINES.get(engine)
    if factory is None:
        raise ParameterError.invalid("engine", f"one of {words(available_engines())}", engine)
    return factory(jobs=jobs, address=address)
