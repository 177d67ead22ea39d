"""What a prediction gives: the genres of a track, its per-segment timeline, or why a file failed.

Plain frozen dataclasses with the documented JSON schema (``to_dict``) of ``genrekit predict --format
json``, library runs and ``POST /v1/predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .tags import DEFAULT_TAGS, Tag

__all__ = ["SegmentPrediction", "Prediction", "PredictionError"]


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
    """A file that could not be classified, and why."""

    path: str
    error: str

    def to_dict(self, **_: Any) -> dict[str, Any]:
        return {"path": self.path, "error": self.error}
