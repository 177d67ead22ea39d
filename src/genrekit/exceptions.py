"""Exception and warning types raised by genrekit.

Every error derives from :class:`GenrekitError` and also from the matching builtin, so
``except ValueError`` keeps working for callers that do not know genrekit.
"""

from __future__ import annotations

__all__ = [
    "GenrekitError",
    "ParameterError",
    "AudioDecodeError",
    "AudioTooLongError",
    "DatasetError",
    "StoreError",
    "ModelNotFoundError",
    "ResumeError",
    "GenrekitWarning",
    "AudioWarning",
    "DatasetWarning",
    "words",
]


def words(values: object) -> str:
    """``a, b or c``: allowed values as a sentence, not a Python repr like ``['a', 'b', 'c']``."""
    items = [str(v) for v in values]  # type: ignore[attr-defined]
    if not items:
        return "none"
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


class GenrekitError(Exception):
    """Root of all genrekit errors."""


class ParameterError(GenrekitError, ValueError):
    """A parameter has a value outside its allowed range or set."""


class AudioDecodeError(GenrekitError, ValueError):
    """A file could not be decoded into usable audio; the message names the file and the reason."""


class AudioTooLongError(AudioDecodeError):
    """Audio longer than the caller's duration limit: a refusal that depends on the limit, not a fault of the file."""


class DatasetError(GenrekitError, ValueError):
    """A dataset folder or manifest cannot be read as labeled audio."""


class StoreError(GenrekitError, OSError):
    """A feature store is missing, incomplete or was built with another configuration."""


class ModelNotFoundError(GenrekitError, LookupError):
    """A model name, run folder or file does not exist; the message lists what does."""


class ResumeError(GenrekitError, ValueError):
    """A results file cannot be continued: it is not a genrekit results file, or another model's (other genres)."""


class GenrekitWarning(UserWarning):
    """Root of all genrekit warnings."""


class AudioWarning(GenrekitWarning):
    """Audio was decoded but something is off (truncated file, padded short track, ...)."""


class DatasetWarning(GenrekitWarning):
    """A dataset has an oddity worth knowing (duplicates, tracks outside a split list, ...)."""
