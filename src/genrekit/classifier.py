"""Classify music with a trained model: files, folders or arrays in, genres with probabilities out.

``load_model()`` returns the model shipped inside the package; ``load_model("runs/x")`` a trained run.
Every prediction decodes the whole file, cuts it into the model's segments, classifies each segment
and averages the segment probabilities (soft voting, the original pipeline's rule). Files stream through
decoding, features (:mod:`genrekit.features.pipeline`) and the model a batch of segments at a time, so memory does
not grow with their length. The network itself runs in the classifier's runner (:mod:`genrekit.runtime`:
PyTorch, onnxruntime, or any registered runtime), which this module only calls. The result types are in
:mod:`genrekit.results`, re-exported here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Generator, Iterable, Sequence
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import soxr

from .engines.local import BoundedPool, default_jobs, open_pool
from .config import FeatureConfig
from .exceptions import AudioDecodeError, Mention, ModelNotFoundError, ParameterError, warning_note
from .features.pipeline import SILENCE_RMS, SILENT_NOTE, FileFeatures, FileResult, featurize_signal, silent_segments
from .results import Prediction, PredictionError, SegmentPrediction
from .runtime import ModelSource, Rebuild, Runner, check_runtime, load_runner
from .runtime.device import check_device
from .tags import Tag, merge_tags

if TYPE_CHECKING:  # PyTorch runs checkpoints only: classifying with the shipped models never imports it
    import torch

    from .checkpoint import Checkpoint
    from .training.fit import TrainResult

__all__ = [
    "DEFAULT_MODEL",
    "SegmentPrediction",
    "Prediction",
    "PredictionError",
    "GenreClassifier",
    "load_model",
    "available_models",
    "SILENCE_RMS",
    "SILENT_NOTE",
    "silent_segments",
]

DEFAULT_MODEL = "default"
# The default: a calibrated linear model over musicnn's penultimate layers and tag scores, chosen by
# scripts/select_default_model.py; zero-shot: the untrained tag mapping, the baseline it must beat.
# Each ships as its PyTorch checkpoint (the reference, what export and --backend torch read) and as the
# ONNX graphs that run it without PyTorch: "auto" takes the first of its graphs that is shipped,
# "onnxruntime" the float32 one (tests/test_export.py checks that each graph was made from its checkpoint).
_SHIPPED = {"default": "default.pt", "zero-shot": "zero-shot.pt"}
_SHIPPED_GRAPHS = {"auto": ("{name}-int8.onnx", "{name}.onnx"), "onnxruntime": ("{name}.onnx",)}


def _mono(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    """A signal of shape (n_samples,) or (n_channels, n_samples) as one mono float32 channel."""
    y = audio.detach().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio)  # a torch.Tensor, without importing torch
    y = y.astype(np.float32, copy=False)
    if y.ndim == 2 and y.shape[0] < y.shape[1]:
        return y.mean(axis=0)
    if y.ndim == 1:
        return y
    if y.ndim == 2:
        raise ParameterError(
            f"The 'audio' parameter must have shape (n_samples,) or (n_channels, n_samples), fewer channels than samples. "
            f"Got {y.shape}: if that is (n_samples, n_channels), as soundfile.read gives, pass audio.T."
        )
    raise ParameterError(f"The 'audio' parameter must have shape (n_samples,) or (n_channels, n_samples). Got {y.shape} instead.")


_worker_model: GenreClassifier | None = None  # the model a predict_many worker process runs (set once per process)


def _load_worker_model(rebuild: tuple[Any, tuple[Any, ...], dict[str, Any]]) -> None:
    """A predict_many worker's own copy of the model (``rebuild``: factory, args, kwargs)."""
    global _worker_model
    factory, args, kwargs = rebuild
    _worker_model = factory(*args, **kwargs)


def _predict_in_worker(path: str, max_duration: float | None) -> Prediction | PredictionError:
    """One file through decoding, features and the model in a worker: only its Prediction travels back."""
    if _worker_model is None:
        raise RuntimeError("predict_many's worker initializer did not run")
    return _worker_model._predict_file(path, max_duration)


