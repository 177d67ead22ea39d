"""musicnn's tags beside the genre (:mod:`genrekit.tags`): the names and the duplicate map, the scores of every
runtime against the original musicnn's, and the same numbers in every output (Python, JSON, CSV, results file,
table, service)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from genrekit import load_model
from genrekit.cli import app
from genrekit.classifier import GenreClassifier
from genrekit.library.formats import read_results, result_row
from genrekit.library.run import classify_library
from genrekit.models.musicnn import MODELS, load_musicnn
from genrekit.serve import create_app
from genrekit.tags import DEFAULT_TAGS, DUPLICATES, SOURCES, Tag, display_names, format_tags, merge_tags, tag_names, uncertain_hint
from genrekit.library.writers import get_writer

from conftest import synth_tone, write_random_model

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"
# The port's own tolerance against the original's tag scores (tests/test_musicnn.py): its float32 log-mel.
PORT_ATOL = 1e-3
# The shipped int8 front end moves tag scores a little more (reports/quantization.md measures its genres).
INT8_ATOL = 0.03


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def default() -> GenreClassifier:
    return load_model("default", backend="onnxruntime")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9 s of synthesized tones: three segments."""
    rng = np.random.default_rng(0)
    y = np.concatenate([synth_tone(i, 3.0, 22050, rng) for i in (3, 5, 7)])
    path = tmp_path_factory.mktemp("clip") / "tones.wav"
    sf.write(path, y, 22050)
    return path


def test_tag_names_are_the_taggers_own_and_need_no_torch() -> None:
    assert SOURCES == MODELS
    assert tag_names() == tuple((m, t) for m in MODELS for t in load_musicnn(m).tags)
    assert len(tag_names()) == 100
    code = "import sys; from genrekit.tags import tag_names; tag_names(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_duplicate_map_names_real_tags_and_covers_every_word_both_taggers_know() -> None:
    pairs = set(tag_names())
    grouped = [pair for group in DUPLICATES.values() for pair in group]
    assert set(grouped) <= pairs and len(grouped) == len(set(grouped))
    msd, mtt = ({t.lower() for s, t in pairs if s == source} for source in SOURCES)
    for word in msd & mtt:
        assert word in DUPLICATES and {(s, w.lower()) for s, w in DUPLICATES[word]} >= {(SOURCES[0], word), (SOURCES[1], word)}
    assert display_names()[tag_names().index(("MTT_musicnn", "female vocal"))] == "female vocalists"


def test_merge_keeps_the_stronger_score_with_its_source_and_never_renormalizes(rng: np.random.Generator) -> None:
    scores = rng.uniform(0, 1, 100)
    tags = merge_tags(scores)
    names = [t.tag for t in tags]
    assert len(names) == len(set(names)) == len(set(display_names()))
    assert [t.score for t in tags] == sorted((t.score for t in tags), reverse=True)
    female = {pair: scores[tag_names().index(pair)] for pair in DUPLICATES["female vocalists"]}
    strongest = max(female, key=lambda pair: female[pair])
    assert next(t for t in tags if t.tag == "female vocalists") == Tag("female vocalists", strongest[0], female[strongest])
    assert {t.score for t in tags} <= set(scores.tolist())  # the taggers' own numbers, not rescaled
    assert sum(t.score for t in tags) != pytest.approx(1.0)


def test_text_forms() -> None:
    tags = (Tag("electronic", "MSD_musicnn", 0.61234), Tag("rock", "MSD_musicnn", 0.5), Tag("dance", "MTT_musicnn", 0.4))
    assert format_tags(tags, 2) == "electronic:0.6123;rock:0.5000"
    assert format_tags(None) == format_tags(tags, 0) == ""
    genres = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
    assert uncertain_hint(tags, genres) == "not clearly one of the ten genres; sounds like: electronic, dance"
    assert uncertain_hint(tags[1:2], genres) == ""


@pytest.mark.parametrize(("backend", "atol"), [("torch", PORT_ATOL), ("onnxruntime", PORT_ATOL), ("auto", INT8_ATOL)])
def test_tags_of_every_runtime_match_the_original_musicnn(backend: str, atol: float, reference: dict[str, np.ndarray]) -> None:
    model = load_model("default", backend=backend)
    assert model.has_tags and model.describe()["tags"] is True
    audio = reference["audio"].astype(np.float32) / 32768
    prediction = model.predict(audio, sample_rate=16000)
    # The first segment is the original's first patch exactly (tests/test_musicnn.py): its taggram row 0.
    raw = np.concatenate([reference["msd_taggram"][0], reference["mtt_taggram"][0]])
    expected = {t.tag: t.score for t in merge_tags(raw)}
    got = prediction.segments[0].tags
    assert got is not None and {t.tag for t in got} == set(expected)
    assert max(abs(t.score - expected[t.tag]) for t in got) <= atol
    # The track's tags: the mean over its segments, merged, not re-normalized.
    assert prediction.tags is not None
    _, segment_scores = model.segment_outputs(_inputs(model, audio))
    assert segment_scores is not None
    track = {t.tag: t.score for t in merge_tags(segment_scores.mean(axis=0))}
    assert max(abs(t.score - track[t.tag]) for t in prediction.tags) < 1e-6


