"""Run genrekit models with onnxruntime: exported ``.onnx`` files, or checkpoints exported on loading.

:class:`OnnxClassifier` is a :class:`~genrekit.inference.GenreClassifier` whose network is an
onnxruntime session: decoding, segmenting, the silence rule, soft voting and the worker pool are the
same code. Its :attr:`feature_config` is what the graph reads: the checkpoint's features, or for a model
over musicnn embeddings ``kind="musicnn-patches"`` (the log-mel patches), since the exported graph holds
both musicnn networks (:mod:`genrekit.export`).

Why: on one thread the shipped musicnn model runs ~3x faster in onnxruntime than in eager PyTorch
(benchmarks/bench_onnx.py): onnxruntime folds the batch norms into the convolutions and runs them on
blocked layouts, where eager PyTorch spends its time in layout changes and elementwise ops.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from .config import FeatureConfig
from .exceptions import CheckpointError, ModelNotFoundError, ParameterError, words
from .export import GRAPH_FORMAT, INPUT_MUSICNN_LOGMEL, TAGS_OUTPUT, read_metadata
from .inference import GenreClassifier
from .tags import tag_names

__all__ = ["BACKENDS", "OnnxModel", "OnnxClassifier", "onnxruntime_available", "check_backend", "checkpoint_digest", "load_onnx", "with_backend"]

BACKENDS = ("auto", "torch", "onnxruntime")
# Architectures "auto" runs with onnxruntime. musicnn models: 0.31-0.32 s vs 0.85-0.90 s a 30 s track on one
# thread (benchmarks/bench_onnx.py). cnn1/cnn2 stay on their folded oneDNN path: onnxruntime's network time is
# 9.2 vs 12.1 ms (cnn1) and 10.9 vs 12.6 ms (cnn2) CPU per 30 s track, 2-3 ms saved of a 33-41 ms predict,
# while a fresh process pays more (importing onnxruntime ~30 ms, hashing the checkpoint for the export cache,
# a session ~5 ms; the first load traces the export) than a one-file predict saves.
AUTO_ONNX = frozenset({"musicnn-linear", "musicnn-zero-shot", "musicnn-head"})


def onnxruntime_available() -> bool:
    """Whether the ``onnxruntime`` package can be imported here."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class OnnxModel:
    """What :class:`GenreClassifier` reads from a checkpoint, taken from an ONNX file's metadata.

    The graph applies the standardization itself, so :meth:`normalize` is the identity.
    """

    model_name: str
    labels: list[str]
    feature_config: FeatureConfig
    metadata: dict[str, Any] = field(default_factory=dict)
    mean: None = None  # standardization is in the graph
    std: None = None

    def normalize(self, features: Any) -> Any:
        return features


