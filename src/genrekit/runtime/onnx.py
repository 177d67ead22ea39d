"""The "onnxruntime" runtime: exported ``.onnx`` graphs, or checkpoints exported on loading, run by onnxruntime.

:class:`OnnxRunner` is the :class:`~genrekit.runtime.Runner` a classifier holds: decoding, segmenting, the
silence rule, soft voting and the worker pool are the classifier's, the same for every runtime. Its
:attr:`~OnnxRunner.input_config` is what the graph reads: the checkpoint's features, or for a model over musicnn
embeddings ``kind="musicnn-patches"`` (the log-mel patches), since the exported graph holds both musicnn
networks (:mod:`genrekit.runtime.export`).

Why: on one thread the shipped musicnn model runs ~3x faster in onnxruntime than in eager PyTorch
(benchmarks/bench_onnx.py): onnxruntime folds the batch norms into the convolutions and runs them on
blocked layouts, where eager PyTorch spends its time in layout changes and elementwise ops.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import FeatureConfig
from ..exceptions import CheckpointError, Mention, ParameterError
from ..model_metadata import decode_metadata_props, validate_model_metadata
from ..tags import tag_names
from .base import ModelSource, Rebuild
from .graph import GRAPH_FORMAT, INPUT_MUSICNN_LOGMEL, TAGS_OUTPUT

if TYPE_CHECKING:
    from ..checkpoint import Checkpoint

__all__ = ["AUTO_ONNX", "OnnxRunner", "onnxruntime_available", "checkpoint_digest", "cache_dir", "prefers", "load"]

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


def _session(model: bytes | str, threads: int, device: str = "auto") -> Any:
    import onnxruntime as ort

    from .device import onnx_providers

    options = ort.SessionOptions()
    # Threads set explicitly (onnxruntime's default is every core of the host, a container's quota
    # aside): one per session for predict, which runs one session per worker process; the server's share
    # of the usable CPUs per request thread. No spinning: its threads would otherwise busy-wait between
    # requests, which come in bursts, and between a file's segments while the next one is decoded.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # No memory pattern: planning one block for a run's every tensor held ~16 MB more at the peak of a
    # one-segment musicnn run (134 vs 118 MB) and saved no time.
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    providers = onnx_providers(device)
    if providers != ["CPUExecutionProvider"]:
        return ort.InferenceSession(model, options, providers=providers)
    graph = model if isinstance(model, bytes) else Path(model).read_bytes()
    cached = _optimized_path(graph, ort.__version__)
    if cached.is_file():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(os.fspath(cached), options, providers=providers)
        except Exception:  # a damaged cache file: optimized again below
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        options.optimized_model_filepath = os.fspath(tmp)
        options.log_severity_level = 3  # its note that the file suits this machine only: the cache key says so
        session = ort.InferenceSession(graph, options, providers=providers)
        tmp.replace(cached)
        return session
    except Exception:  # an unwritable cache only costs the optimization next time (a bad graph fails again below)
        options.optimized_model_filepath = ""
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return ort.InferenceSession(graph, options, providers=providers)


@lru_cache(maxsize=1)
def _cpu() -> str:
    """This machine's architecture and CPU flags (read once: /proc/cpuinfo of a many-core machine is large)."""
    import platform

    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {flags}"


def _optimized_path(graph: bytes, ort_version: str) -> Path:
    """Where onnxruntime's optimized form of ``graph`` for this CPU is cached (:func:`cache_dir`).

    Optimizing the shipped int8 graph takes ~60-100 ms of every session; loading the optimized form with
    optimizations off takes ~25-35 ms and computes the same probabilities bit for bit
    (tests/test_export.py). Its blocked layouts are specific to the CPU's instruction sets, so the key holds
    the onnxruntime version and the CPU flags besides the graph."""
    key = hashlib.blake2b(graph, digest_size=16)
    key.update(f"{ort_version} {_cpu()}".encode())
    return cache_dir() / "ort" / f"{key.hexdigest()}.onnx"


