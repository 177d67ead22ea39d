"""Figures for run folders: the training history and confusion matrices.

matplotlib is imported lazily with the non-interactive Agg backend, so training on a headless
machine never needs a display and importing genrekit stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_history", "plot_confusion"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(rows: Sequence[dict[str, float]], path: str | Path, *, title: str = "") -> None:
    """Accuracy and loss per epoch, train vs validation (the original's figure), plus track-level accuracy.

    Parameters
    ----------
    rows : sequence of dict
        One dict per epoch with keys ``epoch``, ``train_loss``, ``val_loss``, ``train_accuracy``,
        ``val_accuracy``, ``train_track_accuracy``, ``val_track_accuracy`` (as in ``metrics.csv``).
    path : path
        PNG file to write.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig, (ax_acc, ax_loss) = plt.subplots(2, 1, figsize=(10.5, 8), sharex=True)
    ax_acc.plot(epochs, [r["train_accuracy"] for r in rows], "o-", label="train (segment)")
    ax_acc.plot(epochs, [r["val_accuracy"] for r in rows], "o-", label="validation (segment)")
    ax_acc.plot(epochs, [r["val_track_accuracy"] for r in rows], "s--", label="validation (track, soft vote)")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_title(f"Accuracy{' — ' + title if title else ''}")
    # Legends sit outside the axes: inside, they covered the validation curves wherever those ran.
    ax_acc.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax_acc.grid(alpha=0.3)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "o-", label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.set_title("Loss")
    ax_loss.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax_loss.grid(alpha=0.3)
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(counts: np.ndarray, labels: Sequence[str], path: str | Path, *, title: str = "", unit: str = "tracks") -> None:
    """Confusion matrix as counts of ``unit`` (tracks or segments) and row-normalized (recall per true genre), side by side.

    Parameters
    ----------
    counts : ndarray of shape (n_classes, n_classes)
        Rows are true labels, columns predictions.
    labels : sequence of str
        Genre names in row/column order.
    path : path
        PNG file to write.
    """
    plt = _pyplot()
    counts = np.asarray(counts)
    totals = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    n = len(labels)
    size = max(6.0, 0.55 * n + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    panels = ((axes[0], counts, f"{unit} (counts)", "d"), (axes[1], normalized, "row-normalized (recall per true genre)", ".2f"))
    for ax, matrix, name, fmt in panels:
        image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(float(matrix.max()), 1e-9))
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("predicted genre")
        ax.set_ylabel("true genre")
        ax.set_title(f"{title + ' — ' if title else ''}{name}")
        threshold = matrix.max() / 2 if matrix.max() > 0 else 1
        for i in range(n):
            for j in range(n):
                ax.text(j, i, format(matrix[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