def _session(model: bytes | str, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per session by default: predict runs one session per worker process, the server one per request thread.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxClassifier(GenreClassifier):
    """A genre model run by onnxruntime.

    Parameters
    ----------
    model : bytes or str
        A serialized ONNX model written by :func:`genrekit.export.onnx_bytes`, or its path.
    name : str
        How the model was asked for.
    threads : int, default=1
        onnxruntime intra-op threads.
    checkpoint : Checkpoint, optional
        The checkpoint ``model`` was exported from: kept as :attr:`checkpoint` (weights, standardization),
        as a PyTorch-backed classifier has it. Without it, :attr:`checkpoint` is an :class:`OnnxModel`
        read from the file's metadata.

    Raises
    ------
    CheckpointError
        The file is not an ONNX model, or one without genrekit's metadata.
    """

    def __init__(self, model: bytes | str, *, name: str = "", threads: int = 1, checkpoint: Any = None) -> None:
        self._source = model
        self._threads = threads
        try:
            self._session = _session(model, threads)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            source = model if isinstance(model, str) else name
            raise CheckpointError(f"{source}: not an ONNX model onnxruntime can load ({str(e).splitlines()[0]})") from e
        meta = read_metadata(self._session.get_modelmeta().custom_metadata_map)
        self.metadata_props = meta
        missing = {"labels", "feature_config", "input"} - set(meta)
        if missing:
            raise CheckpointError(f"{model if isinstance(model, str) else name}: an ONNX model without genrekit metadata (missing {', '.join(sorted(missing))}); export it with genrekit export")
        config = FeatureConfig.from_dict(meta["feature_config"])
        self._input_config = replace(config, kind="musicnn-patches") if meta["input"] == INPUT_MUSICNN_LOGMEL else config
        self.checkpoint = checkpoint if checkpoint is not None else OnnxModel(str(meta.get("model", "")), list(meta["labels"]), config, dict(meta.get("metadata", {})))  # type: ignore[assignment]
        self.name = name
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]  # probabilities[, tags]

    @property
    def backend(self) -> str:
        return "onnxruntime"

    @property
    def runtime(self) -> str:
        quantization = self.metadata_props.get("quantization")
        return f"onnxruntime, {quantization}" if quantization else "onnxruntime, float32"

    @property
    def input_config(self) -> FeatureConfig:
        return self._input_config

    @property
    def has_tags(self) -> bool:
        return TAGS_OUTPUT in self._outputs

    def _rebuild(self, threads: int = 1) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        checkpoint = None if isinstance(self.checkpoint, OnnxModel) else self.checkpoint
        return OnnxClassifier, (self._source,), {"name": self.name, "threads": threads, "checkpoint": checkpoint}

    def segment_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities, shape (n_segments, n_classes), and the graph's tag scores (its ``tags`` output,
        shape (n_segments, 100); ``None`` for a graph without) of a batch of graph inputs.

        musicnn graphs run one segment at a time: a segment's largest maps (204 x 187 x 59 floats, 9 MB)
        then stay in cache, and onnxruntime's arena holds one segment's, not a batch's. For a 30 s track
        that is 0.224 vs 0.246 s and 133 vs 694 MB peak RSS (the shipped int8 graph; batches of 10).
        """
        x = np.ascontiguousarray(features, dtype=np.float32)
        if not len(x):
            return np.empty((0, len(self.classes_)), dtype=np.float32), np.empty((0, len(tag_names())), dtype=np.float32) if self.has_tags else None
        step = 1 if self._input_config.kind == "musicnn-patches" else len(x)
        runs = [self._session.run(self._outputs, {self._input: x[i : i + step]}) for i in range(0, len(x), step)]
        return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs]) if self.has_tags else None


def check_backend(backend: str) -> None:
    """Raise :class:`ParameterError` for a backend name not in :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ParameterError(f"The 'backend' parameter must be one of {words(BACKENDS)}. Got {backend!r} instead.")


def load_onnx(path: str | Path, *, name: str | None = None, backend: str = "auto", threads: int = 1) -> OnnxClassifier:
    """An exported model file (``genrekit export``) as a classifier; no run folder or PyTorch model needed.

    Raises
    ------
    ModelNotFoundError
        No such file.
    CheckpointError
        Not an ONNX model, or one without genrekit's metadata.
    ParameterError
        ``backend="torch"`` (an ONNX file runs with onnxruntime only), or onnxruntime is not installed.
    """
    path = Path(path)
    check_backend(backend)
    if backend == "torch":
        raise ParameterError(f"{path}: an ONNX model runs with onnxruntime; use --backend onnxruntime or auto, or the model.pt it was exported from")
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such model file")
    if not onnxruntime_available():
        raise ParameterError(f"{path}: running an ONNX model needs onnxruntime (pip install onnxruntime)")
    return OnnxClassifier(os.fspath(path), name=str(path) if name is None else name, threads=threads)


