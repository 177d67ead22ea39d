"""The one place genrekit makes a matplotlib figure: the object API on an Agg canvas, never pyplot.

pyplot keeps a global figure registry and ``matplotlib.use("Agg")`` switches the backend for the whole
process: a notebook user who draws a genrekit figure would lose their interactive backend. A
:class:`~matplotlib.figure.Figure` with its own :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`
needs neither a display nor any global state, and is freed like any object once saved. matplotlib is
imported on first use, so classifying never pays for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["new_figure", "save_figure"]


def new_figure(width: float, height: float, *, dpi: float = 100) -> Figure:
    """An empty ``width`` x ``height`` inch figure drawn by its own Agg canvas (no pyplot, no backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Lay ``figure`` out tightly and write it to ``path`` (a PNG at the figure's dpi); returns the path."""
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path
