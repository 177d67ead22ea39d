"""The fit loop: from a feature store and a :class:`TrainConfig` to a run folder with a self-describing model.

A run folder holds::

    config.json   store, model, split, hyperparameters, seed, feature config: all needed to rerun
    metrics.csv   one row per epoch: train/val loss and accuracy (segment and track level), lr, seconds
    history.png   accuracy and loss per epoch, train vs validation
    model.pt      the kept model (best validation loss, or last epoch) via save_checkpoint: what `predict` loads
    last.pt       the last epoch's model, optimizer, scheduler and early-stopping state: what --resume continues
    log.txt       a line per event

Every epoch draws its randomness (data order, augmentation, mixup, dropout) from generators seeded
by ``(seed, epoch)``. A run interrupted after epoch k and resumed therefore ends with the same weights
as an uninterrupted one: only the per-epoch seed and the state in ``last.pt`` are needed, not the
draws of earlier epochs. Nothing here prints; progress goes to callbacks.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import __version__
from .._io import LOCK_NAME, atomic_write, exclusive, output_errors
from .augment import AugmentConfig, Augmenter, mixup
from .._params import Constraint, Interval, OneOf, check_params, from_dict
from ..checkpoint import Checkpoint, save_checkpoint
from ..runtime.device import autocast, torch_device
from ..evaluation.metrics import evaluate_predictions, predict_logits, softmax
from ..exceptions import GenrekitError, ParameterError, ResumeError
from ..features import feature_shape
from ..models import build_model
from ..models.musicnn_linear import FITTED_BY_SCRIPT
from ..datasets.splits import LEAKY_LABEL, SplitConfig, make_split, segment_partitions
from ..speedups import keep_freed_memory
from ..datasets.store import FeatureStore, open_store

__all__ = ["TrainConfig", "EpochMetrics", "TrainResult", "new_run_dir", "train", "resume", "run_config"]

EPOCHS = 40
BATCH_SIZE = 64
LEARNING_RATE = 1e-4
METRIC_COLUMNS = (
    "epoch", "train_loss", "train_accuracy", "train_track_accuracy",
    "val_loss", "val_accuracy", "val_track_accuracy", "lr", "seconds",
)
_LAST = "last.pt"
_UNSTARTED = {"config.json", "log.txt", LOCK_NAME}  # all a run killed before its first epoch ended has written

BatchCallback = Callable[[int, int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run besides the data. Defaults are the original's.

    Parameters
    ----------
    model : str, default="cnn2"
        Registered architecture (:func:`genrekit.models.available_models`).
    model_options : dict, default={}
        Keyword options for the model builder.
    split : SplitConfig
        Track-level split (or the original's ``leaky-segments``); training uses ``train`` and
        ``val``; ``test`` is never touched here.
    epochs : int > 0, default=40
    batch_size : int > 0, default=64
    lr : float > 0, default=1e-4
        Adam(W) learning rate.
    weight_decay : float >= 0, default=0
        Decoupled weight decay (AdamW); 0 is exactly the original's Adam.
    label_smoothing : float in [0, 1), default=0
    class_weighting : {"none", "balanced"}, default="none"
        ``balanced`` weights the loss by ``n / (n_classes * count)`` of training segments per class,
        for imbalanced sets such as the dev set.
    lr_schedule : {"none", "cosine", "plateau"}, default="none"
        ``cosine`` anneals to 0 over ``epochs``; ``plateau`` halves the rate after 2 epochs
        without validation-loss improvement.
    patience : int > 0 or None, default=None
        Early stopping: stop after this many epochs without validation-loss improvement.
    keep : {"best", "last"}, default="best"
        What ``model.pt`` holds: the epoch with the lowest validation loss, or the last epoch.
        ``last`` keeps the validation partition out of every decision, so its numbers stay honest.
    seed : int, default=0
        Seeds initialization, data order, augmentation and dropout.
    num_threads : int > 0 or None, default=None
        torch CPU threads; None leaves torch's default.
    precision : {"fp32", "bf16"}, default="fp32"
        ``bf16`` runs the forward pass under bfloat16 autocast (weights, optimizer and loss stay fp32):
        ~1.5x faster steps than fp32 on CPUs with native bf16 (AVX512-BF16, AMX), slower on others.
        Validation accuracy matched fp32 within noise in ``benchmarks/bench_training.py``.
    augment : AugmentConfig
        On-the-fly augmentation (off by default).
    """

    model: str = "cnn2"
    model_options: dict[str, Any] = field(default_factory=dict)
    split: SplitConfig = field(default_factory=SplitConfig)
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    lr: float = LEARNING_RATE
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    class_weighting: Literal["none", "balanced"] = "none"
    lr_schedule: Literal["none", "cosine", "plateau"] = "none"
    patience: int | None = None
    keep: Literal["best", "last"] = "best"
    seed: int = 0
    num_threads: int | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    _constraints: ClassVar[dict[str, Constraint]] = {
        "epochs": Interval(0, None, closed="neither", integer=True),
        "batch_size": Interval(0, None, closed="neither", integer=True),
        "lr": Interval(0, None, closed="neither"),
        "weight_decay": Interval(0, None),
        "label_smoothing": Interval(0, 1),
        "class_weighting": OneOf(("none", "balanced")),
        "lr_schedule": OneOf(("none", "cosine", "plateau")),
        "patience": Interval(1, None, integer=True, optional=True),
        "keep": OneOf(("best", "last")),
        "seed": Interval(integer=True),
        "num_threads": Interval(1, None, integer=True, optional=True),
        "precision": OneOf(("fp32", "bf16")),
    }

    def __post_init__(self) -> None:
        check_params(self, self._constraints)
        if self.model in FITTED_BY_SCRIPT:
            raise ParameterError(
                f"--model {self.model} is not trained by 'genrekit train': it reads the raw musicnn embedding, which "
                "training standardizes. scripts/train_default_model.py fits it; use musicnn-head to train on a musicnn store."
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["split"] = self.split.to_dict()
        data["augment"] = self.augment.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a saved config; unknown keys (nested ones too) are one-line errors naming them."""
        values = dict(data) if isinstance(data, dict) else data
        if isinstance(values, dict) and isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        return from_dict(cls, values, what="training config", nested={"split": SplitConfig})


@dataclass(frozen=True)
class EpochMetrics:
    """One row of ``metrics.csv``. Train metrics are running values over the epoch's (augmented) batches, as Keras reports them."""

    epoch: int
    train_loss: float
    train_accuracy: float
    train_track_accuracy: float
    val_loss: float
    val_accuracy: float
    val_track_accuracy: float
    lr: float
    seconds: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or early-stopped) run gives.

    Attributes
    ----------
    run_dir : Path
    history : tuple of EpochMetrics
    best_epoch : int
        The epoch whose weights ``model.pt`` holds.
    validation : dict
        Validation metrics of that epoch (as in the checkpoint metadata).
    stopped_early : bool
    seconds : float
        Training time over all sessions of the run.
    """

    run_dir: Path
    history: tuple[EpochMetrics, ...]
    best_epoch: int
    validation: dict[str, Any]
    stopped_early: bool
    seconds: float


def new_run_dir(root: str | Path = "runs", name: str | None = None) -> Path:
    """A fresh run folder ``root/name`` (or ``root/<UTC timestamp>``), created now.

    A folder ``name`` that is empty, or holds only what a run killed during its first epoch leaves
    (``config.json``, ``log.txt``), is reused: there is nothing in it to lose.

    Raises
    ------
    ParameterError
        ``name`` exists already (continue it with ``resume`` or choose another name).
    InUseError
        ``name`` is the folder of a run in its first epoch.
    OutputError
        ``root`` cannot be written (read-only, full).
    """
    root = Path(root)
    with output_errors(root):  # a read-only or full disk: one line, not a traceback
        root.mkdir(parents=True, exist_ok=True)
        if name is not None:
            path = root / name
            if path.is_dir() and {p.name for p in path.iterdir()} <= _UNSTARTED:
                with exclusive(path, path / LOCK_NAME, option="--name"):  # not while its run is in its first epoch
                    for leftover in path.iterdir():
                        leftover.unlink()
                return path
            if path.exists():
                raise ParameterError(f"Run folder {path} exists; continue it with --resume {path} or pick another --name.")
            path.mkdir()
            return path
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        for k in range(1000):
            path = root / (stamp if k == 0 else f"{stamp}-{k}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    raise ParameterError(f"Could not create a run folder under {root}")


class _Log:
    """Appends timestamped lines to ``log.txt``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, message: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")


