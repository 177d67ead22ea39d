"""Pictures of what the model sees and says: log-mel spectrogram images and genre-probability timelines.

Drawn on figures of :mod:`genrekit.plots._figure` (no pyplot, no display, matplotlib imported on first use)
in the colours of :mod:`genrekit.plots.palette`; the HTML page that shows them is :mod:`genrekit.plots.page`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._text import percent
from ..config import FeatureConfig
from ..results import PredictionError
from ._figure import new_figure, save_figure
from .palette import SPECTROGRAM_CMAP, genre_colors

if TYPE_CHECKING:
    from ..results import Prediction

__all__ = ["write_spectrograms", "plot_timeline", "plot_spectrogram", "safe_stem"]


def safe_stem(path: str | Path) -> str:
    """A file-name-safe stem for output files derived from an input path."""
    stem = Path(path).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "track"


def plot_timeline(prediction: Prediction, out: str | Path) -> Path:
    """Stacked-area chart of every genre's probability over time (one PNG)."""
    labels = list(prediction.probabilities)
    segs = prediction.segments
    probs = np.array([[s.probabilities[g] for g in labels] for s in segs])
    # Step-shaped areas: each segment holds its probabilities from its start to its end.
    times = np.repeat([s.start_s for s in segs], 2)
    times[1::2] = [s.end_s for s in segs]
    fig = new_figure(10, 4)
    ax = fig.subplots()
    ax.stackplot(times, np.repeat(probs, 2, axis=0).T, labels=labels, colors=list(genre_colors(labels).values()), alpha=0.9)
    ax.set_xlim(times[0], times[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("genre probability")
    top = ", ".join(f"{g} {percent(p)}" for g, p in prediction.top(3)) or "silent: no genre"
    # An uncertain answer says so where the eye lands first, as the table and the pages do.
    flag = " (uncertain: not clearly one of the genres)" if prediction.uncertain and prediction.genre is not None else ""
    ax.set_title(f"{Path(prediction.path or 'signal').name}: {top}{flag}")
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], names[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return save_figure(fig, out)


def model_input(y: np.ndarray, config: FeatureConfig, *, whole: bool) -> tuple[np.ndarray, str]:
    """What a model with ``config`` looks at for signal ``y``; see :func:`genrekit.features.logmel.model_input`."""
    from ..features import model_input as _model_input

    return _model_input(y, config, whole=whole)


def write_spectrograms(
    files: Sequence[Path], out: Path, config: FeatureConfig, *, per_segment: bool = False
) -> tuple[int, list[PredictionError]]:
    """Images of what a model with ``config`` sees, one per file (or per segment) in ``out``.

    Returns the number of images written and, for each file that could not be decoded, its failure.
    """
    from .._io import output_errors
    from ..audio import load_audio, segment_audio
    from ..exceptions import AudioDecodeError, GenrekitError

    with output_errors(out):  # a file in the way, or a read-only place: an OutputError naming it
        out.mkdir(parents=True, exist_ok=True)
    failed: list[PredictionError] = []
    written = 0
    for path in files:
        try:
            y = load_audio(path, sample_rate=config.audio.sample_rate)
            if per_segment:
                segs, starts = segment_audio(y, config.audio)
                for i, (seg, start) in enumerate(zip(segs, starts)):
                    image, label = model_input(seg, config, whole=False)
                    end = start + config.audio.segment_seconds
                    plot_spectrogram(image, config, out / f"{safe_stem(path)}_seg{i:03d}.png", title=f"{path.name} {start:.0f}-{end:.0f} s",
                                     start_s=float(start), label=label)
                    written += 1
            else:
                image, label = model_input(y, config, whole=True)
                plot_spectrogram(image, config, out / f"{safe_stem(path)}.png", title=path.name, label=label)
                written += 1
        except AudioDecodeError as e:
            failed.append(PredictionError.from_exception(str(path), e))
        except GenrekitError as e:  # a file the model's input cannot be drawn from
            failed.append(PredictionError(str(path), "internal", str(e)))
    return written, failed


def plot_spectrogram(
    features: np.ndarray, config: FeatureConfig, out: str | Path, *, title: str = "", start_s: float = 0.0, label: str = "dB"
) -> Path:
    """Image of a mel spectrogram (n_mels, frames) with time and mel-frequency axes labeled, and a colorbar saying ``label``.

    The rows are drawn evenly spaced, as the mel bands are on the mel scale, and the frequency axis is
    labeled in Hz where those bands lie (librosa's ``specshow(y_axis="mel")`` picture, without librosa).
    """
    width = max(6.0, min(24.0, features.shape[1] / 60))
    fig = new_figure(width, 4)
    ax = fig.subplots()
    seconds = config.hop_length / config.audio.sample_rate
    times = start_s + (np.arange(features.shape[1] + 1) - 0.5) * seconds  # frame k is centered at k * hop
    img = ax.pcolormesh(times, np.arange(features.shape[0] + 1), features, cmap=SPECTROGRAM_CMAP, shading="flat", rasterized=True)
    ticks_hz, ticks_band = _mel_ticks(config, features.shape[0])
    ax.set_yticks(ticks_band, [f"{hz / 1000:g}k" if hz >= 1000 else f"{hz:g}" for hz in ticks_hz])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel scale)")
    ax.set_title(title)
    # A fixed 0.1-inch pad: the default is a fraction of the axes, over an inch on a wide whole-track image.
    fig.colorbar(img, ax=ax, label=label, pad=0.1 / width, fraction=0.6 / width)
    return save_figure(fig, out)


def _mel_ticks(config: FeatureConfig, n_mels: int) -> tuple[list[float], list[float]]:
    """Round frequencies (0, 250, 500 Hz, 1, 2, 4 ... kHz) and where they fall on the band axis of ``n_mels`` mel bands."""
    from ..features.logmel import _hz_to_mel

    f_max = config.f_max or config.audio.sample_rate / 2
    low, high = _hz_to_mel(np.array([config.f_min, f_max], dtype=np.float64))
    hz = [float(config.f_min), *(250.0 * 2**k for k in range(8) if config.f_min < 250.0 * 2**k <= f_max)]
    bands = (_hz_to_mel(np.array(hz)) - low) / (high - low) * n_mels
    return hz, bands.tolist()
