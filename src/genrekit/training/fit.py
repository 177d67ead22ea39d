"""The fit loop: from a feature store and a :class:`~genrekit.training.config.TrainConfig` to a run folder
(:mod:`genrekit.training.runs`) with a self-describing model.

Every epoch draws its randomness (data order, augmentation, mixup, dropout) from generators seeded
by ``(seed, epoch)``. A run interrupted after epoch k and resumed therefore ends with the same weights
as an uninterrupted one: only the per-epoch seed and the state in ``last.pt`` are needed, not the
draws of earlier epochs. Nothing here prints; progress goes to callbacks.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._version import __version__
from ..checkpoint import Checkpoint, save_checkpoint
from ..datasets.splits import LEAKY_LABEL, SplitConfig, make_split, segment_partitions
from ..datasets.store import FeatureStore, open_store
from ..evaluation.metrics import evaluate_predictions, predict_logits, softmax
from ..exceptions import GenrekitError, Mention, ParameterError
from ..features import feature_shape
from ..models import build_model
from ..runtime.device import autocast, torch_device
from ..speedups import keep_freed_memory
from .augment import Augmenter, mixup
from .config import TrainConfig
from .runs import (
    LAST_STATE,
    EpochMetrics,
    RunLog,
    RunState,
    check_same_data,
    cpu_state_dict,
    data_identity,
    discard_unstarted,
    held,
    load_state,
    new_run_dir,
    read_run,
    resume_mention,
    save_state,
    write_metrics,
)

__all__ = ["TrainResult", "train", "resume", "mean_and_scale"]

BatchCallback = Callable[[int, int, int], None]


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
        A store made by :func:`genrekit.datasets.prepare.prepare_store`.
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
    with held(run, "name"):
        if (run / LAST_STATE).exists() or (run / "model.pt").exists():
            raise ParameterError(f"Run folder {run} already holds a run; continue it with ", resume_mention(run), " or pick another folder.")
        try:
            return _start(run, Path(store), config, on_batch, on_epoch, low_memory, device)
        except GenrekitError:
            discard_unstarted(run)
            raise


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
        "data": data_identity(data.store, data.train_idx, data.val_idx),
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
    saved, config = read_run(run)
    if epochs is not None and epochs < config.epochs:
        raise ParameterError(Mention("epochs", epochs), f" would shrink the run: {run} was configured for {config.epochs} epochs, and a resumed run's epochs may only grow.")
    with held(run, "run"):
        data = _load_data(Path(store) if store is not None else Path(saved["store"]), config.split)
        if data.store.config.to_dict() != saved["feature_config"]:
            raise ParameterError(f"The store's feature config differs from the one {run} was trained with; pass the original store.")
        check_same_data(run, saved, data.description["store"], data_identity(data.store, data.train_idx, data.val_idx))
        if epochs is not None and epochs != config.epochs:  # recorded only once the resume is accepted
            config = TrainConfig.from_dict({**config.to_dict(), "epochs": epochs})
            saved["train_config"] = config.to_dict()
            (run / "config.json").write_text(json.dumps(saved, indent=2))
        state = load_state(run) if (run / LAST_STATE).is_file() else None
        with contextlib.nullcontext() if low_memory else keep_freed_memory():
            return _fit(run, config, data, state, on_batch, on_epoch, device)


def _class_weight(config: TrainConfig, data: _Data, n_classes: int) -> torch.Tensor | None:
    """Inverse-frequency weights of the training segments' classes (``class_weighting="balanced"``), else None."""
    if config.class_weighting != "balanced":
        return None
    counts = np.bincount(data.y[data.train_idx], minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def _log_start(log: RunLog, config: TrainConfig, data: _Data) -> None:
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
    log = RunLog(run / "log.txt")
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

    progress = RunState()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        progress = RunState.from_saved(state)
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
        save_state(run, model, optimizer, scheduler, progress, seconds)
        write_metrics(run / "metrics.csv", progress.history)
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
        state_dict=cpu_state_dict(model),
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