@dataclass
class _Data:
    """The store and the segment indices and integer labels of each partition."""

    store: FeatureStore
    labels: list[str]
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    description: dict[str, Any]
    split_meta: dict[str, Any]


def _load_data(store_path: Path, split_config: SplitConfig) -> _Data:
    store = open_store(store_path)
    labels = store.label_names
    index = {name: i for i, name in enumerate(labels)}
    y = np.array([index[label] for label in store.labels], dtype=np.int64)
    split = make_split(store.tracks, split_config)
    parts = segment_partitions(split, store.track_ids)
    train_idx = np.flatnonzero(parts == "train")
    val_idx = np.flatnonzero(parts == "val")
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ParameterError(
            f"The {split_config.strategy!r} split of {store_path} gives {len(train_idx)} training and {len(val_idx)} validation "
            "segments; training needs both (for random/leaky-segments set val_fraction > 0)."
        )
    roots = {str(t.path.parent.parent) for t in store.tracks}
    description = {
        "store": str(store_path.resolve()),
        "dataset": f"{len(store.tracks)} tracks, {len(labels)} labels from {', '.join(sorted(roots))}",
        "n_tracks": len(store.tracks),
        "n_train_tracks": int(len(np.unique(store.track_ids[train_idx]))),
        "n_val_tracks": int(len(np.unique(store.track_ids[val_idx]))),
        "n_train_segments": int(len(train_idx)),
        "n_val_segments": int(len(val_idx)),
        "feature_shape": list(store.meta["feature_shape"]),
    }
    split_meta: dict[str, Any] = {"protocol": split_config.strategy, "config": split_config.to_dict(), "leaky": split.leaky}
    if split.leaky:
        split_meta["leaky_label"] = LEAKY_LABEL
    if split.notes:
        split_meta["notes"] = list(split.notes)
    return _Data(store, labels, y, train_idx, val_idx, description, split_meta)


