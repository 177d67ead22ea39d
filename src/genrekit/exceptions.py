"""Exception and warning types raised by genrekit.

Every error derives from :class:`GenrekitError` and also from the matching builtin, so
``except ValueError`` keeps working for callers that do not know genrekit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NOTHING",
    "Mention",
    "GenrekitError",
    "ParameterError",
    "AudioDecodeError",
    "AudioTooLongError",
    "DatasetError",
    "StoreError",
    "WorkerDiedError",
    "ModelNotFoundError",
    "CheckpointError",
    "ResumeError",
    "MissingDependencyError",
    "TRAIN_EXTRA",
    "InUseError",
    "OutputError",
    "GenrekitWarning",
    "AudioWarning",
    "warning_note",
    "DatasetWarning",
]


class _Nothing:
    """No value given (``None`` is a value a parameter can have)."""

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()


@dataclass(frozen=True)
class Mention:
    """A parameter named inside an error message.

    The library's words name the parameter (``features='logmel'``); a front end that knows which of its
    options carries the parameter names the option as its user types it (``--features logmel``). The
    message keeps the mention as data, so no front end has to find parameter names in text.

    Attributes
    ----------
    parameter : str
        The library's parameter name.
    value : object, optional
        The value meant, when the message names one.
    text : str, optional
        The library's words for it where not ``parameter`` or ``parameter=value`` (``"Model"``).
    """

    parameter: str
    value: Any = NOTHING
    text: str | None = None

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        return self.parameter if self.value is NOTHING else f"{self.parameter}={self.value!r}"


class GenrekitError(Exception):
    """Root of all genrekit errors.

    The message may be given in parts: text, and :class:`Mention` objects for the parameters it names.
    ``str(error)`` says each mention in the library's words; :meth:`render` lets a front end say them
    in its own (the CLI: the options typed). The parts are instance state, so they survive pickling
    (an error raised in a worker process).
    """

    def __init__(self, *parts: object) -> None:
        self.parts: tuple[str | Mention, ...] = tuple(p if isinstance(p, Mention) else str(p) for p in parts)
        super().__init__("".join(map(str, self.parts)))

    def render(self, mention: Callable[[Mention], str]) -> str:
        """The message with each :class:`Mention` said by ``mention``."""
        return "".join(mention(p) if isinstance(p, Mention) else p for p in self.parts)


class ParameterError(GenrekitError, ValueError):
    """A parameter has a value outside its allowed range or set.

    Built by :meth:`invalid`, it also says which parameter, what it allows and what it got, as fields, so
    that a front end can word the same refusal for its own options.

    Attributes
    ----------
    parameter : str or None
        The library's parameter name, where the error is about one parameter's value.
    allowed : str or None
        What it allows, in words (``"one of test or val"``, ``"an integer > 0"``).
    got : object
        The value received (:data:`NOTHING` when not given).
    """

    parameter: str | None = None
    allowed: str | None = None
    got: Any = NOTHING

    @classmethod
    def invalid(
        cls, parameter: str, allowed: str, got: object, *, owner: str | None = None, optional: str | None = None, subject: str | None = None
    ) -> ParameterError:
        """``The 'parameter' parameter[ of owner] must be allowed[ (or optional)]. Got got instead.``

        ``optional`` says what ``None`` means (``"None"``, ``"None for all cores"``): a library caller may pass
        it, a command-line user leaves the option out, so a front end may leave it out of its words.
        ``subject`` replaces "The 'parameter' parameter" where another phrase says more ("The feature kind").
        """
        of = f" of {owner}" if owner else ""
        alternative = f" (or {optional})" if optional else ""
        error = cls(f"{subject or f'The {parameter!r} parameter'}{of} must be {allowed}{alternative}. Got {got!r} instead.")
        error.parameter, error.allowed, error.got = parameter, allowed, got
        return error


class AudioDecodeError(GenrekitError, ValueError):
    """A file could not be decoded into usable audio.

    The message is ``"<path>: <reason>"``; callers that show it elsewhere (the web service names the
    upload, not its temporary path) read the parts instead of parsing the text.

    Attributes
    ----------
    path : str or None
        The file, or ``None`` for a signal passed in memory.
    reason : str
        Why, in words (``"empty file (0 bytes)"``, ``"not decodable audio"``).
    detail : str or None
        The decoder's own words, when it gave any (libsndfile's ``"unknown format"``).
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, *, detail: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        self.detail = detail
        told = reason if detail is None else f"{reason} ({detail})"
        super().__init__(told if self.path is None else f"{self.path}: {told}")

    def __reduce__(self) -> tuple[Any, tuple[type[AudioDecodeError], str | None, str, str | None]]:
        """Pickle by the parts: a worker process's error reaches the parent as it was raised."""
        return _rebuild_decode_error, (type(self), self.path, self.reason, self.detail)


