"""Classify music with a trained model: files, folders or arrays in, genres with probabilities out.

``load_model()`` returns the model shipped inside the package; ``load_model("runs/x")`` a trained run.
Every prediction decodes the whole file, cuts it into the model's segments, classifies each segment
and averages the segment probabilities (soft voting, the original pipeline's rule). Files stream through
decoding, features and the model a batch of segments at a time, so memory does not grow with their length.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
from torch import nn
from torch.nn import functional as F

from ._workers import stop_pool, watch_parent
from .audio import AUDIO_EXTENSIONS, Segmenter, is_audio_file, path_problem, segment_audio, stream_audio
from .checkpoint import Checkpoint, load_checkpoint
from .config import FeatureConfig
from .exceptions import AudioDecodeError, GenrekitError, ModelNotFoundError, ParameterError
from .features import extract_features
from .models.cnn import CNN1, CNN2, KerasMaxPool2d

__all__ = [
    "DEFAULT_MODEL",
    "SegmentPrediction",
    "Prediction",
    "PredictionError",
    "GenreClassifier",
    "load_model",
    "available_models",
    "find_audio_files",
]

DEFAULT_MODEL = "default"
# The default: a calibrated linear model over musicnn's penultimate layers and tag scores, chosen by
# scripts/select_default_model.py; zero-shot: the untrained tag mapping, the baseline it must beat.
_SHIPPED = {"default": "default.pt", "zero-shot": "zero-shot.pt"}
# Segments per feature batch and model call: a 30 s clip's worth, so a long file streams in the memory of
# one clip (cnn2 activations: ~22 MB for 10 segments, ~70 MB for 32, which added 67 MB to the peak on a
# 10-minute file), and cnn2 runs ~2x faster per segment than at 32 (426 vs 853 ms for 200 segments on
# one thread; 4 to 16 are alike).
_BATCH_SEGMENTS = 10


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
class SegmentPrediction:
    """One segment of the timeline: where it is, and what the model says about it.

    ``genre`` is ``None`` and every probability 0 for a silent segment (see :data:`SILENCE_RMS`).
    """

    start_s: float
    end_s: float
    genre: str | None
    probabilities: dict[str, float]

    @property
    def confidence(self) -> float:
        return 0.0 if self.genre is None else self.probabilities[self.genre]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "genre": self.genre,
            "confidence": round(self.confidence, 6),
            "probabilities": {g: round(p, 6) for g, p in self.probabilities.items()},
        }


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
    """

    path: str | None
    genre: str | None
    probabilities: dict[str, float]
    segments: tuple[SegmentPrediction, ...]
    duration_s: float
    warnings: tuple[str, ...] = ()
    uncertain: bool = False

    @property
    def confidence(self) -> float:
        return 0.0 if self.genre is None else self.probabilities[self.genre]

    @property
    def silent(self) -> bool:
        return self.genre is None

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable genres, most probable first (none for silent input)."""
        return [] if self.genre is None else sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self, *, top_k: int = 3, segments: bool = False) -> dict[str, Any]:
        """The documented JSON schema of ``genrekit predict --format json`` and ``POST /v1/predict``."""
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
        if segments:
            out["segments"] = [s.to_dict() for s in self.segments]
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


@dataclass(frozen=True)
class _Featurized:
    path: str
    features: np.ndarray | None = None
    duration_s: float = 0.0
    error: str | None = None
    warnings: tuple[str, ...] = field(default=())
    silent: np.ndarray | None = None


def _check_duration(n_samples: int, config: FeatureConfig) -> float:
    duration = n_samples / config.audio.sample_rate
    if duration < config.audio.min_duration:
        raise AudioDecodeError(f"too short ({duration:.3f} s); at least {config.audio.min_duration:g} s of audio is needed")
    return duration


def _featurize_signal(y: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, float, np.ndarray]:
    duration = _check_duration(len(y), config)
    segments, _ = segment_audio(y, config.audio)
    return extract_features(segments, config), duration, silent_segments(segments)


class _FileFeatures:
    """The features of a file's segments, yielded in batches of ``_BATCH_SEGMENTS`` as decoding proceeds.

    Decoding runs block by block (:func:`~genrekit.audio.stream_audio`) into a :class:`~genrekit.audio.Segmenter`,
    so at any time only one block, one batch of segments and its features are held: a 10-minute file
    needs the memory of a 30 s one. Segments and features equal those of the whole decoded signal.
    Any failure raises :class:`AudioDecodeError` naming the file; ``duration_s`` and ``silent`` (which
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
        except GenrekitError as e:
            message = str(e)
            raise AudioDecodeError(message if message.startswith(self.path) else f"{self.path}: {message}") from e
        except Exception as e:  # one undecodable file must not stop a batch
            raise AudioDecodeError(f"{self.path}: {type(e).__name__}: {e}") from e

    def _batches(self) -> Iterator[np.ndarray]:
        segmenter = Segmenter(self.config.audio)

        def windows() -> Iterator[np.ndarray]:
            for block in stream_audio(self.path, sample_rate=self.config.audio.sample_rate, max_duration=self.max_duration):
                yield from segmenter.push(block)
            self.duration_s = _check_duration(segmenter.n_samples, self.config)
            yield from segmenter.finish()

        batch = np.empty((_BATCH_SEGMENTS, self.config.audio.segment_samples), dtype=np.float32)  # refilled in place
        n = 0
        for window in windows():
            batch[n] = window
            n += 1
            if n == _BATCH_SEGMENTS:
                self._silent.append(silent_segments(batch))
                yield extract_features(batch, self.config)
                n = 0
        if n:
            self._silent.append(silent_segments(batch[:n]))
            yield extract_features(batch[:n], self.config)


def _featurize_file(path: str, config: FeatureConfig, max_duration: float | None = None) -> _Featurized:
    """Decode and featurize one file (a worker's job); a pure function of (file, config) that never raises for bad audio."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = _FileFeatures(path, config, max_duration)
        try:
            features = list(stream)
        except AudioDecodeError as e:
            return _Featurized(path, error=str(e))
    return _Featurized(path, np.concatenate(features), stream.duration_s, warnings=tuple(str(w.message) for w in caught), silent=stream.silent)


_worker_model: GenreClassifier | None = None  # the model a predict_many worker process runs


def _init_worker(parent: int, rebuild: tuple[Any, tuple[Any, ...], dict[str, Any]]) -> None:
    """Set a worker up: one thread, exit with the parent, and its own copy of the model (``rebuild``: factory, args, kwargs)."""
    global _worker_model
    torch.set_num_threads(1)
    watch_parent(parent)
    factory, args, kwargs = rebuild
    _worker_model = factory(*args, **kwargs)


def _predict_in_worker(path: str, max_duration: float | None) -> Prediction | PredictionError:
    """One file through decoding, features and the model in a worker: only its Prediction travels back."""
    assert _worker_model is not None, "predict_many's worker initializer did not run"
    return _worker_model._predict_file(path, max_duration)


class _FoldedConvNet:
    """cnn1/cnn2 rewritten for inference: the same probabilities within float rounding, in 0.8x the time
    on an idle core and under half of it on a busy machine (benchmarks/bench_inference.py).

    - An eval-mode BatchNorm is a per-channel map ``a * x + b``. cnn2 applies it after the ReLU, so it
      cannot go into the conv before it; with ``a > 0`` it commutes with max-pooling and is folded into
      the next conv or linear layer instead (valid convolutions: no zero padding that ``b`` would miss).
    - ReLU runs after max-pooling (they commute): on 4x fewer values.
    - Convolutions and pooling run on oneDNN's blocked tensors: no layout conversion between layers,
      and pooling skips the argmax indices that eager ``max_pool2d`` computes for a backward pass.

    Built by :func:`_fold_conv_net`; call it on a batch of shape (n, n_mels, n_frames).
    """

    def __init__(
        self,
        convs: list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]],
        pools: list[KerasMaxPool2d],
        linears: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.convs = [(w.contiguous().to_mkldnn(), b.contiguous().to_mkldnn(), stride) for w, b, stride in convs]
        self.pools = pools
        self.linears = linears

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1).contiguous().to_mkldnn()
        for (weight, bias, stride), pool in zip(self.convs, self.pools):
            x = torch.relu(pool(torch.mkldnn_convolution(x, weight, bias, (0, 0), stride, (1, 1), 1)))
        x = x.to_dense().flatten(1)
        for weight, bias in self.linears[:-1]:
            x = F.relu_(F.linear(x, weight, bias))
        return F.linear(x, *self.linears[-1])


_FOLDABLE = re.compile(r"(CRB?PD?)+F(LRD?)*L")  # conv, relu, batchnorm, pool, dropout, flatten, linear


def _fold_conv_net(model: nn.Module) -> _FoldedConvNet | None:
    """``model`` (eval mode) as a :class:`_FoldedConvNet`, or ``None`` when it is not a cnn1/cnn2 layer
    stack that folds exactly (e.g. a BatchNorm with a non-positive scale, which max-pooling would not
    commute with) or oneDNN is missing."""
    if type(model) not in (CNN1, CNN2) or not torch.backends.mkldnn.is_available():
        return None
    layers = [*model.features, *model.classifier]
    kinds = {nn.Conv2d: "C", nn.ReLU: "R", nn.BatchNorm2d: "B", KerasMaxPool2d: "P", nn.Dropout: "D", nn.Flatten: "F", nn.Linear: "L"}
    if not _FOLDABLE.fullmatch("".join(kinds.get(type(layer), "?") for layer in layers)):
        return None
    convs: list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]] = []
    pools: list[KerasMaxPool2d] = []
    linears: list[tuple[torch.Tensor, torch.Tensor]] = []
    scale: torch.Tensor | None = None  # pending per-channel map: the true activation is scale * computed + shift
    shift: torch.Tensor | None = None
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                if layer.bias is None or layer.padding != (0, 0) or layer.dilation != (1, 1) or layer.groups != 1:
                    return None
                weight, bias = layer.weight.clone(), layer.bias.clone()
                if scale is not None and shift is not None:
                    bias += (weight * shift[None, :, None, None]).sum(dim=(1, 2, 3))
                    weight *= scale[None, :, None, None]
                    scale = shift = None
                convs.append((weight, bias, (int(layer.stride[0]), int(layer.stride[1]))))
            elif isinstance(layer, nn.BatchNorm2d):
                if layer.running_mean is None or layer.running_var is None or layer.weight is None or layer.bias is None:
                    return None
                a = layer.weight / torch.sqrt(layer.running_var + layer.eps)
                if not bool((a > 0).all()):
                    return None
                b = layer.bias - layer.running_mean * a
                scale, shift = (a, b) if scale is None or shift is None else (scale * a, shift * a + b)
            elif isinstance(layer, KerasMaxPool2d):
                if not layer.kernel >= layer.stride >= 2:  # the other case pads explicitly, which oneDNN tensors do not support
                    return None
                pools.append(layer)
            elif isinstance(layer, nn.Linear):
                if layer.bias is None:
                    return None
                weight, bias = layer.weight.clone(), layer.bias.clone()
                if scale is not None and shift is not None:  # flattened (channels, h, w): each channel's value repeats h * w times
                    repeat = layer.in_features // len(scale)
                    bias += weight @ shift.repeat_interleave(repeat)
                    weight *= scale.repeat_interleave(repeat)
                    scale = shift = None
                linears.append((weight, bias))
    return _FoldedConvNet(convs, pools, linears)


class GenreClassifier:
    """A trained genre model with its preprocessing.

    Parameters
    ----------
    checkpoint : Checkpoint
        Weights, labels, feature config and normalization (see :mod:`genrekit.checkpoint`).
    name : str
        How the model was asked for (``default``, a run folder, a file).

    Examples
    --------
    >>> from genrekit import load_model
    >>> model = load_model()                                   # doctest: +SKIP
    >>> result = model.predict("song.mp3")                     # doctest: +SKIP
    >>> result.genre, result.probabilities["rock"]             # doctest: +SKIP
    """

    def __init__(self, checkpoint: Checkpoint, *, name: str = "") -> None:
        self.checkpoint = checkpoint
        self.name = name
        model = checkpoint.build()
        # Other models run channels_last, which lets oneDNN use its fast CPU convolutions: ~1.9x on cnn2 over NCHW.
        self._forward = _fold_conv_net(model) or model.to(memory_format=torch.channels_last)

    @property
    def backend(self) -> str:
        """What runs the network: "torch" here, "onnxruntime" for :class:`~genrekit.onnx_backend.OnnxClassifier`."""
        return "torch"

    @property
    def classes_(self) -> list[str]:
        return list(self.checkpoint.labels)

    @property
    def feature_config(self) -> FeatureConfig:
        return self.checkpoint.feature_config

    @property
    def input_config(self) -> FeatureConfig:
        """The features the network reads per segment: :attr:`feature_config`, except for an exported musicnn
        model, whose graph holds the musicnn networks and reads their log-mel patches."""
        return self.feature_config

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.checkpoint.metadata)

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of segment features, shape (n_segments, n_classes)."""
        out = []
        with torch.inference_mode():
            for lo in range(0, len(features), _BATCH_SEGMENTS):
                x = torch.as_tensor(np.asarray(features[lo : lo + _BATCH_SEGMENTS], dtype=np.float32))
                out.append(torch.softmax(self._forward(self.checkpoint.normalize(x)), dim=-1).numpy())
        return np.concatenate(out) if out else np.empty((0, len(self.classes_)), dtype=np.float32)

    @property
    def uncertain_below(self) -> float:
        """Top probability under which a prediction is flagged ``uncertain`` (0 when the model records none)."""
        return float(self.checkpoint.metadata.get("calibration", {}).get("uncertain_below", 0.0))

    def _prediction(
        self, path: str | None, probs: np.ndarray, duration: float, notes: tuple[str, ...] = (), silent: np.ndarray | None = None
    ) -> Prediction:
        """Soft-vote the probabilities of the segments that hold sound into a Prediction; segment k starts at k * hop."""
        probs = probs.astype(np.float64)
        silent = np.zeros(len(probs), dtype=bool) if silent is None else silent
        probs[silent] = 0.0
        labels = self.classes_
        audio = self.feature_config.audio
        segments = tuple(
            SegmentPrediction(
                float(s), float(min(s + audio.segment_seconds, duration)), None if quiet else labels[int(p.argmax())], dict(zip(labels, map(float, p)))
            )
            for s, p, quiet in zip(np.arange(len(probs)) * audio.hop_samples / audio.sample_rate, probs, silent)
        )
        if silent.all():
            return Prediction(path, None, dict.fromkeys(labels, 0.0), segments, duration, (*notes, SILENT_NOTE), uncertain=True)
        mean = probs[~silent].mean(axis=0)
        mean = mean / mean.sum()
        genre = labels[int(mean.argmax())]
        return Prediction(
            path, genre, dict(zip(labels, map(float, mean))), segments, duration, notes, uncertain=bool(mean.max() < self.uncertain_below)
        )

    def _predict_file(self, path: str, max_duration: float | None = None) -> Prediction | PredictionError:
        """Stream ``path`` through decoding, features and the model a batch at a time, keeping only probabilities.

        Warnings raised while decoding become the Prediction's notes; the model's own are re-issued as usual.
        """
        stream = _FileFeatures(path, self.input_config, max_duration)
        probs: list[np.ndarray] = []
        model_warnings: list[warnings.WarningMessage] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                for features in stream:
                    mark = len(caught)
                    probs.append(self.predict_proba_features(features))
                    model_warnings += caught[mark:]
                    del caught[mark:]
            except AudioDecodeError as e:
                return PredictionError(path, str(e))
        for w in model_warnings:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return self._prediction(path, np.concatenate(probs), stream.duration_s, tuple(str(w.message) for w in caught), stream.silent)

    def predict(self, path: str | Path, *, max_duration: float | None = None) -> Prediction:
        """Classify one audio file over its whole length, streamed: memory does not grow with the file's length.

        Raises
        ------
        AudioDecodeError
            The file cannot be decoded, or is longer than ``max_duration`` seconds (the message names it and says why).
        """
        result = self._predict_file(str(path), max_duration)
        if isinstance(result, PredictionError):
            raise AudioDecodeError(result.error)
        return result

    def predict_array(self, y: np.ndarray, sample_rate: int) -> Prediction:
        """Classify a signal: shape (n_samples,) or (n_samples, n_channels), any rate."""
        y = np.asarray(y, dtype=np.float32)
        if y.ndim == 2:
            y = y.mean(axis=1)
        if y.ndim != 1:
            raise ParameterError(f"y must have shape (n_samples,) or (n_samples, n_channels). Got {y.shape} instead.")
        if not np.isfinite(y).all():
            raise AudioDecodeError("signal contains NaN or infinite samples")
        target = self.feature_config.audio.sample_rate
        if sample_rate != target:
            y = soxr.resample(y, sample_rate, target, quality="HQ").astype(np.float32)
        features, duration, silent = _featurize_signal(y, self.input_config)
        return self._prediction(None, self.predict_proba_features(features), duration, silent=silent)

    def _rebuild(self, threads: int = 1) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        """How a worker process builds its own copy of this model: (factory, args, kwargs), picklable.

        ``threads`` is for backends that own their thread pool; torch's is set by the worker."""
        return GenreClassifier, (self.checkpoint,), {"name": self.name}

    def predict_many(
        self, paths: Iterable[str | Path], *, jobs: int | None = None, max_duration: float | None = None
    ) -> Iterator[Prediction | PredictionError]:
        """Classify many files, in input order, in ``jobs`` worker processes that each run decoding, features
        and the model on one thread, so throughput grows with the cores. Unreadable files, and files longer
        than ``max_duration`` seconds, yield a :class:`PredictionError`.

        With one job (or one file) each file streams as in :meth:`predict` in this process; each worker
        streams its files the same way and sends back only their predictions."""
        jobs = jobs or os.cpu_count() or 1
        paths = [str(p) for p in paths]
        if jobs <= 1 or len(paths) <= 1:
            for p in paths:
                yield self._predict_file(p, max_duration)
            return
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=get_context("forkserver"), initializer=_init_worker, initargs=(os.getpid(), self._rebuild())
        ) as pool:
            try:
                pending: deque[Future[Prediction | PredictionError]] = deque()
                for p in paths:
                    pending.append(pool.submit(_predict_in_worker, p, max_duration))
                    if len(pending) >= 4 * jobs:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            except BaseException:  # interrupted, or the caller stopped early (GeneratorExit): do not finish the queue
                stop_pool(pool)
                raise

    def _from_featurized(self, item: _Featurized) -> Prediction | PredictionError:
        if item.error is not None or item.features is None:
            return PredictionError(item.path, item.error or f"{item.path}: no features")
        return self._prediction(item.path, self.predict_proba_features(item.features), item.duration_s, item.warnings, item.silent)

    def describe(self) -> dict[str, Any]:
        """Name, labels, features and recorded training facts: what ``genrekit models`` and ``/v1/models`` show."""
        cfg = self.feature_config
        return {
            "name": self.name,
            "architecture": self.checkpoint.model_name,
            "labels": self.classes_,
            "features": {"kind": cfg.kind, "sample_rate": cfg.audio.sample_rate, "segment_seconds": cfg.audio.segment_seconds},
            **{k: v for k, v in self.checkpoint.metadata.items() if k in _DESCRIBED},
        }


