"""Exception and warning types raised by genrekit.

Every error derives from :class:`GenrekitError` and also from the matching builtin, so
``except ValueError`` keeps working for callers that do not know genrekit.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "GenrekitError",
    "ParameterError",
    "AudioDecodeError",
    "AudioTooLongError",
    "DatasetError",
    "StoreError",
    "ModelNotFoundError",
    "CheckpointError",
    "ResumeError",
    "MissingDependencyError",
    "TRAIN_EXTRA",
    "InUseError",
    "OutputError",
    "GenrekitWarning",
    "AudioWarning",
    "DatasetWarning",
]


class GenrekitError(Exception):
    """Root of all genrekit errors."""


class ParameterError(GenrekitError, ValueError):
    """A parameter has a value outside its allowed range or set."""


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

    def __init__(self, path: str | os.PathLike[str], code: int, message: str) -> None:
        super().__init__(message)  # one argument: str() is the message, without "[Errno 28]"
        self.path = os.fspath(path)
        self.errno = code


class GenrekitWarning(UserWarning):
    """Root of all genrekit warnings."""


class AudioWarning(GenrekitWarning):
    """Audio was decoded but something is off (truncated file, padded short track, ...)."""


class DatasetWarning(GenrekitWarning):
    """A dataset has an oddity worth knowing (duplicates, tracks outside a split list, ...)."""