def with_backend(classifier: GenreClassifier, backend: str, *, threads: int = 1, quantized: Traversable | None = None) -> GenreClassifier:
    """``classifier`` itself (PyTorch) or its checkpoint exported in memory and run by onnxruntime.

    "auto" takes onnxruntime for the architectures in :data:`AUTO_ONNX` when it is installed, and there
    the ``quantized`` graph (the shipped int8 one, ``scripts/quantize_default_model.py``) when it exists
    and was made from this very checkpoint (its ``genrekit.source`` is :func:`checkpoint_digest`): the
    fastest path, within the agreement with float32 that reports/quantization.md measures. "onnxruntime"
    runs the float32 export, the same probabilities as PyTorch within 1e-5.

    Raises
    ------
    ParameterError
        ``backend="onnxruntime"`` and onnxruntime is not installed.
    """
    check_backend(backend)
    use_onnx = backend == "onnxruntime" or (backend == "auto" and classifier.checkpoint.model_name in AUTO_ONNX and onnxruntime_available())
    if not use_onnx:
        return classifier
    if not onnxruntime_available():
        raise ParameterError("--backend onnxruntime (backend='onnxruntime') needs the onnxruntime package (pip install onnxruntime)")
    if backend == "auto" and quantized is not None and quantized.is_file():
        int8 = OnnxClassifier(quantized.read_bytes(), name=classifier.name, threads=threads, checkpoint=classifier.checkpoint)
        if int8.metadata_props.get("source") == checkpoint_digest(classifier.checkpoint):
            return int8
        warnings.warn(f"{quantized}: made from another checkpoint than {classifier.name!r}; running float32 (rerun scripts/quantize_default_model.py)", stacklevel=2)
    return OnnxClassifier(_exported(classifier.checkpoint), name=classifier.name, threads=threads, checkpoint=classifier.checkpoint)


def cache_dir() -> Path:
    """Where exported graphs are kept between runs: ``$GENREKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/genrekit`` or ``~/.cache/genrekit``."""
    if "GENREKIT_CACHE_DIR" in os.environ:
        return Path(os.environ["GENREKIT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genrekit"


def checkpoint_digest(checkpoint: Any) -> str:
    """What a graph exported from ``checkpoint`` computes: its architecture, options, labels, features,
    weights and standardization and, for musicnn models, the networks' weights. Not its metadata or the
    versions of genrekit and torch: a shipped int8 graph (``genrekit.source``) stays valid across releases
    as long as these are unchanged."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([checkpoint.model_name, checkpoint.model_options, list(checkpoint.labels), checkpoint.feature_config.to_dict()],
                        sort_keys=True, default=str).encode())
    tensors = {**checkpoint.state_dict, "__mean": checkpoint.mean, "__std": checkpoint.std}
    for key in sorted(tensors):
        if tensors[key] is not None:
            h.update(key.encode())
            h.update(tensors[key].detach().cpu().contiguous().numpy().tobytes())
    if checkpoint.feature_config.kind == "musicnn":
        root = resources.files("genrekit") / "weights"
        for name in sorted(p.name for p in root.iterdir() if p.name.startswith("musicnn_")):
            h.update((root / name).read_bytes())
    return h.hexdigest()


def _digest(checkpoint: Any) -> str:
    """What the exported graph in the cache depends on: :func:`checkpoint_digest`, the checkpoint's metadata
    (it travels in the file), the versions of genrekit and torch (the exporter) and the graph's format."""
    import torch

    from . import __version__

    key = json.dumps([__version__, GRAPH_FORMAT, torch.__version__, checkpoint_digest(checkpoint), checkpoint.metadata], sort_keys=True, default=str)
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _exported(checkpoint: Any) -> bytes:
    """:func:`genrekit.export.onnx_bytes` of ``checkpoint``, kept in :func:`cache_dir`: tracing the shipped model
    costs ~0.7 s, reading the file ~5 ms. The cache is best effort: an unwritable folder only costs the export."""
    from .export import onnx_bytes

    path = cache_dir() / "onnx" / f"{checkpoint.model_name}-{_digest(checkpoint)}.onnx"
    try:
        return path.read_bytes()
    except OSError:
        pass
    model = onnx_bytes(checkpoint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(model)
        tmp.replace(path)
    except OSError:
        pass
    return model
