"""Every colour genrekit draws with: the genre colours of the timeline PNGs, the demo page and the web page,
the curve colours of a run's history and the colour maps of its matrices and spectrograms.

GTZAN's ten genres keep their colour whatever the model's label order; other labels take the
remaining colours by position. The web page fetches the same table from ``/palette.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["GENRE_COLORS", "OTHER_COLORS", "CURVE_COLORS", "MATRIX_CMAP", "SPECTROGRAM_CMAP", "genre_color", "genre_colors"]

# Ten distinct hues, one per GTZAN genre.
GENRE_COLORS: dict[str, str] = {
    "blues": "#3f6fd1",
    "classical": "#c9a227",
    "country": "#e07b39",
    "disco": "#d63c8f",
    "hiphop": "#7b4fd6",
    "jazz": "#1f9e89",
    "metal": "#5c6370",
    "pop": "#ff7aa2",
    "reggae": "#3fa34d",
    "rock": "#d64545",
}
# For labels outside GTZAN, by their position among the model's labels.
OTHER_COLORS: tuple[str, ...] = ("#4e79a7", "#f28e2b", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#bab0ac", "#59a14f", "#e15759", "#ff9da7")

# A run's history: the same series keep the same colour in the accuracy and the loss panel.
CURVE_COLORS: dict[str, str] = {"train": "#1f77b4", "validation": "#ff7f0e", "validation (track)": "#2ca02c"}
MATRIX_CMAP = "Blues"  # confusion matrices: white for none, dark for many
SPECTROGRAM_CMAP = "magma"  # perceptually uniform: loudness reads as brightness


def genre_color(genre: str, labels: Sequence[str]) -> str:
    """The colour of ``genre`` among a model's ``labels``."""
    if genre in GENRE_COLORS:
        return GENRE_COLORS[genre]
    index = list(labels).index(genre) if genre in labels else 0
    return OTHER_COLORS[index % len(OTHER_COLORS)]


def genre_colors(labels: Sequence[str]) -> dict[str, str]:
    """Every label's colour, in label order."""
    return {g: genre_color(g, labels) for g in labels}
