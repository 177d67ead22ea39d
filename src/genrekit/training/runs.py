"""Run folders: what a training run writes, reads back and continues from.

A run folder holds::

    config.json   store, model, split, hyperparameters, seed, feature config: all needed to rerun
    metrics.csv   one row per epoch (:class:`EpochMetrics`): train/val loss and accuracy (segment and track level), lr, seconds
    history.png   accuracy and loss per epoch, train vs validation
    model.pt      the kept model (best validation loss, or last epoch) via save_checkpoint: what `predict` loads
    last.pt       the last epoch's model, optimizer, scheduler and early-stopping state: what a resume continues
    log.txt       a line per event

Here are the folder's life (created, held by its lock, discarded when refused before its first epoch),
its records (``metrics.csv``, ``log.txt``, ``last.pt``) and the checks a resume makes before it continues
(same config, same tracks, same split). The loop that fills it is :mod:`genrekit.training.fit`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._io import LOCK_NAME, atomic_write, exclusive, output_errors
from ..datasets.store import FeatureStore
from ..exceptions import Mention, ParameterError, ResumeError
from .config import TrainConfig

__all__ = ["METRIC_COLUMNS", "EpochMetrics", "new_run_dir", "run_config"]

METRIC_COLUMNS = (
    "epoch", "train_loss", "train_accuracy", "train_track_accuracy",
    "val_loss", "val_accuracy", "val_track_accuracy", "lr", "seconds",
)
LAST_STATE = "last.pt"  # what a resume continues from
_UNSTARTED = {"config.json", "log.txt", LOCK_NAME}  # all a run killed before its first epoch ended has written


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
                with exclusive(path, path / LOCK_NAME, parameter="name"):  # not while its run is in its first epoch
                    for leftover in path.iterdir():
                        leftover.unlink()
                return path
            if path.exists():
                raise ParameterError(f"Run folder {path} exists; continue it with ", resume_mention(path), " or pick another ", Mention("name"), ".")
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


def resume_mention(run: Path) -> Mention:
    """How an error says to continue ``run``: ``resume('runs/x')`` to a library caller, ``--resume runs/x`` on the command line."""
    return Mention("resume", str(run), text=f"resume({str(run)!r})")


class RunLog:
    """Appends timestamped lines to ``log.txt``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, message: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")


def write_metrics(path: Path, history: list[EpochMetrics]) -> None:
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.to_dict().items()})


@contextlib.contextmanager
def held(run: Path, parameter: str) -> Iterator[None]:
    """A run's hold on its folder for the whole run: the folder's lock (a second ``train`` or ``--resume``
    of it is refused, naming the first), and a full or read-only disk as a one-line OutputError."""
    with output_errors(run):
        run.mkdir(parents=True, exist_ok=True)
        with exclusive(run, run / LOCK_NAME, parameter=parameter):
            yield


def discard_unstarted(run: Path) -> None:
    """Remove the folder of a run refused before its first epoch ended (a split with too few tracks, a model
    that cannot read the store's features): it holds nothing to lose, and left behind it would only look
    like a run that failed."""
    if run.is_dir() and {p.name for p in run.iterdir()} <= _UNSTARTED:
        for leftover in run.iterdir():
            leftover.unlink()
        run.rmdir()


def data_identity(store: FeatureStore, train_idx: np.ndarray, val_idx: np.ndarray) -> dict[str, Any]:
    """What a resumed run must find again: the store's tracks (id, label, audio content) and the split of them
    into the training segments ``train_idx`` and validation segments ``val_idx``."""
    tracks = hashlib.blake2b(digest_size=16)
    for t in store.tracks:
        tracks.update(f"{t.track_id}\0{t.label}\0{t.content_hash}\n".encode())
    train_ids, val_ids = (np.unique(store.track_ids[idx]) for idx in (train_idx, val_idx))
    split = hashlib.blake2b("\0".join(train_ids).encode() + b"\1" + "\0".join(val_ids).encode(), digest_size=16)
    return {
        "tracks": tracks.hexdigest(), "n_tracks": len(store.tracks),
        "split": split.hexdigest(), "n_train_tracks": len(train_ids), "n_val_tracks": len(val_ids),
    }


def check_same_data(run: Path, saved: dict[str, Any], store: str, now: dict[str, Any]) -> None:
    """Refuse a store with other tracks or another split than the run's: epochs trained on other data would be
    appended to its metrics as if they continued it. ``now`` is :func:`data_identity` of ``store`` as it is now.
    (Runs made before genrekit recorded this are not checked.)"""
    before = saved.get("data")
    if not isinstance(before, dict):
        return
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
    return read_run(Path(run_dir))[1]


def read_run(run: Path) -> tuple[dict[str, Any], TrainConfig]:
    """A run folder's saved ``config.json`` and the TrainConfig in it."""
    if not (run / "config.json").is_file():
        raise ResumeError(f"{run}: not a resumable run folder (no config.json: not made by genrekit train)")
    try:
        saved = json.loads((run / "config.json").read_text())
        return saved, TrainConfig.from_dict(saved["train_config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ResumeError(f"{run}/config.json: unreadable ({type(e).__name__}: {e}); start a new run instead") from e


def load_state(run: Path) -> dict[str, Any]:
    """The training state in ``run/last.pt``; a damaged file is a one-line error, not a traceback."""
    try:
        state = torch.load(run / LAST_STATE, map_location="cpu", weights_only=True)
        missing = {"model", "optimizer", "history", "best_loss", "best_epoch", "bad_epochs", "seconds", "stopped_early", "validation"} - set(state)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a damaged file
        raise ResumeError(
            f"{run / LAST_STATE}: damaged, the run cannot continue from it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}). "
            f"Delete it to train {run} again from epoch 1 with ", resume_mention(run), ", or start a new run."
        ) from e
    if missing:
        raise ResumeError(f"{run / LAST_STATE}: not a genrekit training state (missing {', '.join(sorted(missing))})")
    return state


@dataclass
class RunState:
    """What a run carries from epoch to epoch, and what ``last.pt`` saves of it besides the weights."""

    history: list[EpochMetrics] = field(default_factory=list)
    best_loss: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    seconds: float = 0.0  # training time before this session
    stopped_early: bool = False
    validation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_saved(cls, state: dict[str, Any]) -> RunState:
        return cls(
            [EpochMetrics(**row) for row in state["history"]], state["best_loss"], state["best_epoch"], state["bad_epochs"],
            state["seconds"], state["stopped_early"], state["validation"],
        )

    def saved(self, seconds: float) -> dict[str, Any]:
        return {
            "history": [h.to_dict() for h in self.history], "best_loss": self.best_loss, "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs, "seconds": seconds, "stopped_early": self.stopped_early, "validation": self.validation,
        }


def save_state(run: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, progress: RunState, seconds: float) -> None:
    """``last.pt``, written whole or not at all: what ``--resume`` continues from."""
    with atomic_write(run / LAST_STATE) as f:
        torch.save(
            {
                "model": cpu_state_dict(model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                **progress.saved(seconds),
            },
            f,
        )


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
