"""Running a model's network: the :class:`Runner` a classifier holds, and the registry of runtimes that load one.

A :class:`~genrekit.classifier.GenreClassifier` decodes, segments, featurizes and soft-votes; what turns a
batch of segment features into class probabilities (and musicnn's tag scores) is its :class:`Runner`. A
runtime is a named way to load one, the ``backend`` of :func:`genrekit.load_model`: "torch"
(:mod:`.torch`: a checkpoint's network on a device) and "onnxruntime" (:mod:`.onnx`: an exported graph).
"auto" takes the latest registered runtime that prefers the model (onnxruntime for ``.onnx`` files and the
musicnn models it runs faster), else torch. A third runtime is one module holding its Runner and loader, plus one
:func:`register_runtime` call; the classifier needs no change (tests/test_runtime.py registers a NumPy one).

The arrow points one way: classifier -> runtime. Runtimes never import :mod:`genrekit.classifier`. Loaders
import their module when called, so naming a runtime imports neither PyTorch nor onnxruntime.

What a runner and its source are: :mod:`.base`. Beside the registry: devices (:mod:`.device`), ONNX export
(:mod:`.export`) to the graph contract of :mod:`.graph`, and int8 quantization (:mod:`.quantize`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._text import words
from ..exceptions import ParameterError
from .base import ModelSource, Rebuild, Runner, RuntimeLoader

__all__ = [
    "AUTO",
    "DEFAULT_RUNTIME",
    "Rebuild",
    "Runner",
    "RuntimeLoader",
    "ModelSource",
    "register_runtime",
    "available_runtimes",
    "check_runtime",
    "resolve_runtime",
    "load_runner",
]

AUTO = "auto"
DEFAULT_RUNTIME = "torch"
"""What "auto" takes when no registered runtime prefers the model."""

@dataclass(frozen=True)
class _Runtime:
    load: RuntimeLoader
    prefers: Callable[[ModelSource], bool] | None


_RUNTIMES: dict[str, _Runtime] = {}


def register_runtime(name: str, loader: RuntimeLoader, *, prefers: Callable[[ModelSource], bool] | None = None) -> None:
    """Make ``name`` a ``backend`` of :func:`genrekit.load_model` and ``genrekit predict --backend``.

    Parameters
    ----------
    name : str
        The runtime's name (not "auto"); registering a name again replaces its loader.
    loader : callable
        ``loader(source, *, device, threads) -> Runner`` (:class:`RuntimeLoader`); it should import its
        heavy packages when called, not when registered.
    prefers : callable, optional
        ``prefers(source) -> bool``: whether "auto" takes this runtime for ``source``. The runtime registered
        last is asked first, so that one added for a kind of file claims it before the built-in ones
        (whose checks read the file as a checkpoint); when none prefers it, "auto" is :data:`DEFAULT_RUNTIME`.

    Raises
    ------
    ParameterError
        ``name`` is "auto" or empty.
    """
    if not name or name == AUTO:
        raise ParameterError(f"The 'name' parameter must name a runtime, not {name!r}: 'auto' is the choice among them.")
    _RUNTIMES[name] = _Runtime(loader, prefers)


def available_runtimes() -> list[str]:
    """The ``backend`` values :func:`genrekit.load_model` takes: "auto", then the registered runtimes."""
    return [AUTO, *_RUNTIMES]


def check_runtime(name: str) -> None:
    """Raise :class:`ParameterError` for a ``backend`` that names no registered runtime (nor "auto")."""
    if name not in available_runtimes():
        raise ParameterError.invalid("backend", f"one of {words(available_runtimes())}", name)


def resolve_runtime(name: str, source: ModelSource) -> str:
    """The runtime ``name`` means for ``source``: itself, or for "auto" the latest registered runtime that prefers it."""
    check_runtime(name)
    if name != AUTO:
        return name
    return next((n for n, r in reversed(_RUNTIMES.items()) if r.prefers is not None and r.prefers(source)), DEFAULT_RUNTIME)


def load_runner(source: ModelSource, backend: str = AUTO, *, device: str = "auto", threads: int = 1) -> Runner:
    """The :class:`Runner` of ``source`` that ``backend`` (a runtime name, or "auto") loads.

    Raises
    ------
    ParameterError
        An unknown backend, or one that cannot run this model here.
    """
    return _RUNTIMES[resolve_runtime(backend, source)].load(source, device=device, threads=threads)


def _load_torch(source: ModelSource, *, device: str, threads: int) -> Runner:
    from .torch import load

    return load(source, device=device, threads=threads)


def _load_onnx(source: ModelSource, *, device: str, threads: int) -> Runner:
    from .onnx import load

    return load(source, device=device, threads=threads)


def _onnx_prefers(source: ModelSource) -> bool:
    from .onnx import prefers

    return prefers(source)


register_runtime("torch", _load_torch)
register_runtime("onnxruntime", _load_onnx, prefers=_onnx_prefers)