class GenreClassifier:
    """A trained genre model with its preprocessing, around the runner that computes its network.

    The classifier decodes, cuts files into the model's segments, featurizes them, skips silence and
    soft-votes; its runner (:class:`genrekit.runtime.Runner`: PyTorch, onnxruntime or any registered
    runtime) turns segment features into probabilities and states the model's labels and features.
    :func:`load_model` builds one; ``GenreClassifier(runner)`` wraps a runner built by hand.

    Parameters
    ----------
    runner : Runner
        What runs the network (:func:`genrekit.runtime.load_runner`, :class:`genrekit.runtime.torch.TorchRunner`, ...).
    name : str, default=""
        How the model was asked for (``default``, a run folder, a file).

    Examples
    --------
    >>> from genrekit import load_model
    >>> model = load_model()                                   # doctest: +SKIP
    >>> result = model.predict("song.mp3")                     # doctest: +SKIP
    >>> result.genre, result.probabilities["rock"]             # doctest: +SKIP
    """

    train_result: TrainResult | None = None
    """The run that fitted this model when :func:`genrekit.train` returned it (``train_result.run_dir`` is
    its folder, what :func:`genrekit.evaluate` reads); None for a model loaded from a file or by name."""

    def __init__(self, runner: Runner, *, name: str = "") -> None:
        self.runner = runner
        self.name = name

    @property
    def classes_(self) -> list[str]:
        return list(self.runner.labels)

    @property
    def backend(self) -> str:
        """The runtime that runs the network: "torch", "onnxruntime" or another registered one (:mod:`genrekit.runtime`)."""
        return self.runner.backend

    @property
    def runtime(self) -> str:
        """What runs the network, in words, with its precision: shown by ``genrekit models``, JSON output and ``/v1/models``."""
        return self.runner.runtime

    @property
    def device(self) -> str:
        """Where the network runs: "cpu", "cuda" or "mps"."""
        return self.runner.device

    @property
    def checkpoint(self) -> Checkpoint:
        """The PyTorch checkpoint the model runs or was exported from (what ``genrekit export`` writes out).

        Raises
        ------
        AttributeError
            The model is an ``.onnx`` file alone, which holds no checkpoint: load the ``model.pt`` it was exported from.
        """
        checkpoint = self.runner.checkpoint
        if checkpoint is None:
            raise AttributeError(f"{self.name or 'this model'}: an ONNX model holds no PyTorch checkpoint; load the model.pt it was exported from")
        return checkpoint

    @property
    def feature_config(self) -> FeatureConfig:
        return self.runner.feature_config

    @property
    def input_config(self) -> FeatureConfig:
        """The features the network reads per segment: :attr:`feature_config`, except for an exported musicnn
        model, whose graph holds the musicnn networks and reads their log-mel patches."""
        return self.runner.input_config

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.runner.metadata)

    @property
    def has_tags(self) -> bool:
        """Whether predictions carry musicnn's tags (:mod:`genrekit.tags`): models over musicnn embeddings do, cnn1/cnn2 not."""
        return self.runner.has_tags

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of segment features, shape (n_segments, n_classes)."""
        return self.runner.segment_outputs(features)[0]

    def segment_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities, shape (n_segments, n_classes), and musicnn's tag scores, shape (n_segments, 100)
        (``None`` for a model without tags), of a batch of segment features laid out as :attr:`input_config` makes them."""
        return self.runner.segment_outputs(features)

    @property
    def uncertain_below(self) -> float:
        """Top probability under which a prediction is flagged ``uncertain`` (0 when the model records none)."""
        return float(self.runner.metadata.get("calibration", {}).get("uncertain_below", 0.0))

    def _prediction(
        self,
        path: str | None,
        probs: np.ndarray,
        duration: float,
        notes: tuple[str, ...] = (),
        silent: np.ndarray | None = None,
        tags: np.ndarray | None = None,
    ) -> Prediction:
        """Soft-vote the probabilities of the segments that hold sound into a Prediction; segment k starts at k * hop.
        ``tags`` (per-segment tag scores, or None) are averaged over the same segments, never re-normalized."""
        probs = probs.astype(np.float64)
        silent = np.zeros(len(probs), dtype=bool) if silent is None else silent
        probs[silent] = 0.0
        labels = self.classes_
        audio = self.feature_config.audio
        segment_tags: list[tuple[Tag, ...] | None] = [None] * len(probs) if tags is None else [() if q else merge_tags(t) for t, q in zip(tags, silent)]
        segments = tuple(
            SegmentPrediction(
                float(s), float(min(s + audio.segment_seconds, duration)), None if quiet else labels[int(p.argmax())], dict(zip(labels, map(float, p))), t
            )
            for s, p, quiet, t in zip(np.arange(len(probs)) * audio.hop_samples / audio.sample_rate, probs, silent, segment_tags)
        )
        if silent.all():
            empty = None if tags is None else ()
            return Prediction(path, None, dict.fromkeys(labels, 0.0), segments, duration, (*notes, SILENT_NOTE), uncertain=True, tags=empty)
        mean = probs[~silent].mean(axis=0)
        mean = mean / mean.sum()
        genre = labels[int(mean.argmax())]
        track_tags = None if tags is None else merge_tags(tags[~silent].astype(np.float64).mean(axis=0))
        return Prediction(
            path, genre, dict(zip(labels, map(float, mean))), segments, duration, notes, uncertain=bool(mean.max() < self.uncertain_below), tags=track_tags
        )

    def _predict_file(self, path: str, max_duration: float | None = None) -> Prediction | PredictionError:
        """:meth:`_stream_file`, with bad audio as a :class:`PredictionError` (what batch work reports and goes on)."""
        try:
            return self._stream_file(path, max_duration)
        except AudioDecodeError as e:
            return PredictionError.from_exception(path, e)

    def _stream_file(self, path: str, max_duration: float | None = None) -> Prediction:
        """Stream ``path`` through decoding, features and the model a batch at a time, keeping only probabilities.

        Warnings raised while decoding become the Prediction's notes; the model's own are re-issued as usual.
        """
        stream = FileFeatures(path, self.input_config, max_duration)
        probs: list[np.ndarray] = []
        tags: list[np.ndarray] = []
        model_warnings: list[warnings.WarningMessage] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for features in stream:
                mark = len(caught)
                p, t = self.segment_outputs(features)
                probs.append(p)
                if t is not None:
                    tags.append(t)
                model_warnings += caught[mark:]
                del caught[mark:]
        for w in model_warnings:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        notes = tuple(warning_note(w.message) for w in caught)
        return self._prediction(path, np.concatenate(probs), stream.duration_s, notes, stream.silent, np.concatenate(tags) if tags else None)

    def predict(
        self, audio: str | os.PathLike[str] | np.ndarray | torch.Tensor, *, sample_rate: int | None = None, max_duration: float | None = None
    ) -> Prediction:
        """Classify one recording over its whole length: a file, or a signal already in memory.

        Parameters
        ----------
        audio : path, ndarray or Tensor
            A file (decoded streamed: memory does not grow with its length), or a signal of shape
            ``(n_samples,)`` or ``(n_channels, n_samples)`` as librosa and torchaudio lay it out; channels
            are averaged.
        sample_rate : int > 0, optional
            The signal's rate (required for arrays, resampled as needed); files carry their own.
        max_duration : float > 0, optional
            Refuse files longer than this many seconds (from the header, before decoding).

        Raises
        ------
        AudioDecodeError
            The file cannot be decoded, or is longer than ``max_duration`` seconds (the message names it
            and says why), or the signal holds non-finite samples or is too short.
        ParameterError
            An array without ``sample_rate``, or of a shape that is not ``(n_samples,)`` or
            ``(n_channels, n_samples)``: a ``(n_samples, n_channels)`` array (more channels than samples)
            is refused rather than guessed; pass its transpose.
        """
        if isinstance(audio, (str, os.PathLike)):
            return self._stream_file(os.fspath(audio), max_duration)
        if sample_rate is None or not sample_rate > 0:
            raise ParameterError(f"The 'sample_rate' parameter must be the signal's rate in Hz (> 0) when audio is an array. Got {sample_rate!r} instead.")
        return self._predict_signal(_mono(audio), int(sample_rate))

    def predict_proba(
        self,
        audio: str | os.PathLike[str] | np.ndarray | torch.Tensor | Sequence[str | os.PathLike[str] | np.ndarray],
        *,
        sample_rate: int | None = None,
        max_duration: float | None = None,
    ) -> np.ndarray:
        """Class probabilities of one recording or a list of them, in scikit-learn's layout.

        Parameters
        ----------
        audio : path, ndarray, Tensor, or a list of paths or arrays
            Each as :meth:`predict` takes it; a single recording gives one row.
        sample_rate, max_duration
            As in :meth:`predict` (``sample_rate`` applies to every array).

        Returns
        -------
        ndarray of shape (n_recordings, n_classes)
            Columns ordered like :attr:`classes_`; each row is the soft vote over the recording's segments
            and sums to 1, or is all zeros for a recording with no sound (its :meth:`predict` has no genre).

        Raises
        ------
        AudioDecodeError, ParameterError
            As :meth:`predict`, for the first recording that fails: one row per recording or none.
        """
        single = isinstance(audio, (str, os.PathLike, np.ndarray)) or hasattr(audio, "detach")
        items: list[Any] = [audio] if single else list(cast("Sequence[Any]", audio))
        rows = [self.predict(a, sample_rate=sample_rate, max_duration=max_duration).probabilities for a in items]
        return np.array([[row[c] for c in self.classes_] for row in rows], dtype=np.float64).reshape(len(rows), len(self.classes_))

    def _predict_signal(self, y: np.ndarray, sample_rate: int) -> Prediction:
        if not np.isfinite(y).all():
            raise AudioDecodeError(None, "signal contains NaN or infinite samples")
        target = self.feature_config.audio.sample_rate
        if sample_rate != target:
            y = soxr.resample(y, sample_rate, target, quality="HQ").astype(np.float32)
        features, duration, silent = featurize_signal(y, self.input_config)
        probs, tags = self.segment_outputs(features)
        return self._prediction(None, probs, duration, silent=silent, tags=tags)

    def _rebuild(self, threads: int = 1) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        """How a worker process builds its own copy of this model: (factory, args, kwargs), picklable.

        ``threads``: the copy's intra-op threads, which each runtime sets its own way (:meth:`genrekit.runtime.Runner.rebuild`)."""
        return _rebuilt, (self.runner.rebuild(threads), self.name), {}

    def predict_many(
        self, paths: Iterable[str | os.PathLike[str]], *, jobs: int | None = None, max_duration: float | None = None
    ) -> Generator[Prediction | PredictionError, None, None]:
        """Classify many files, in input order, in ``jobs`` workers that each run decoding, features and the
        model on one thread, so throughput grows with the cores. Unreadable files, and files longer than
        ``max_duration`` seconds, yield a :class:`PredictionError`.

        ``jobs`` defaults to the cores this process may use. Workers are processes that each load the
        model once and send back only predictions, or threads sharing this model when called from a
        plain script without an ``if __name__ == "__main__":`` guard (which worker processes would run
        again). With one job (or one file) each file streams as in :meth:`predict` in this process."""
        if jobs is not None and jobs < 1:
            raise ParameterError.invalid("jobs", ">= 1", jobs, optional="None for all cores")
        jobs = jobs or default_jobs()
        files = [os.fspath(p) for p in paths]
        start = partial(open_pool, setup=(_load_worker_model, (self._rebuild(),)))
        with BoundedPool[Prediction | PredictionError](min(jobs, len(files)), ordered=True, start=start) as pool:
            task = _predict_in_worker if pool.in_processes else self._predict_file
            for p in files:
                yield from pool.submit(task, p, max_duration)
            yield from pool.drain()

    def predict_featurized(self, item: FileResult) -> Prediction | PredictionError:
        """The prediction of a file whose decoding and features ran elsewhere (:func:`genrekit.features.pipeline.featurize_file`,
        in a Ray task): only the network and the soft vote run here. A file that failed there is its :class:`PredictionError`.

        Parameters
        ----------
        item : FileResult
            The file's segment features, laid out as :attr:`input_config` makes them, with its duration,
            silent segments and decoding warnings (which become the prediction's notes).
        """
        if item.failure is not None or item.features is None:
            return item.failure or PredictionError(item.path, "internal", "no features")
        probs, tags = self.segment_outputs(item.features)
        return self._prediction(item.path, probs, item.duration_s, item.warnings, item.silent, tags)

    def describe(self) -> dict[str, Any]:
        """Name, labels, features and recorded training facts: what ``genrekit models`` and ``/v1/models`` show."""
        cfg = self.feature_config
        return {
            "name": self.name,
            "architecture": self.runner.model_name,
            "labels": self.classes_,
            "features": {"kind": cfg.kind, "sample_rate": cfg.audio.sample_rate, "segment_seconds": cfg.audio.segment_seconds},
            "runtime": self.runtime,
            # The top probability below which results are flagged uncertain; None: the model has no calibrated
            # threshold, so its "uncertain" is always false (the zero-shot baseline, uncalibrated runs).
            "uncertain_below": self.uncertain_below or None,
            "tags": self.has_tags,
            **{k: v for k, v in self.runner.metadata.items() if k in _DESCRIBED},
        }