_DESCRIBED = ("description", "training_data", "split", "validation", "calibration", "epochs", "created")


def available_models() -> list[str]:
    """Names of the models shipped inside the package."""
    root = resources.files("genrekit") / "weights"
    return sorted(name for name, file in _SHIPPED.items() if (root / file).is_file())


def load_model(name_or_path: str | Path = DEFAULT_MODEL, *, backend: str = "auto") -> GenreClassifier:
    """Load a shipped model by name, a run folder (its ``model.pt``), or a model file (``.pt``, or ``.onnx``
    from ``genrekit export``).

    Parameters
    ----------
    backend : {"auto", "torch", "onnxruntime"}, default="auto"
        What runs the network: "auto" takes onnxruntime when it is installed and the model is one it runs
        faster (see :func:`genrekit.onnx_backend.with_backend`), else PyTorch. An ``.onnx`` file always
        runs with onnxruntime.

    Raises
    ------
    ModelNotFoundError
        Nothing of that name or path exists; the message lists the shipped models.
    ParameterError
        An unknown backend, or one that cannot run this model here.
    """
    from .onnx_backend import check_backend, load_onnx, with_backend

    check_backend(backend)
    key = str(name_or_path)
    if key in _SHIPPED:
        with resources.as_file(resources.files("genrekit") / "weights" / _SHIPPED[key]) as path:
            if not path.is_file():
                raise ModelNotFoundError(f"Model {key!r} is not shipped in this installation; available models: {', '.join(available_models()) or 'none'}")
            return with_backend(GenreClassifier(load_checkpoint(path), name=key), backend)
    path = Path(name_or_path)
    if path.suffix == ".onnx":
        return load_onnx(path, name=key, backend=backend)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise ModelNotFoundError(
            f"Model {key!r} not found: not a shipped model name, run folder or model file; available models: {', '.join(available_models()) or 'none'}"
        )
    return with_backend(GenreClassifier(load_checkpoint(path), name=key), backend)