class OnnxRunner:
    """An exported graph run by onnxruntime: the :class:`~genrekit.runtime.Runner` of the "onnxruntime" runtime.

    Parameters
    ----------
    model : bytes or str
        A serialized ONNX model written by :func:`genrekit.runtime.export.onnx_bytes`, or its path.
    name : str
        How the model was asked for: error messages name it when ``model`` is bytes.
    threads : int, default=1
        onnxruntime intra-op threads.
    checkpoint : Checkpoint, optional
        The checkpoint ``model`` was exported from: kept as :attr:`checkpoint` (weights, standardization),
        as the torch runtime has it, and its facts (labels, metadata) are the runner's. Without it they
        are read from the file's metadata.
    device : {"auto", "cpu", "cuda"}, default="auto"
        "auto" runs on a CUDA GPU when ``onnxruntime-gpu`` is installed, else on the CPU (:mod:`genrekit.runtime.device`).

    Attributes
    ----------
    metadata_props : dict
        The file's ``genrekit.*`` metadata, JSON-decoded: labels, feature config, input, and for shipped
        graphs ``source`` (:func:`checkpoint_digest`) and ``quantization``.

    Raises
    ------
    CheckpointError
        The file is not an ONNX model, or one without genrekit's metadata.
    """

    backend = "onnxruntime"

    def __init__(self, model: bytes | str, *, name: str = "", threads: int = 1, checkpoint: Checkpoint | None = None, device: str = "auto") -> None:
        self._source = model
        self._threads = threads
        self._device_name = device
        self.checkpoint = checkpoint
        source = model if isinstance(model, str) else name
        try:
            self._session = _session(model, threads, device)
        except ParameterError:
            raise
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise CheckpointError(f"{source}: not an ONNX model onnxruntime can load ({str(e).splitlines()[0]})") from e
        meta = decode_metadata_props(self._session.get_modelmeta().custom_metadata_map, source)
        self.metadata_props = meta
        missing = {"labels", "feature_config", "input"} - set(meta)
        if missing:
            raise CheckpointError(f"{source}: an ONNX model without genrekit metadata (missing {', '.join(sorted(missing))}); export it with genrekit export")
        outputs = self._session.get_outputs()[0].shape
        labels, config = validate_model_metadata(meta["labels"], meta["feature_config"], outputs[-1] if outputs else None, source, facts=meta.get("metadata", {}))
        self._input_config = replace(config, kind="musicnn-patches") if meta["input"] == INPUT_MUSICNN_LOGMEL else config
        if checkpoint is None:
            self._facts: tuple[str, list[str], FeatureConfig, Mapping[str, Any]] = (str(meta.get("model", "")), labels, config, dict(meta.get("metadata", {})))
        else:
            self._facts = (checkpoint.model_name, list(checkpoint.labels), checkpoint.feature_config, checkpoint.metadata)
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]  # probabilities[, tags]

    @property
    def runtime(self) -> str:
        quantization = self.metadata_props.get("quantization")
        where = " on CUDA" if self.device == "cuda" else ""
        return f"onnxruntime{where}, {quantization}" if quantization else f"onnxruntime{where}, float32"

    @property
    def device(self) -> str:
        return "cuda" if self._session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    @property
    def model_name(self) -> str:
        return self._facts[0]

    @property
    def labels(self) -> list[str]:
        return list(self._facts[1])

    @property
    def feature_config(self) -> FeatureConfig:
        """The features the model was trained on: for a model over musicnn embeddings, ``kind="musicnn"``."""
        return self._facts[2]

    @property
    def input_config(self) -> FeatureConfig:
        """What the graph reads: :attr:`feature_config`, or for a model over musicnn embeddings
        ``kind="musicnn-patches"`` (the log-mel patches), the graph holding both musicnn networks."""
        return self._input_config

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self._facts[3]

    @property
    def has_tags(self) -> bool:
        return TAGS_OUTPUT in self._outputs

    def rebuild(self, threads: int = 1) -> Rebuild:
        """(OnnxRunner, the graph, options): a worker opens its own session with ``threads`` threads."""
        return OnnxRunner, (self._source,), {"threads": threads, "checkpoint": self.checkpoint, "device": self._device_name}

    def segment_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities, shape (n_segments, n_classes), and the graph's tag scores (its ``tags`` output,
        shape (n_segments, 100); ``None`` for a graph without) of a batch of graph inputs.

        musicnn graphs run one segment at a time: a segment's largest maps (204 x 187 x 59 floats, 9 MB)
        then stay in cache, and onnxruntime's arena holds one segment's, not a batch's. For a 30 s track
        that is 0.224 vs 0.246 s and 133 vs 694 MB peak RSS (the shipped int8 graph; batches of 10).
        """
        x = np.ascontiguousarray(features, dtype=np.float32)
        if not len(x):
            return np.empty((0, len(self._facts[1])), dtype=np.float32), np.empty((0, len(tag_names())), dtype=np.float32) if self.has_tags else None
        step = 1 if self._input_config.kind == "musicnn-patches" else len(x)
        runs = [self._session.run(self._outputs, {self._input: x[i : i + step]}) for i in range(0, len(x), step)]
        return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs]) if self.has_tags else None


def prefers(source: ModelSource) -> bool:
    """Whether "auto" runs ``source`` with onnxruntime: an ONNX graph always; a checkpoint of an architecture in
    :data:`AUTO_ONNX`, exported on loading, when onnxruntime is installed."""
    if source.is_onnx:
        return True
    return onnxruntime_available() and source.checkpoint().model_name in AUTO_ONNX


def load(source: ModelSource, *, device: str = "auto", threads: int = 1) -> OnnxRunner:
    """The "onnxruntime" runtime's loader: an ONNX graph as it is, or a checkpoint exported in memory (the
    float32 export: the same probabilities as PyTorch within 1e-5; cached, see :func:`cache_dir`).

    Raises
    ------
    ParameterError
        onnxruntime is not installed.
    CheckpointError
        Not an ONNX model, or one without genrekit's metadata; a damaged checkpoint.
    """
    if source.data is not None:
        graph: bytes | str = source.data
    elif source.path is not None and source.is_onnx:
        if not onnxruntime_available():
            raise ParameterError(f"{source.path}: running an ONNX model needs onnxruntime (pip install onnxruntime)")
        graph = os.fspath(source.path)
    else:
        checkpoint = source.checkpoint()
        if not onnxruntime_available():
            raise ParameterError(Mention("backend", "onnxruntime"), " needs the onnxruntime package (pip install onnxruntime)")
        return OnnxRunner(_exported(checkpoint), name=source.name, threads=threads, checkpoint=checkpoint, device=device)
    return OnnxRunner(graph, name=source.name, threads=threads, device=device)


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

    from .._version import __version__

    key = json.dumps([__version__, GRAPH_FORMAT, torch.__version__, checkpoint_digest(checkpoint), checkpoint.metadata], sort_keys=True, default=str)
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _exported(checkpoint: Any) -> bytes:
    """:func:`genrekit.runtime.export.onnx_bytes` of ``checkpoint``, kept in :func:`cache_dir`: tracing the shipped model
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