def _rebuild_decode_error(cls: type[AudioDecodeError], path: str | None, reason: str, detail: str | None) -> AudioDecodeError:
    return cls(path, reason, detail=detail)


class AudioTooLongError(AudioDecodeError):
    """Audio longer than the caller's duration limit: a refusal that depends on the limit, not a fault of the file."""


class DatasetError(GenrekitError, ValueError):
    """A dataset folder or manifest cannot be read as labeled audio."""


class StoreError(GenrekitError, OSError):
    """A feature store is missing, incomplete or was built with another configuration."""


class ModelNotFoundError(GenrekitError, LookupError):
    """A model name, run folder or file does not exist; the message lists what does."""


class CheckpointError(GenrekitError, ValueError):
    """A model file exists but is damaged or is not a genrekit model (a missing one is :class:`ModelNotFoundError`)."""


class ResumeError(GenrekitError, ValueError):
    """A run cannot be continued: a training run folder without a readable config or state, or a results
    file that is not genrekit's or is another model's (other genres)."""


# What ``pip install 'genrekit[train]'`` adds: training, evaluation, export and PyTorch checkpoints need it,
# classifying with the shipped models and exported .onnx files does not.
TRAIN_EXTRA = frozenset({"torch", "safetensors", "sklearn", "librosa", "onnx"})


class MissingDependencyError(GenrekitError, ImportError):
    """What was asked for needs a package of an extra that is not installed; the message says what to install."""

    def __init__(self, package: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs {package}, which is not installed: pip install 'genrekit[train]'")
        self.package = package


class WorkerDiedError(GenrekitError, RuntimeError):
    """A worker of an engine ended without handing back its file's result: killed, out of memory, or a
    decoder that crashed the process. The caller's outputs keep what was finished before it."""


class InUseError(GenrekitError, OSError):
    """An output (results file, feature store, run folder) is held by another running genrekit command:
    two runs writing one output would lose each other's rows."""


class OutputError(GenrekitError, OSError):
    """An output cannot be written: the disk is full, read-only, or the folder is not writable.

    Attributes
    ----------
    path : str
        The file or folder that could not be written.
    errno : int
        The operating system's error number (``errno.ENOSPC``, ``errno.EROFS``, ...).
    """

    def __init__(self, path: str | os.PathLike[str], code: int, *parts: object) -> None:
        super().__init__(*parts)  # the message alone: str() is without "[Errno 28]"
        self.path = os.fspath(path)
        self.errno = code


class GenrekitWarning(UserWarning):
    """Root of all genrekit warnings."""


class AudioWarning(GenrekitWarning):
    """Audio was decoded but something is off (truncated file, padded short track, ...).

    The message is ``"<path>: <note>"``; a prediction keeps the :attr:`note` alone, as its path is its own
    field (see :func:`warning_note`).

    Attributes
    ----------
    path : str or None
        The file, or ``None`` for a signal passed in memory.
    note : str
        What is off, in words (``"truncated, header promises 30.00 s but only 12.00 s could be read"``).
    """

    def __init__(self, path: str | os.PathLike[str] | None, note: str) -> None:
        self.path = None if path is None else str(path)
        self.note = note
        super().__init__(note if self.path is None else f"{self.path}: {note}")

    def __reduce__(self) -> tuple[type[AudioWarning], tuple[str | None, str]]:
        """Pickle by the parts, as :class:`AudioDecodeError`."""
        return type(self), (self.path, self.note)


def warning_note(message: Warning | str) -> str:
    """What a caught warning says about its file: an :class:`AudioWarning`'s note, any other warning's text."""
    return message.note if isinstance(message, AudioWarning) else str(message)


class DatasetWarning(GenrekitWarning):
    """A dataset has an oddity worth knowing (duplicates, tracks outside a split list, ...)."""