def find_audio_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[PredictionError]]:
    """Expand files and folders (recursively, following links to folders) into audio files.

    What cannot be used is returned as errors, each naming its path: paths that do not exist,
    unreadable folders, broken links, link loops, entries named like audio that are not files (a
    folder ``song.mp3/`` holding no audio), and folders that hold no audio at all. Hidden files and
    folders are skipped.
    """
    files: list[Path] = []
    errors: list[PredictionError] = []
    for p in map(Path, paths):
        problem = path_problem(p)
        if problem is None:
            files.append(p)
        elif problem == "a folder, not an audio file":
            found, problems = _walk_folder(p)
            files.extend(found)
            errors.extend(problems)
            if not found:
                errors.append(PredictionError(str(p), f"{p}: no audio files in this folder (extensions: {', '.join(sorted(e[1:] for e in AUDIO_EXTENSIONS))})"))
        else:
            errors.append(PredictionError(str(p), f"{p}: {'no such file or folder' if problem == 'no such file' else problem}"))
    return files, errors


def _walk_folder(root: Path) -> tuple[list[Path], list[PredictionError]]:
    """Audio files under ``root`` in sorted order, and the entries that could not be used."""
    files: list[Path] = []
    errors: list[PredictionError] = []
    seen: set[tuple[int, int]] = set()

    def unreadable(error: OSError) -> None:
        path = error.filename or root
        reason = "permission denied" if isinstance(error, PermissionError) else (error.strerror or type(error).__name__).lower()
        errors.append(PredictionError(str(path), f"{path}: folder not readable ({reason})"))

    for folder, dirs, names in os.walk(root, onerror=unreadable, followlinks=True):
        here = Path(folder)
        info = here.stat()
        if (info.st_dev, info.st_ino) in seen:  # a link back to a folder already searched
            errors.append(PredictionError(str(here), f"{here}: symbolic link loop (a link to a folder searched already)"))
            dirs.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = here / name
            if not is_audio_file(path):
                continue
            problem = path_problem(path)
            if problem is None:
                files.append(path)
            else:
                errors.append(PredictionError(str(path), f"{path}: {problem}"))
        for name in dirs:
            if is_audio_file(here / name) and not any(is_audio_file(Path(f)) for _, _, fs in os.walk(here / name) for f in fs):
                errors.append(PredictionError(str(here / name), f"{here / name}: a folder named like an audio file, holding no audio"))
    return sorted(files), errors
