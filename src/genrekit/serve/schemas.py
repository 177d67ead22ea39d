"""Pydantic models of what the HTTP API returns.

They mirror :meth:`genrekit.classifier.Prediction.to_dict` and :meth:`GenreClassifier.describe`
field for field, so ``POST /v1/predict`` answers exactly what ``genrekit predict --format json``
prints, and the OpenAPI page documents that one schema instead of a second, drifting copy.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorOut",
    "FailureOut",
    "FeaturesOut",
    "GenreProbability",
    "HealthOut",
    "ModelOut",
    "ModelsOut",
    "PredictionOut",
    "SegmentOut",
    "TagOut",
]


class GenreProbability(BaseModel):
    """One entry of the ranked ``top_k`` list."""

    genre: str
    probability: float = Field(ge=0, le=1)


class TagOut(BaseModel):
    """One of musicnn's tags: the tagger's own probability that it applies (multi-label: scores do not sum to 1)."""

    tag: str
    source: str = Field(description="The tagger: MSD_musicnn (Last.fm tags of the Million Song Dataset) or MTT_musicnn (MagnaTagATune).")
    score: float = Field(ge=0, le=1)


class SegmentOut(BaseModel):
    """One segment of the per-segment timeline."""

    start_s: float
    end_s: float
    genre: str | None = Field(description="The segment's most probable genre; null for a silent segment (all probabilities 0).")
    confidence: float = Field(ge=0, le=1)
    probabilities: dict[str, float]
    tags: list[TagOut] | None = Field(default=None, description="The segment's strongest tags, as the track's `tags`; empty for a silent segment.")


class PredictionOut(BaseModel):
    """Genres of one uploaded track (the schema of ``genrekit predict --format json``)."""

    path: str | None = Field(description="The uploaded file's name, as the client sent it.")
    genre: str | None = Field(description="The most probable genre; null for silent input (see `warnings`).")
    confidence: float = Field(ge=0, le=1, description="Probability of `genre`.")
    top_k: list[GenreProbability] = Field(description="The `top_k` most probable genres, most probable first.")
    probabilities: dict[str, float] = Field(description="Every genre of the model with its probability (sums to 1; all 0 for silent input).")
    uncertain: bool = Field(description="The top probability is below the model's calibrated threshold: `genre` is a guess.")
    duration_s: float
    n_segments: int
    tags: list[TagOut] | None = Field(
        default=None,
        description="musicnn's `tags` strongest tags, strongest first, each score averaged over the segments that hold sound; "
        "absent for a model without tags (cnn1, cnn2).",
    )
    segments: list[SegmentOut] | None = Field(default=None, description="Present only with `segments=true`.")
    warnings: list[str] | None = Field(default=None, description="Present only when decoding noticed something odd.")


class FeaturesOut(BaseModel):
    """What the model listens to."""

    kind: str
    sample_rate: int
    segment_seconds: float


class ModelOut(BaseModel):
    """A served model as it describes itself; training facts appear only when the checkpoint recorded them."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    architecture: str
    labels: list[str]
    features: FeaturesOut
    training_data: Any = None
    split: Any = None
    validation: dict[str, Any] | None = Field(default=None, description="Recorded validation metrics, e.g. track_accuracy.")


class ModelsOut(BaseModel):
    """The models this server answers with (one per server)."""

    models: list[ModelOut]


class HealthOut(BaseModel):
    """Liveness, answered from the event loop even while every worker is busy."""

    status: str
    model: str
    in_flight: int = Field(description="Uploaded files admitted to inference and not yet answered (waiting or running).")
    capacity: int = Field(description="Files admitted to inference at once (workers + queue); beyond it the server answers 503.")
    uploading: int = Field(description="Uploads still arriving.")
    upload_capacity: int = Field(description="Uploads that may arrive at once; beyond it the server answers 503.")


class FailureOut(BaseModel):
    """A file that could not be classified (the JSON of :class:`genrekit.results.PredictionError`)."""

    path: str = Field(description="The uploaded file's name, as the client sent it.")
    error: str = Field(description="Why, in words, without the file's name.")
    error_kind: str = Field(description="missing, unreadable, decode, too-long, out-of-memory or internal.")


class ErrorOut(BaseModel):
    """Every error the API returns: a stable code for programs, a sentence for people."""

    error: str = Field(
        description="too_large, not_audio, too_long, busy, not_multipart, bad_multipart, incomplete, interrupted, too_slow, "
        "missing_file, unauthorized or bad_parameter."
    )
    detail: str = Field(description="What went wrong and what to do, in plain words.")
    failure: FailureOut | None = Field(
        default=None,
        description="Present when the uploaded file itself was refused (not_audio, too_long): the file's failure as data, "
        "as `genrekit predict --format json` writes a file that failed.",
    )
