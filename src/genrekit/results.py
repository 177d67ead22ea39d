"""What a prediction gives: the genres of a track, its per-segment timeline, or why a file failed.

Plain frozen dataclasses with the documented JSON schema (``to_dict``) of ``genrekit predict --format
json``, library runs and ``POST /v1/predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from .exceptions import AudioDecodeError, AudioTooLongError
from .tags import DEFAULT_TAGS, Tag

__all__ = ["FAILURE_KINDS", "FailureKind", "SegmentPrediction", "Prediction", "PredictionError"]

FailureKind = Literal["missing", "unreadable", "decode", "too-long", "out-of-memory", "internal"]
FAILURE_KINDS: tuple[FailureKind, ...] = get_args(FailureKind)


@dataclass(frozen=True)
class SegmentPrediction:
    """One segment of the timeline: where it is, and what the model says about it.

    ``genre`` is ``None`` and every probability 0 for a silent segment (see :data:`genrekit.features.pipeline.SILENCE_RMS`);
    ``tags`` as :attr:`Prediction.tags`, empty for a silent segment.
    """

    start_s: float
    end_s: float
    genre: str | None
    probabilities: dict[str, float]
    tags: tuple[Tag, ...] | None = None

    @property
    def confidence(self) -> float:
        return 0.0 if self.genre is None else self.probabilities[self.genre]

    def to_dict(self, *, tags: int = DEFAULT_TAGS) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "genre": self.genre,
            "confidence": round(self.confidence, 6),
            "probabilities": {g: round(p, 6) for g, p in self.probabilities.items()},
        }
        if self.tags is not None and tags:
            out["tags"] = [t.to_dict() for t in self.tags[:tags]]
        return out


@dataclass(frozen=True)
class Prediction:
    """Genres of one track.

    Attributes
    ----------
    genre : str or None
        The most probable genre; ``None`` when the input is silent (then every probability is 0, and
        ``warnings`` says so).
    probabilities : dict of str to float
        Every genre of the model with its probability (sums to 1), in the model's label order. Silent
        segments take no part in the average.
    segments : tuple of SegmentPrediction
        The per-segment timeline.
    uncertain : bool
        The top probability is below the model's calibrated threshold: treat ``genre`` as a guess.
    tags : tuple of Tag or None
        musicnn's tags of the track, strongest first (:mod:`genrekit.tags`): each score is the tagger's own
        probability that the tag applies, averaged over the segments that hold sound; they do not sum to 1.
        Empty for silent input; ``None`` for a model that computes no tags (cnn1, cnn2).
    """

    path: str | None
    genre: str | None
    probabilities: dict[str, float]
    segments: tuple[SegmentPrediction, ...]
    duration_s: float
    warnings: tuple[str, ...] = ()
    uncertain: bool = False
    tags: tuple[Tag, ...] | None = None

    @property
    def confidence(self) -> float:
        return 0.0 if self.genre is None else self.probabilities[self.genre]

    @property
    def silent(self) -> bool:
        return self.genre is None

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable genres, most probable first (none for silent input)."""
        return [] if self.genre is None else sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self, *, top_k: int = 3, segments: bool = False, tags: int = DEFAULT_TAGS) -> dict[str, Any]:
        """The documented JSON schema of ``genrekit predict --format json`` and ``POST /v1/predict``: ``tags``
        lists the ``tags`` strongest (none with 0), and is absent for a model without tags."""
        out: dict[str, Any] = {
            "path": self.path,
            "genre": self.genre,
            "confidence": round(self.confidence, 6),
            "top_k": [{"genre": g, "probability": round(p, 6)} for g, p in self.top(top_k)],
            "probabilities": {g: round(p, 6) for g, p in self.probabilities.items()},
            "uncertain": self.uncertain,
            "duration_s": round(self.duration_s, 3),
            "n_segments": len(self.segments),
        }
        if self.tags is not None and tags:
            out["tags"] = [t.to_dict() for t in self.tags[:tags]]
        if segments:
            out["segments"] = [s.to_dict(tags=tags) for s in self.segments]
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


@dataclass(frozen=True)
class PredictionError:
    """A file that could not be classified: which file (``path``), what kind of failure (``kind``), and why (``error``).

    A failure travels as these three values from the worker that met it to every writer (the table, the
    JSON of ``predict`` and ``POST /v1/predict``, CSV and results files, ``prepare``'s ``errors.csv``, the
    page), each of which shows the path where it belongs instead of editing it into or out of a message.

    Attributes
    ----------
    path : str
        The file (or folder) as it was given.
    kind : {"missing", "unreadable", "decode", "too-long", "out-of-memory", "internal"}
        ``missing``: no such file, or a folder without audio; ``unreadable``: the bytes could not be read
        (permissions, an I/O error); ``decode``: the bytes are not usable audio (corrupt, empty, too short);
        ``too-long``: longer than the caller's duration limit; ``out-of-memory``: decoding ran out of memory;
        ``internal``: a worker gave no result. Only ``decode`` is a property of the bytes (:attr:`lasting`).
    error : str
        Why, in words, without the path (``"not decodable audio (unknown format)"``).
    """

    path: str
    kind: FailureKind
    error: str

    @classmethod
    def from_exception(cls, path: str, error: AudioDecodeError) -> PredictionError:
        """The failure of ``path`` that ``error`` describes: its kind from the error's type and cause."""
        if isinstance(error, AudioTooLongError):
            kind: FailureKind = "too-long"
        elif isinstance(error.__cause__, MemoryError):
            kind = "out-of-memory"
        elif isinstance(error.__cause__, OSError):
            kind = "unreadable"
        else:
            kind = "decode"
        return cls(path, kind, error.reason if error.detail is None else f"{error.reason} ({error.detail})")

    @property
    def lasting(self) -> bool:
        """Whether the same bytes would fail again: a decode failure, which the feature store caches; a length
        limit, a read error or a lack of memory may not recur."""
        return self.kind == "decode"

    def __str__(self) -> str:
        """One line for a log or a terminal: ``<path>: <error>``."""
        return f"{self.path}: {self.error}"

    def to_dict(self, **_: Any) -> dict[str, Any]:
        """The documented JSON of a failed file: ``{"path", "error", "error_kind": kind}``."""
        return {"path": self.path, "error": self.error, "error_kind": self.kind}