def mean_and_scale(total: np.ndarray, total_sq: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standardizing scale from sums of values and of squares over ``count`` values.

    A dimension constant on the training data (musicnn has many units that never fire) gets scale 1, as in
    scikit-learn's StandardScaler: dividing by a ~0 std would turn the smallest change on new audio
    (another decoder, bf16 rounding) into a value of 1e4 or more that swamps the classifier.
    """
    mean = total / count
    variance = total_sq / count - mean**2
    constant = variance <= 1e-10 * np.maximum(mean**2, 1.0)  # zero up to the rounding of the two sums
    return mean, np.where(constant, 1.0, np.sqrt(np.maximum(variance, 0.0)))


def _standardization(data: _Data) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-band mean/std over training segments for ``scaling="standard"`` stores; None otherwise.

    Statistics are reduced over every axis but the first feature axis (mel bands, or embedding
    dimensions), computed in float64 over chunks of the memory-mapped store.
    """
    if data.store.config.scaling != "standard":
        return None, None
    shape = tuple(data.store.meta["feature_shape"])
    axes = (0, *range(2, len(shape) + 1))
    total = np.zeros(shape[0])
    total_sq = np.zeros(shape[0])
    count = 0
    for lo in range(0, len(data.train_idx), 512):
        x = np.asarray(data.store.features[data.train_idx[lo : lo + 512]], dtype=np.float64)
        total += x.sum(axis=axes)
        total_sq += (x**2).sum(axis=axes)
        count += x.size // shape[0]
    mean, std = mean_and_scale(total, total_sq, count)
    view = (shape[0],) + (1,) * (len(shape) - 1)
    return torch.tensor(mean, dtype=torch.float32).reshape(view), torch.tensor(std, dtype=torch.float32).reshape(view)


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    return None


def _write_metrics(path: Path, history: list[EpochMetrics]) -> None:
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.to_dict().items()})