def _inputs(model: GenreClassifier, audio: np.ndarray) -> np.ndarray:
    from genrekit.features.pipeline import featurize_signal

    return featurize_signal(audio, model.input_config)[0]


def test_torch_and_onnxruntime_agree_on_tags(default: GenreClassifier, clip: Path) -> None:
    torch_tags = load_model("default", backend="torch").predict(clip).tags
    onnx_tags = default.predict(clip).tags
    assert torch_tags is not None and onnx_tags is not None
    assert [t.tag for t in torch_tags[:10]] == [t.tag for t in onnx_tags[:10]]
    np.testing.assert_allclose([t.score for t in torch_tags], [t.score for t in onnx_tags], atol=1e-5)


def test_every_output_shows_the_same_tags(default: GenreClassifier, clip: Path, tmp_path: Path) -> None:
    prediction = default.predict(clip)
    assert prediction.tags is not None and len(prediction.segments) == 3
    python = prediction.tags[:DEFAULT_TAGS]

    as_json = prediction.to_dict(segments=True)
    assert as_json["tags"] == [{"tag": t.tag, "source": t.source, "score": round(t.score, 6)} for t in python]
    assert [s["tags"][0]["tag"] for s in as_json["segments"]] == [s.tags[0].tag for s in prediction.segments if s.tags]

    text = get_writer("csv")([prediction], model=default.describe(), labels=default.classes_)
    assert next(csv.DictReader(io.StringIO(text)))["tags"] == ";".join(f"{t.tag}:{t.score:.4f}" for t in python)
    assert result_row(prediction, "x", default.classes_)["tags"] == format_tags(python)

    with TestClient(create_app(default)) as client:
        answer = client.post("/v1/predict?segments=true", files={"file": (clip.name, clip.read_bytes(), "audio/wav")}).json()
    assert answer["tags"] == as_json["tags"] and answer["segments"][1]["tags"] == as_json["segments"][1]["tags"]

    runner = CliRunner()
    out = runner.invoke(app, ["predict", str(clip), "--backend", "onnxruntime", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["results"][0]["tags"] == as_json["tags"]
    out = runner.invoke(app, ["predict", str(clip), "--backend", "onnxruntime", "--tags", "3", "--segments"], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    for t in python[:3]:
        assert f"{t.tag} {t.score:.2f} ({t.source.split('_')[0]})" in out.stdout
    second = prediction.segments[1]
    assert second.tags and f"3s {second.genre}  {second.tags[0].tag} {second.tags[0].score:.2f}" in out.stdout

    report = classify_library([clip], tmp_path / "results.parquet", default, jobs=1)
    assert report.n_errors == 0 and read_results(tmp_path / "results.parquet")[0]["tags"] == format_tags(python)


def test_a_model_without_tags_says_so(tmp_path: Path, clip: Path) -> None:
    path = write_random_model(tmp_path / "cnn1.pt")
    model = load_model(path)
    prediction = model.predict(clip)
    assert not model.has_tags and prediction.tags is None and all(s.tags is None for s in prediction.segments)
    assert "tags" not in prediction.to_dict(segments=True) and "tags" not in prediction.to_dict(segments=True)["segments"][0]
    text = get_writer("csv")([prediction], model=model.describe(), labels=model.classes_)
    assert next(csv.DictReader(io.StringIO(text)))["tags"] == ""
    out = CliRunner().invoke(app, ["predict", str(clip), "--model", str(path), "--tags", "5"])
    assert out.exit_code == 0, out.output
    assert out.stderr.count("has no tags") == 1 and "tags (top" not in out.stdout


def test_silent_input_has_no_tags(default: GenreClassifier) -> None:
    prediction = default.predict(np.zeros(16000 * 4, np.float32), sample_rate=16000)
    assert prediction.genre is None and prediction.tags == () and all(s.tags == () for s in prediction.segments)


def test_results_file_tags_are_fixed_to_the_default_count(tmp_path: Path, clip: Path) -> None:
    out = CliRunner().invoke(app, ["predict", str(clip), "--tags", "3", "--out", str(tmp_path / "r.csv")])
    assert out.exit_code == 2 and "results file holds the 5 strongest tags" in out.output