def _rebuilt(runner: Rebuild, name: str) -> GenreClassifier:
    """A worker's classifier around its own runner, built from :meth:`Runner.rebuild`'s recipe."""
    factory, args, kwargs = runner
    return GenreClassifier(factory(*args, **kwargs), name=name)


_DESCRIBED = ("description", "training_data", "split", "validation", "calibration", "epochs", "created")


def available_models() -> list[str]:
    """Names of the models shipped inside the package."""
    root = resources.files("genrekit") / "weights"
    return sorted(name for name, file in _SHIPPED.items() if (root / file).is_file())


def load_model(
    name_or_path: str | os.PathLike[str] = DEFAULT_MODEL, *, backend: str = "auto", device: str = "auto", threads: int = 1
) -> GenreClassifier:
    """Load a shipped model by name, a run folder (its ``model.pt``), or a model file (``.pt``, or ``.onnx``
    from ``genrekit export``).

    Parameters
    ----------
    backend : {"auto", "torch", "onnxruntime"} or a registered runtime, default="auto"
        What runs the network (:mod:`genrekit.runtime`): "auto" takes onnxruntime when it is installed and
        the model is one it runs faster (:func:`genrekit.runtime.onnx.prefers`), else PyTorch. An ``.onnx``
        file always runs with onnxruntime, and so do the shipped models under "auto" and "onnxruntime"
        (their graphs ship in the package): only "torch", checkpoints and run folders need PyTorch
        (``genrekit[train]``). Runtimes added with :func:`genrekit.runtime.register_runtime` are taken by name.
    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Where the network runs: "auto" takes a CUDA GPU, then MPS, then the CPU, as far as the runtime
        can use them (onnxruntime needs ``onnxruntime-gpu`` for CUDA and has no MPS); see :mod:`genrekit.runtime.device`.
    threads : int >= 1, default=1
        onnxruntime's intra-op threads for one prediction: 1 for batch work, whose workers use the cores
        (``predict_many``); more for a server answering single requests.

    Raises
    ------
    ModelNotFoundError
        Nothing of that name or path exists; the message lists the shipped models.
    ParameterError
        An unknown backend, or one that cannot run this model here, or ``threads`` < 1.
    MissingDependencyError
        PyTorch is needed (``backend="torch"``, a checkpoint) and not installed.
    """
    if threads < 1:
        raise ParameterError.invalid("threads", ">= 1", threads)
    check_runtime(backend)
    check_device(device)
    key = str(name_or_path)
    if key in _SHIPPED:
        weights = resources.files("genrekit") / "weights"
        for graph in _SHIPPED_GRAPHS.get(backend, ()):
            if (weights / graph.format(name=key)).is_file():
                shipped = ModelSource(key, data=(weights / graph.format(name=key)).read_bytes())
                return GenreClassifier(load_runner(shipped, "onnxruntime", device=device, threads=threads), name=key)
        with resources.as_file(weights / _SHIPPED[key]) as path:
            if not path.is_file():
                raise ModelNotFoundError(Mention("model", text="Model"), f" {key!r} is not shipped in this installation; available models: {', '.join(available_models()) or 'none'}")
            return GenreClassifier(load_runner(ModelSource(key, path), backend, device=device, threads=threads), name=key)
    path = Path(name_or_path)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise ModelNotFoundError(f"{path}: no such model file")
    elif path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise ModelNotFoundError(
            Mention("model", text="Model"), f" {key!r} not found: not a shipped model name, run folder or model file; available models: {', '.join(available_models()) or 'none'}"
        )
    return GenreClassifier(load_runner(ModelSource(key, path), backend, device=device, threads=threads), name=key)