def train(
    store: str | Path,
    config: TrainConfig | None = None,
    *,
    run_dir: str | Path | None = None,
    on_batch: BatchCallback | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    low_memory: bool = False,
    device: str = "auto",
) -> TrainResult:
    """Train a model on a feature store and write a run folder.

    Parameters
    ----------
    store : path
        A store made by :func:`genrekit.datasets.store.prepare_store`.
    config : TrainConfig, optional
        Defaults to the original's (cnn2, Adam 1e-4, batch 64, 40 epochs) on a random 80/20 track split.
    run_dir : path, optional
        An empty or new folder; defaults to ``runs/<UTC timestamp>``.
    on_batch : callable(epoch, batch, n_batches), optional
        Called after every training step (the CLI draws its progress bar with it).
    on_epoch : callable(EpochMetrics), optional
        Called after each epoch, once its files are written.
    low_memory : bool, default=False
        Return each step's freed activations to the system instead of keeping them for the next step:
        the same weights, about 0.6x the peak memory (cnn2 at batch 64: 1.8 instead of 3.0 GB) for
        slower steps (see :func:`genrekit.speedups.keep_freed_memory`).
    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Where the model trains: "auto" takes a CUDA GPU, then MPS, then the CPU; on CUDA the forward
        passes run under bfloat16 (or float16) autocast. Not part of the run's config: a run may resume
        on another device. On the CPU, training is exactly what it was.

    Returns
    -------
    TrainResult

    Raises
    ------
    ParameterError
        Bad configuration, or a split without training or validation segments.
    StoreError
        The store is missing or incomplete.
    InUseError
        Another run holds ``run_dir``.
    OutputError
        The run folder cannot be written (read-only, full): epochs saved so far can be resumed.
    """
    config = config or TrainConfig()
    run = Path(run_dir) if run_dir is not None else new_run_dir()
    with _held(run, "--name"):
        if (run / _LAST).exists() or (run / "model.pt").exists():
            raise ParameterError(f"Run folder {run} already holds a run; continue it with --resume {run} or pick another folder.")
        try:
            return _start(run, Path(store), config, on_batch, on_epoch, low_memory, device)
        except GenrekitError:
            _discard_unstarted(run)
            raise


@contextlib.contextmanager
def _held(run: Path, option: str) -> Iterator[None]:
    """A run's hold on its folder for the whole run: the folder's lock (a second ``train`` or ``--resume``
    of it is refused, naming the first), and a full or read-only disk as a one-line OutputError."""
    with output_errors(run):
        run.mkdir(parents=True, exist_ok=True)
        with exclusive(run, run / LOCK_NAME, option=option):
            yield


def _discard_unstarted(run: Path) -> None:
    """Remove the folder of a run refused before its first epoch ended (a split with too few tracks, a model
    that cannot read the store's features): it holds nothing to lose, and left behind it would only look
    like a run that failed."""
    if run.is_dir() and {p.name for p in run.iterdir()} <= _UNSTARTED:
        for leftover in run.iterdir():
            leftover.unlink()
        run.rmdir()


