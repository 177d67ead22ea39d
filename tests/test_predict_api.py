"""One predict for files and arrays, predict_many in a plain script, and the package's public names."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import genrekit
from genrekit.checkpoint import load_checkpoint
from genrekit.cli import app
from genrekit.datasets.discover import GTZAN_GENRES
from genrekit.classifier import GenreClassifier
from genrekit.runtime.torch import TorchRunner

from conftest import synth_tone, write_random_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def classifier(model_file: Path) -> GenreClassifier:
    return GenreClassifier(TorchRunner(load_checkpoint(model_file)))


def test_predict_takes_paths_arrays_and_tensors_alike(classifier: GenreClassifier, tmp_path: Path, rng: np.random.Generator) -> None:
    y = synth_tone(2, 8.0, 22050, rng)
    stereo = np.stack([y, 0.5 * y])  # (n_channels, n_samples), as librosa.load(mono=False) gives
    sf.write(tmp_path / "a.wav", stereo.T, 22050)
    from_file = classifier.predict(tmp_path / "a.wav")
    decoded, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    for audio in (decoded.T, torch.from_numpy(np.ascontiguousarray(decoded.T)), decoded.T.mean(axis=0)):
        from_array = classifier.predict(audio, sample_rate=22050)
        assert from_array.path is None and from_array.genre == from_file.genre
        np.testing.assert_allclose(list(from_array.probabilities.values()), list(from_file.probabilities.values()), atol=1e-5)


def test_predict_refuses_what_it_would_have_to_guess(classifier: GenreClassifier) -> None:
    y = np.zeros((22050 * 4, 2), dtype=np.float32)
    with pytest.raises(genrekit.ParameterError, match=r"\(n_channels, n_samples\).*pass audio\.T"):
        classifier.predict(y, sample_rate=22050)
    with pytest.raises(genrekit.ParameterError, match="sample_rate"):
        classifier.predict(y.T)
    with pytest.raises(genrekit.ParameterError, match="shape"):
        classifier.predict(np.zeros((2, 2, 22050)), sample_rate=22050)


_SCRIPT = """
    import sys
    from genrekit import load_model
    model = load_model(sys.argv[1])
    for r in model.predict_many(sys.argv[2:], jobs=2):
        print(r.path, getattr(r, "genre", None) or r.error)
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_predict_many_in_a_plain_script(model_file: Path, tmp_path: Path, rng: np.random.Generator, guarded: bool) -> None:
    """The README's snippet saved as a script: with no __main__ guard, worker processes would run it again."""
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.wav")
        sf.write(files[-1], synth_tone(i, 4.0, 22050, rng), 22050)
    (tmp_path / "bad.wav").write_text("not audio")
    body = textwrap.dedent(_SCRIPT)
    if guarded:
        body = "if __name__ == '__main__':\n" + textwrap.indent(body, "    ")
    (tmp_path / "script.py").write_text(body)
    args = [str(model_file), *map(str, files), str(tmp_path / "bad.wav")]
    done = subprocess.run([sys.executable, str(tmp_path / "script.py"), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split(" ")[0] for line in lines] == args[1:]
    assert all(line.split(" ")[1] in GTZAN_GENRES for line in lines[:3]) and "not decodable audio" in lines[3]


def test_package_exports_results_exceptions_and_version() -> None:
    assert genrekit.Prediction is genrekit.classifier.Prediction and genrekit.PredictionError is genrekit.classifier.PredictionError
    assert issubclass(genrekit.AudioDecodeError, genrekit.GenrekitError) and issubclass(genrekit.CheckpointError, ValueError)
    assert all(hasattr(genrekit, name) for name in genrekit.__all__)
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"genrekit {genrekit.__version__}"


def test_writer_registry_lists_formats_and_writes_what_the_cli_writes(classifier: GenreClassifier, tmp_path: Path, rng: np.random.Generator) -> None:
    from genrekit.library.formats import result_columns
    from genrekit.library.writers import get_writer

    sf.write(tmp_path / "a.wav", synth_tone(1, 4.0, 22050, rng), 22050)
    results = [classifier.predict(tmp_path / "a.wav"), genrekit.PredictionError("b.wav", "decode", "not decodable audio")]
    text = get_writer("csv")(results, model=classifier.describe(), labels=classifier.classes_, top_k=2)
    rows = text.splitlines()
    assert rows[0] == ",".join(result_columns(classifier.classes_)) and len(rows) == 3  # the layout of a results file
    assert rows[2] == "b.wav,,,,," + "," * len(GTZAN_GENRES) + ",,,not decodable audio,decode"  # the reason alone: the path is its column
    assert get_writer(".CSV") is get_writer("csv")  # by a file's extension too
    import json

    data = json.loads(get_writer("json")(results, model=classifier.describe(), labels=classifier.classes_))
    assert data["results"][1] == {"path": "b.wav", "error": "not decodable audio", "error_kind": "decode"}
    with pytest.raises(genrekit.ParameterError, match=r"^The output format must be json or csv\. Got 'xml' instead\.$") as refused:
        get_writer("xml")
    assert (refused.value.parameter, refused.value.allowed, refused.value.got) == ("fmt", "json or csv", "xml")  # the CLI says --format


def test_models_say_whether_they_can_flag_a_result_uncertain() -> None:
    """The zero-shot baseline has no calibrated threshold: its "uncertain" is always false, and it says so."""
    from genrekit import load_model

    default, zero_shot = load_model("default").describe(), load_model("zero-shot").describe()
    assert 0.0 < default["uncertain_below"] < 1.0 and zero_shot["uncertain_below"] is None
