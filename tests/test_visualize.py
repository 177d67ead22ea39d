"""Pictures and tables a user reads: the spectrogram shows what the model sees, colours agree, compare fits 80 columns."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import soundfile as sf
from conftest import synth_tone
from typer.testing import CliRunner

from genrekit.cli import app
from genrekit.config import FeatureConfig
from genrekit.classifier import load_model
from genrekit.plots.palette import GENRE_COLORS, genre_colors
from genrekit._text import percent
from genrekit.plots.page import write_html_summary
from genrekit.plots.predictions import model_input, plot_spectrogram

runner = CliRunner()


def test_model_input_is_what_each_model_sees(rng: np.random.Generator) -> None:
    shipped = load_model().feature_config
    assert shipped.kind == "musicnn"
    y16 = synth_tone(2, 6.0, 16000, rng)
    image, label = model_input(y16, shipped, whole=True)
    assert image.shape[0] == 96 and abs(image.shape[1] - 6.0 * 16000 / 256) <= 2 and "musicnn" in label
    image, label = model_input(synth_tone(2, 6.0, 22050, rng), FeatureConfig(), whole=True)
    assert image.shape[0] == 128 and label == "dB below the track's loudest bin"
    _, label = model_input(synth_tone(2, 3.0, 22050, rng), FeatureConfig(), whole=False)
    assert label == "dB below the segment's loudest bin"


def test_spectrogram_cli_renders_the_models_input(tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "song.wav"
    sf.write(path, synth_tone(2, 4.0, 22050, rng), 22050)
    shapes: list[tuple[int, ...]] = []
    real = plot_spectrogram

    def record(features: np.ndarray, *args: object, **kwargs: object) -> Path:
        shapes.append(features.shape)
        return real(features, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("genrekit.plots.predictions.plot_spectrogram", record)
    result = runner.invoke(app, ["spectrogram", str(path), "--out", str(tmp_path / "img"), "--model", "default"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 spectrogram image to" in result.output  # not "1 spectrogram images"
    assert shapes[0][0] == 96  # before: the 128-band 22.05 kHz log-mel, whatever --model said


def test_whole_track_colorbar_sits_next_to_the_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gaps: list[float] = []

    def measure(fig: matplotlib.figure.Figure, *args: object, **kwargs: object) -> None:
        image, colorbar = fig.axes[0], fig.axes[1]
        gaps.append((colorbar.get_position().x0 - image.get_position().x1) * fig.get_figwidth())

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", measure)
    config = FeatureConfig()
    plot_spectrogram(np.zeros((128, 6000)), config, tmp_path / "wide.png", label="dB")  # ~2 minutes: the widest image
    assert 0 < gaps[0] < 0.35  # inches; the default pad left over an inch


def test_one_palette_for_pngs_and_pages(tmp_path: Path) -> None:
    from genrekit.classifier import Prediction

    labels = ["blues", "rock", "polka"]
    colors = genre_colors(labels)
    assert colors["rock"] == GENRE_COLORS["rock"] == genre_colors(["rock"])["rock"]  # independent of label order
    assert len(set(colors.values())) == 3
    p = Prediction("a.wav", "rock", {"blues": 0.209, "rock": 0.838, "polka": 0.609}, (), 3.0)
    page = write_html_summary([p], tmp_path / "index.html", model_name="m", plots={}).read_text()
    assert GENRE_COLORS["rock"] in page
    # Bars sit in a fixed-width track, so their widths are proportional to the probability.
    assert "grid-template-columns: 5rem 10rem 3rem" in page and "width:83.8%" in page and "width:60.9%" in page
    app_js = (Path(__file__).parents[1] / "src/genrekit/serve/static/app.js").read_text()
    assert "/palette.json" in app_js and "#3f6fd1" not in app_js  # the page takes the colours from the server


def test_percent_is_one_format() -> None:
    assert [percent(p) for p in (0.375, 0.3749, 0.001, 0.999)] == ["38%", "37%", "<1%", "100%"]


@pytest.fixture
def run_folder(make_dataset: Callable[..., Path], tmp_path: Path) -> Path:
    from genrekit.config import AudioConfig
    from genrekit.datasets.splits import SplitConfig
    from genrekit.datasets.prepare import prepare_store
    from genrekit.training.config import TrainConfig
    from genrekit.training.fit import train

    prepare_store(make_dataset(per_label=4, seconds=3.0), tmp_path / "store", FeatureConfig(audio=AudioConfig(segment_seconds=1.0, hop_seconds=1.0)), jobs=1)
    config = TrainConfig(model="cnn1", epochs=1, batch_size=8, split=SplitConfig(val_fraction=0.25), num_threads=1)
    return train(tmp_path / "store", config, run_dir=tmp_path / "runs" / "cnn1-a-rather-long-run-name").run_dir


def test_compare_fits_80_columns_and_exports(run_folder: Path) -> None:
    table = runner.invoke(app, ["compare", str(run_folder), str(run_folder)], env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert max(len(line) for line in table.output.splitlines()) <= 80
    assert "…" not in table.output and "%" in table.output
    # Headers are whole words on their own lines: before, "split / evaluated on" wrapped as "split /", "evaluate", "d on".
    assert any(line.split()[:4] == ["model", "evaluated", "on", "tracks"] for line in table.output.splitlines() if line.strip()), table.output
    assert "(training)" in table.output
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["compare", str(run_folder), "--format", "csv"]).stdout)))
    records = json.loads(runner.invoke(app, ["compare", str(run_folder), "--format", "json"]).stdout)
    assert rows[0]["run"] == records[0]["run"] == run_folder.name
    assert float(rows[0]["track_accuracy"]) == pytest.approx(records[0]["track_accuracy"])
    bad = runner.invoke(app, ["compare", str(run_folder), "--format", "xml"])
    assert bad.exit_code == 2 and "'--format' option" in bad.output


def test_timeline_titles_mark_uncertain_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genrekit.classifier import Prediction, SegmentPrediction
    from genrekit.plots.predictions import plot_timeline

    titles: list[str] = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: titles.append(fig.axes[0].get_title()))
    segments = (SegmentPrediction(0.0, 3.0, "rock", {"blues": 0.45, "rock": 0.55}),)
    for uncertain in (False, True):
        plot_timeline(Prediction("a.wav", "rock", {"blues": 0.45, "rock": 0.55}, segments, 3.0, uncertain=uncertain), tmp_path / "t.png")
    assert "uncertain" not in titles[0] and titles[1].startswith("a.wav: rock 55%") and "(uncertain" in titles[1]


def test_spectrogram_frequency_axis_is_labeled_in_hz_on_the_mel_scale() -> None:
    from genrekit.plots.predictions import _mel_ticks

    hz, bands = _mel_ticks(FeatureConfig(), 128)
    assert hz[:4] == [0.0, 250.0, 500.0, 1000.0] and hz[-1] == 8000.0  # 22050 Hz: up to 11025 Hz
    assert bands[0] == 0.0 and all(a < b for a, b in zip(bands, bands[1:])) and bands[-1] < 128
    # Below 1 kHz the mel scale is linear: 500 Hz sits halfway to 1 kHz.
    assert abs(bands[2] - bands[3] / 2) < 1e-9


def test_drawing_leaves_the_users_matplotlib_backend_alone(tmp_path: Path) -> None:
    """A notebook's interactive backend must survive genrekit's figures: no matplotlib.use("Agg"), no pyplot."""
    script = f"""
import sys
import matplotlib
matplotlib.use("svg")  # any backend the user chose; svg needs no display
import numpy as np
from pathlib import Path
from genrekit.classifier import Prediction, SegmentPrediction
from genrekit.config import FeatureConfig
from genrekit.plots import metrics, page, predictions

out = Path({str(tmp_path)!r})
row = dict(epoch=1, train_loss=1.0, val_loss=1.1, train_accuracy=0.5, val_accuracy=0.4, train_track_accuracy=0.5, val_track_accuracy=0.4)
metrics.plot_history([row, {{**row, "epoch": 2}}], out / "history.png")
metrics.plot_confusion(np.array([[3, 1], [0, 2]]), ["blues", "rock"], out / "confusion.png")
segments = (SegmentPrediction(0.0, 3.0, "rock", {{"blues": 0.4, "rock": 0.6}}),)
predictions.plot_timeline(Prediction("a.wav", "rock", {{"blues": 0.4, "rock": 0.6}}, segments, 3.0), out / "timeline.png")
predictions.plot_spectrogram(np.zeros((128, 50)), FeatureConfig(), out / "spectrogram.png")
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "False"]
    for name in ("history", "confusion", "timeline", "spectrogram"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