def _start(
    run: Path, store: Path, config: TrainConfig, on_batch: BatchCallback | None, on_epoch: Callable[[EpochMetrics], None] | None, low_memory: bool,
    device: str = "auto",
) -> TrainResult:
    """Read the store and split, record the run's config, and fit: :func:`train` after its folder checks."""
    data = _load_data(store, config.split)
    run_config = {
        "store": data.description["store"],
        "train_config": config.to_dict(),
        "feature_config": data.store.config.to_dict(),
        "labels": data.labels,
        "data": _data_identity(data),
        "genrekit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (run / "config.json").write_text(json.dumps(run_config, indent=2))
    with contextlib.nullcontext() if low_memory else keep_freed_memory():
        return _fit(run, config, data, None, on_batch, on_epoch, device)


def resume(
    run_dir: str | Path,
    *,
    store: str | Path | None = None,
    epochs: int | None = None,
    on_batch: BatchCallback | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    low_memory: bool = False,
    device: str = "auto",
) -> TrainResult:
    """Continue an interrupted run from its ``last.pt``; ends as an uninterrupted run with the same seed would.

    Parameters
    ----------
    run_dir : path
        A run folder written by :func:`train`.
    store : path, optional
        Where the store is now, if it moved; defaults to the path in ``config.json``.
    epochs : int, optional
        Raise the run's total number of epochs (e.g. to train a finished run further); it may not shrink.
    low_memory, device
        As in :func:`train`.

    A run killed during its first epoch (no ``last.pt`` yet) starts over from epoch 1 with its saved config.

    Raises
    ------
    ResumeError
        The folder holds no run made by :func:`train`, or its ``last.pt`` or ``config.json`` cannot be read,
        or ``store`` holds other tracks, or splits into others, than the run was trained on.
    ParameterError
        ``epochs`` is below the run's.
    InUseError
        Another process is training in ``run_dir``.
    """
    run = Path(run_dir)
    saved, config = _read_run(run)
    if epochs is not None and epochs < config.epochs:
        raise ParameterError(f"The 'epochs' parameter of a resumed run may only grow: {run} was configured for {config.epochs}. Got {epochs} instead.")
    with _held(run, "run"):
        data = _load_data(Path(store) if store is not None else Path(saved["store"]), config.split)
        if data.store.config.to_dict() != saved["feature_config"]:
            raise ParameterError(f"The store's feature config differs from the one {run} was trained with; pass the original store.")
        _check_same_data(run, saved, data)
        if epochs is not None and epochs != config.epochs:  # recorded only once the resume is accepted
            config = TrainConfig.from_dict({**config.to_dict(), "epochs": epochs})
            saved["train_config"] = config.to_dict()
            (run / "config.json").write_text(json.dumps(saved, indent=2))
        state = _load_state(run) if (run / _LAST).is_file() else None
        with contextlib.nullcontext() if low_memory else keep_freed_memory():
            return _fit(run, config, data, state, on_batch, on_epoch, device)


def _data_identity(data: _Data) -> dict[str, Any]:
    """What a resumed run must find again: the store's tracks (id, label, audio content) and the split of them."""
    tracks = hashlib.blake2b(digest_size=16)
    for t in data.store.tracks:
        tracks.update(f"{t.track_id}\0{t.label}\0{t.content_hash}\n".encode())
    train_ids, val_ids = (np.unique(data.store.track_ids[idx]) for idx in (data.train_idx, data.val_idx))
    split = hashlib.blake2b("\0".join(train_ids).encode() + b"\1" + "\0".join(val_ids).encode(), digest_size=16)
    return {
        "tracks": tracks.hexdigest(), "n_tracks": len(data.store.tracks),
        "split": split.hexdigest(), "n_train_tracks": len(train_ids), "n_val_tracks": len(val_ids),
    }


def _check_same_data(run: Path, saved: dict[str, Any], data: _Data) -> None:
    """Refuse a store with other tracks or another split than the run's: epochs trained on other data would be
    appended to its metrics as if they continued it. (Runs made before genrekit recorded this are not checked.)"""
    before, now = saved.get("data"), _data_identity(data)
    if not isinstance(before, dict):
        return
    store = data.description["store"]
    if before.get("tracks") != now["tracks"]:
        raise ResumeError(
            f"{store} holds other tracks ({now['n_tracks']}) than {run} was trained on ({before.get('n_tracks')}); pass the run's store"
        )
    if before.get("split") != now["split"]:
        raise ResumeError(
            f"The split of {store} gives other tracks ({now['n_train_tracks']} training, {now['n_val_tracks']} validation) than {run}'s "
            f"({before.get('n_train_tracks')} training, {before.get('n_val_tracks')} validation); pass the run's store"
        )


def run_config(run_dir: str | Path) -> TrainConfig:
    """The training configuration a run folder was made with (its ``config.json``).

    Raises
    ------
    ResumeError
        The folder holds no run made by :func:`train`, or its ``config.json`` cannot be read.
    """
    return _read_run(Path(run_dir))[1]


def _read_run(run: Path) -> tuple[dict[str, Any], TrainConfig]:
    """A run folder's saved ``config.json`` and the TrainConfig in it."""
    if not (run / "config.json").is_file():
        raise ResumeError(f"{run}: not a resumable run folder (no config.json: not made by genrekit train)")
    try:
        saved = json.loads((run / "config.json").read_text())
        return saved, TrainConfig.from_dict(saved["train_config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ResumeError(f"{run}/config.json: unreadable ({type(e).__name__}: {e}); start a new run instead") from e


def _load_state(run: Path) -> dict[str, Any]:
    """The training state in ``run/last.pt``; a damaged file is a one-line error, not a traceback."""
    try:
        state = torch.load(run / _LAST, map_location="cpu", weights_only=True)
        missing = {"model", "optimizer", "history", "best_loss", "best_epoch", "bad_epochs", "seconds", "stopped_early", "validation"} - set(state)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a damaged file
        raise ResumeError(
            f"{run / _LAST}: damaged, the run cannot continue from it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}). "
            f"Delete it to train {run} again from epoch 1 with --resume, or start a new run."
        ) from e
    if missing:
        raise ResumeError(f"{run / _LAST}: not a genrekit training state (missing {', '.join(sorted(missing))})")
    return state


@dataclass
class _RunState:
    """What a run carries from epoch to epoch, and what ``last.pt`` saves of it besides the weights."""

    history: list[EpochMetrics] = field(default_factory=list)
    best_loss: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    seconds: float = 0.0  # training time before this session
    stopped_early: bool = False
    validation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_saved(cls, state: dict[str, Any]) -> _RunState:
        return cls(
            [EpochMetrics(**row) for row in state["history"]], state["best_loss"], state["best_epoch"], state["bad_epochs"],
            state["seconds"], state["stopped_early"], state["validation"],
        )

    def saved(self, seconds: float) -> dict[str, Any]:
        return {
            "history": [h.to_dict() for h in self.history], "best_loss": self.best_loss, "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs, "seconds": seconds, "stopped_early": self.stopped_early, "validation": self.validation,
        }


def _class_weight(config: TrainConfig, data: _Data, n_classes: int) -> torch.Tensor | None:
    """Inverse-frequency weights of the training segments' classes (``class_weighting="balanced"``), else None."""
    if config.class_weighting != "balanced":
        return None
    counts = np.bincount(data.y[data.train_idx], minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def _log_start(log: _Log, config: TrainConfig, data: _Data) -> None:
    log(
        f"train {config.model} on {data.description['store']} ({data.description['dataset']}), split {config.split.strategy}: "
        f"{data.description['n_train_tracks']} train / {data.description['n_val_tracks']} val tracks, "
        f"{len(data.train_idx)} / {len(data.val_idx)} segments" + (f" — {LEAKY_LABEL}" if data.split_meta["leaky"] else "")
    )
    for note in data.split_meta.get("notes", []):
        log(f"split note: {note}")


@dataclass
class _Trainer:
    """The model, its optimizer and what every step needs; :meth:`train_epoch` runs one epoch's steps."""

    config: TrainConfig
    data: _Data
    model: nn.Module
    optimizer: torch.optim.Optimizer
    mean: torch.Tensor | None
    std: torch.Tensor | None
    augmenter: Augmenter | None
    class_weight: torch.Tensor | None
    on_batch: BatchCallback | None
    device: torch.device

    def train_epoch(self, epoch: int, train_probs: np.ndarray) -> float:
        """One epoch of steps in the epoch's seeded order; fills ``train_probs`` and returns the mean loss."""
        config, data = self.config, self.data
        features, y_all = data.store.features, torch.from_numpy(data.y)
        n_batches = max(1, -(-len(data.train_idx) // config.batch_size))
        rng = _epoch_rng(config.seed, epoch)
        torch.manual_seed(int(rng.integers(2**62)))
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64)
        for b, chunk in enumerate(np.array_split(rng.permutation(data.train_idx), n_batches)):
            idx = np.sort(chunk)
            x = torch.from_numpy(np.asarray(features[idx], dtype=np.float32))
            y = y_all[idx]
            if self.augmenter is not None:
                x = self.augmenter(x, rng)
            if self.mean is not None and self.std is not None:
                x = (x - self.mean) / self.std
            x, y_a, y_b, lam = mixup(x, y, rng, alpha=config.augment.mixup_alpha, prob=config.augment.mixup_prob)
            x, y_a, y_b = x.to(self.device), y_a.to(self.device), y_b.to(self.device)  # no-ops on the CPU
            with autocast(self.device), torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16" and self.device.type == "cpu"):
                logits = self.model(x).float()
            loss = F.cross_entropy(logits, y_a, weight=self.class_weight, label_smoothing=config.label_smoothing)
            if lam < 1.0:
                loss = lam * loss + (1 - lam) * F.cross_entropy(logits, y_b, weight=self.class_weight, label_smoothing=config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach().cpu() * len(idx)
            train_probs[idx] = torch.softmax(logits.detach(), dim=1).cpu().numpy()
            if self.on_batch is not None:
                self.on_batch(epoch, b + 1, n_batches)
        return float(loss_sum) / len(data.train_idx)


def _fit(
    run: Path,
    config: TrainConfig,
    data: _Data,
    state: dict[str, Any] | None,
    on_batch: BatchCallback | None,
    on_epoch: Callable[[EpochMetrics], None] | None,
    device: str = "auto",
) -> TrainResult:
    log = _Log(run / "log.txt")
    target = torch_device(device)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    shape = feature_shape(data.store.config)
    n_classes = len(data.labels)
    torch.manual_seed(config.seed)
    model = build_model(config.model, shape, n_classes, **config.model_options)
    # channels_last lets oneDNN pick its fast convolution kernels on CPU (about 1.8x for cnn2); a no-op for models without 4-D weights.
    model = model.to(target, memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch stubs omit memory_format
    # fused: one kernel over all parameters instead of ~10 passes each (the 1.8 M-weight dense layer dominates).
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=target.type in ("cpu", "cuda"))
    scheduler = _scheduler(config, optimizer)
    mean, std = _standardization(data)
    augmenter = Augmenter(config.augment, data.store.config) if config.augment.spectral else None
    class_weight = _class_weight(config, data, n_classes)
    trainer = _Trainer(config, data, model, optimizer, mean, std, augmenter, None if class_weight is None else class_weight.to(target), on_batch, target)

    progress = _RunState()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        progress = _RunState.from_saved(state)
        log(f"resume after epoch {len(progress.history)} of {config.epochs}")
    else:
        _log_start(log, config, data)
    if target.type != "cpu":
        log(f"device: {target.type} (forward passes under autocast)")

    y_all = torch.from_numpy(data.y)
    train_probs = np.zeros((len(data.y), n_classes), dtype=np.float32)
    session_start = time.perf_counter()
    for epoch in range(len(progress.history) + 1, config.epochs + 1):
        if progress.stopped_early:
            break
        t0 = time.perf_counter()
        train_loss = trainer.train_epoch(epoch, train_probs)

        val_logits = predict_logits(model, data.store.features, data.val_idx, mean=mean, std=std)
        val_loss = float(F.cross_entropy(torch.from_numpy(val_logits), y_all[data.val_idx]))
        val_eval = evaluate_predictions(softmax(val_logits), data.y[data.val_idx], data.store.track_ids[data.val_idx], data.labels)
        train_eval = _train_accuracy(train_probs, data)
        lr = optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_loss)
        elif scheduler is not None:
            scheduler.step()
        metrics = EpochMetrics(
            epoch=epoch, train_loss=train_loss, train_accuracy=train_eval[0],
            train_track_accuracy=train_eval[1], val_loss=val_loss, val_accuracy=val_eval.segment_accuracy,
            val_track_accuracy=val_eval.track_accuracy, lr=lr, seconds=time.perf_counter() - t0,
        )
        progress.history.append(metrics)
        improved = val_loss < progress.best_loss
        if improved:
            progress.best_loss, progress.bad_epochs = val_loss, 0
        else:
            progress.bad_epochs += 1
        seconds = progress.seconds + time.perf_counter() - session_start
        if config.keep == "last" or improved:
            progress.best_epoch, progress.validation = epoch, val_eval.headline()
            _save_model(run / "model.pt", model, config, data, mean, std, progress.validation, epoch, progress.best_epoch, seconds)
        progress.stopped_early = config.patience is not None and progress.bad_epochs >= config.patience and epoch < config.epochs
        _save_state(run, model, optimizer, scheduler, progress, seconds)
        _write_metrics(run / "metrics.csv", progress.history)
        _plot(run, progress.history, config, data)
        log(
            f"epoch {epoch}/{config.epochs}: train loss {metrics.train_loss:.4f} acc {metrics.train_accuracy:.3f}, "
            f"val loss {val_loss:.4f} acc {metrics.val_accuracy:.3f} track {metrics.val_track_accuracy:.3f}, "
            f"lr {lr:.3g}, {metrics.seconds:.1f} s{' (kept)' if progress.best_epoch == epoch else ''}"
        )
        if progress.stopped_early:
            log(f"early stop: validation loss has not improved for {config.patience} epochs (best epoch {progress.best_epoch})")
        if on_epoch is not None:
            on_epoch(metrics)

    total = progress.seconds + time.perf_counter() - session_start
    log(f"done: {len(progress.history)} epochs, model.pt holds epoch {progress.best_epoch}, {total:.0f} s of training")
    return TrainResult(run, tuple(progress.history), progress.best_epoch, progress.validation, progress.stopped_early, total)


def _save_state(run: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, progress: _RunState, seconds: float) -> None:
    """``last.pt``, written whole or not at all: what ``--resume`` continues from."""
    with atomic_write(run / _LAST) as f:
        torch.save(
            {
                "model": _state_dict(model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                **progress.saved(seconds),
            },
            f,
        )


def _train_accuracy(train_probs: np.ndarray, data: _Data) -> tuple[float, float]:
    """Segment and track (soft vote) accuracy of this epoch's running training predictions."""
    probs = train_probs[data.train_idx]
    y = data.y[data.train_idx]
    segment = float((probs.argmax(axis=1) == y).mean())
    track_ids = data.store.track_ids[data.train_idx]
    _, inverse = np.unique(track_ids, return_inverse=True)
    sums = np.zeros((inverse.max() + 1, probs.shape[1]))
    np.add.at(sums, inverse, probs)
    track_y = np.zeros(len(sums), dtype=np.int64)
    track_y[inverse] = y
    return segment, float((sums.argmax(axis=1) == track_y).mean())


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _save_model(
    path: Path,
    model: nn.Module,
    config: TrainConfig,
    data: _Data,
    mean: torch.Tensor | None,
    std: torch.Tensor | None,
    validation: dict[str, Any],
    epochs: int,
    best_epoch: int,
    seconds: float,
) -> None:
    protocol = data.split_meta["protocol"] + (", LEAKY" if data.split_meta["leaky"] else "")
    metadata = {
        "description": f"{config.model} trained {epochs} epochs on {data.description['dataset']} ({protocol} split)",
        "training_data": data.description,
        "split": data.split_meta,
        "validation": validation,
        "epochs": epochs,
        "best_epoch": best_epoch,
        "keep": config.keep,
        "train_seconds": round(seconds, 1),
        "train_config": config.to_dict(),
        "run": path.parent.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "genrekit_version": __version__,
    }
    checkpoint = Checkpoint(
        model_name=config.model,
        model_options=dict(config.model_options),
        state_dict=_state_dict(model),
        labels=list(data.labels),
        feature_config=data.store.config,
        mean=mean,
        std=std,
        metadata=metadata,
    )
    save_checkpoint(checkpoint, path)


def _plot(run: Path, history: list[EpochMetrics], config: TrainConfig, data: _Data) -> None:
    from ..plots.metrics import plot_history

    title = f"{config.model}, split {config.split.strategy}" + (" (LEAKY)" if data.split_meta["leaky"] else "")
    plot_history([h.to_dict() for h in history], run / "history.png", title=title)
