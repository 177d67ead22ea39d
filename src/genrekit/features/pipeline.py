"""The per-file pipeline, one function for every engine: decode, segment and featurize a file, streamed.

:func:`featurize_file` is what ``prepare`` (:func:`genrekit.datasets.prepare.process_file`), the workers of
``predict_many`` and the Ray engine run on each file: a pure function of (file, config) whose result,
features or the reason the file cannot be used, is written by the one process that asked for it.
:class:`FileFeatures` streams a file's features batch by batch, so a 10-minute file needs the memory
of a 30 s one; the classifier runs its model between batches.

Only bad audio is a reason (decode and I/O errors, and running out of memory): any other exception is
a bug in genrekit or a dependency and propagates, so a batch fails loudly instead of skipping every file.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import Segmenter, min_cover_samples, segment_audio, stream_audio, too_short
from ..config import FeatureConfig
from ..exceptions import AudioDecodeError, AudioWarning, warning_note
from ..results import PredictionError
from .kinds import extract_features

__all__ = ["BATCH_SEGMENTS", "SILENCE_RMS", "FileResult", "FileFeatures", "featurize_file", "featurize_signal", "silent_segments"]

# Segments per feature batch and model call: a 30 s clip's worth, so a long file streams in the memory of
# one clip (cnn2 activations: ~22 MB for 10 segments, ~70 MB for 32, which added 67 MB to the peak on a
# 10-minute file), and cnn2 runs ~2x faster per segment than at 32 (426 vs 853 ms for 200 segments on
# one thread; 4 to 16 are alike).
BATCH_SEGMENTS = 10

# A segment quieter than this RMS (-60 dBFS) holds no music to classify: digital silence, a fade, a gap
# between movements. Its probabilities would be the model's answer to nothing ("classical 75.7 %" for 30 s
# of silence), so it takes no part in the vote, and a track with nothing louder gets no genre at all.
SILENCE_RMS = 1e-3
SILENT_NOTE = "silent or near-silent input (below -60 dBFS): no genre"


def silent_segments(segments: np.ndarray) -> np.ndarray:
    """Which segments of shape (n, n_samples) are below :data:`SILENCE_RMS`; shape (n,), bool."""
    segments = np.asarray(segments, dtype=np.float32)
    return np.sqrt(np.einsum("ij,ij->i", segments, segments) / max(segments.shape[1], 1)) < SILENCE_RMS


@dataclass(frozen=True)
class FileResult:
    """What featurizing one file gave: its features, or the reason it cannot be used.

    Attributes
    ----------
    features : ndarray of shape (n_segments, *feature_shape), or None
        float32, or float16 when asked for (the store's format).
    starts : ndarray of shape (n_segments,), or None
        Start of each segment in seconds.
    duration_s : float
    silent : ndarray of bool, shape (n_segments,), or None
        Which segments are below :data:`SILENCE_RMS`.
    failure : PredictionError or None
        Why the file cannot be used (its path, kind and reason), as every writer shows it; the store caches
        it when it is :attr:`~genrekit.results.PredictionError.lasting`, so reruns skip the file.
    warnings : tuple of str
        Warnings raised while decoding (a truncated file, a padded short one).
    """

    path: str
    features: np.ndarray | None = None
    starts: np.ndarray | None = None
    duration_s: float = 0.0
    silent: np.ndarray | None = None
    failure: PredictionError | None = None
    warnings: tuple[str, ...] = ()


def _check_duration(path: str | None, n_samples: int, config: FeatureConfig) -> float:
    duration = n_samples / config.audio.sample_rate
    if reason := too_short(duration, config.audio):
        raise AudioDecodeError(path, reason)
    return duration


def featurize_signal(y: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, float, np.ndarray]:
    duration = _check_duration(None, len(y), config)
    segments, _ = segment_audio(y, config.audio)
    return extract_features(segments, config), duration, silent_segments(segments)


class FileFeatures:
    """The features of a file's segments, yielded in batches of ``BATCH_SEGMENTS`` as decoding proceeds.

    Decoding runs block by block (:func:`~genrekit.audio.stream_audio`) into a :class:`~genrekit.audio.Segmenter`,
    so at any time only one block, one batch of segments and its features are held: a 10-minute file
    needs the memory of a 30 s one. Segments and features equal those of the whole decoded signal.
    Bad audio, I/O errors and running out of memory raise :class:`AudioDecodeError` naming the file;
    anything else (a bug in feature code) propagates as it is. ``duration_s`` and ``silent`` (which
    segments are below :data:`SILENCE_RMS`) are complete once iteration ends.
    """

    def __init__(self, path: str, config: FeatureConfig, max_duration: float | None = None) -> None:
        self.path = path
        self.config = config
        self.max_duration = max_duration
        self.duration_s = 0.0
        self._silent: list[np.ndarray] = []

    @property
    def silent(self) -> np.ndarray:
        return np.concatenate(self._silent) if self._silent else np.zeros(0, dtype=bool)

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            yield from self._batches()
        except OSError as e:
            raise AudioDecodeError(self.path, "cannot be read", detail=e.strerror or str(e)) from e
        except MemoryError as e:
            raise AudioDecodeError(self.path, "out of memory while decoding; try again with fewer worker processes") from e

    def _batches(self) -> Iterator[np.ndarray]:
        segmenter = Segmenter(self.config.audio)

        def windows() -> Iterator[np.ndarray]:
            for block in stream_audio(self.path, sample_rate=self.config.audio.sample_rate, max_duration=self.max_duration):
                yield from segmenter.push(block)
            self.duration_s = _check_duration(self.path, segmenter.n_samples, self.config)
            if segmenter.n_samples < min_cover_samples(self.config.audio):
                warnings.warn(
                    AudioWarning(self.path, f"{self.duration_s:.2f} s is shorter than one {self.config.audio.segment_seconds:g} s segment; zero-padded"),
                    stacklevel=2,
                )
            yield from segmenter.finish()

        batch = np.empty((BATCH_SEGMENTS, self.config.audio.segment_samples), dtype=np.float32)  # refilled in place
        n = 0
        for window in windows():
            batch[n] = window
            n += 1
            if n == BATCH_SEGMENTS:
                self._silent.append(silent_segments(batch))
                yield extract_features(batch, self.config)
                n = 0
        if n:
            self._silent.append(silent_segments(batch[:n]))
            yield extract_features(batch[:n], self.config)


def featurize_file(path: str | Path, config: FeatureConfig, *, max_duration: float | None = None, half: bool = False) -> FileResult:
    """Decode, segment and featurize one file; bad audio is returned as the reason, never raised.

    Parameters
    ----------
    max_duration : float > 0, optional
        Refuse files longer than this many seconds (from the header, before decoding).
    half : bool, default=False
        Return float16 features (the store's format), converted here, in the worker.
    """
    path = str(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = FileFeatures(path, config, max_duration)
        try:
            batches = list(stream)
        except AudioDecodeError as e:
            return FileResult(path, failure=PredictionError.from_exception(path, e), warnings=tuple(warning_note(w.message) for w in caught))
    features = np.concatenate(batches)
    if half:
        with np.errstate(over="ignore"):  # as PyTorch's half(): the same bits, ~0.3 ms a 30 s clip, and no torch import in a worker
            features = features.astype(np.float16)
    starts = np.arange(len(features), dtype=np.int64) * config.audio.hop_samples / config.audio.sample_rate
    return FileResult(path, features, starts, stream.duration_s, stream.silent, warnings=tuple(warning_note(w.message) for w in caught))
