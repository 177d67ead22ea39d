"""Figures for run folders: the training history and confusion matrices.

Drawn on figures of :mod:`genrekit.plots._figure` (no pyplot, no display, matplotlib imported on first use)
in the colours of :mod:`genrekit.plots.palette`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._figure import new_figure, save_figure
from .palette import CURVE_COLORS, MATRIX_CMAP

__all__ = ["plot_history", "plot_confusion"]


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
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig = new_figure(10.5, 8)
    ax_acc, ax_loss = fig.subplots(2, 1, sharex=True)
    ax_acc.plot(epochs, [r["train_accuracy"] for r in rows], "o-", color=CURVE_COLORS["train"], label="train (segment)")
    ax_acc.plot(epochs, [r["val_accuracy"] for r in rows], "o-", color=CURVE_COLORS["validation"], label="validation (segment)")
    ax_acc.plot(epochs, [r["val_track_accuracy"] for r in rows], "s--", color=CURVE_COLORS["validation (track)"], label="validation (track, soft vote)")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_title(f"Accuracy{' — ' + title if title else ''}")
    # Legends sit outside the axes: inside, they covered the validation curves wherever those ran.
    ax_acc.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax_acc.grid(alpha=0.3)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", color=CURVE_COLORS["train"], label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "o-", color=CURVE_COLORS["validation"], label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.set_title("Loss")
    ax_loss.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax_loss.grid(alpha=0.3)
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    save_figure(fig, path)


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
    counts = np.asarray(counts)
    totals = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    n = len(labels)
    size = max(6.0, 0.55 * n + 2)
    fig = new_figure(2 * size + 1, size)
    axes = fig.subplots(1, 2)
    panels = ((axes[0], counts, f"{unit} (counts)", "d"), (axes[1], normalized, "row-normalized (recall per true genre)", ".2f"))
    for ax, matrix, name, fmt in panels:
        image = ax.imshow(matrix, cmap=MATRIX_CMAP, vmin=0, vmax=max(float(matrix.max()), 1e-9))
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
    save_figure(fig, path)
