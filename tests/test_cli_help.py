"""--help reads cleanly: named metavars, no <bool> on flags, evenly wrapped text, the architectures listed;
and the test client imports without a deprecation warning (the build's banners: tests/test_install.py)."""

from __future__ import annotations

import re
import warnings

import pytest
from typer.testing import CliRunner

from genrekit.cli import app
from genrekit.cli._app import reflow
from genrekit.models import available_models

runner = CliRunner()
COMMANDS = ("prepare", "info", "train", "evaluate", "compare", "predict", "models", "spectrogram", "demo", "serve")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_named_metavars_and_no_bool_flags(command: str) -> None:
    text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"}).output
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert not re.search(r"[{\[][a-z_]+[}\]]", usage), usage  # {paths}, {data}: lowercase internal names
    flag_rows = [line for line in text.splitlines() if re.search(r"--(segments|per-segment|progress|strict)\b", line)]
    assert all("<bool>" not in line for line in flag_rows), flag_rows


def test_help_paragraphs_wrap_evenly() -> None:
    assert reflow("Summary.\n\n    Two lines\n    of prose.\n\n    Examples:\n\n      genrekit x\n") == (
        "Summary.\n\nTwo lines of prose.\n\nExamples:\n\n  genrekit x"
    )
    text = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "80"}).output
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index(next(line for line in lines if line.startswith("Every file is analysed")))
    paragraph = lines[start : lines.index("", start)]
    assert all(len(line) > 60 for line in paragraph[:-1]), paragraph  # before: a one-word line mid-paragraph


def test_train_model_help_lists_every_architecture() -> None:
    """Every architecture ``train`` fits (the shipped musicnn-linear/zero-shot are fitted by a script)."""
    from genrekit.models.musicnn_linear import FITTED_BY_SCRIPT

    text = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output.split())
    trainable = [name for name in available_models() if name not in FITTED_BY_SCRIPT]
    assert trainable and all(name in text for name in trainable), trainable


def test_testclient_imports_without_deprecation_warning() -> None:
    import importlib
    import sys

    sys.modules.pop("starlette.testclient", None)
    sys.modules.pop("fastapi.testclient", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module("fastapi.testclient")


@pytest.mark.parametrize("command", ["predict", "serve", "train", "evaluate", "prepare"])
def test_options_with_choices_show_them(command: str) -> None:
    """Choices in the metavar (``auto|cpu|cuda|mps``), not a bare ``<str>`` with the words buried in prose."""
    text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    assert "<str>" not in text
    expected = {"predict": ["table|json|csv", "auto|torch|onnxruntime", "auto|cpu|cuda|mps", "local|ray"], "serve": ["auto|torch|onnxruntime", "auto|cpu|cuda|mps"],
                "train": ["filtered|random|kfold|leaky-segments", "auto|cpu|cuda|mps"], "evaluate": ["test|val", "auto|cpu|cuda|mps"], "prepare": ["logmel|musicnn", "local|ray"]}
    assert all(choices in text for choices in expected[command]), text


@pytest.mark.parametrize(
    ("command", "usage"),
    [("predict", "[OPTIONS] PATH..."), ("compare", "[OPTIONS] RUN..."), ("train", "[OPTIONS] [STORE]"), ("info", "[OPTIONS] STORE"),
     ("export", "[OPTIONS] MODEL"), ("tag", "[OPTIONS] [RESULTS]")],
)
def test_usage_line_shows_what_a_user_types(command: str, usage: str) -> None:
    """Not typer's {PATH} (a required argument) without the ... of one that takes several."""
    text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"}).output
    line = next(line for line in text.splitlines() if "Usage:" in line)
    assert line.split("Usage:")[1].strip() == f"genrekit {command} {usage}"


def test_info_title_wraps_at_the_terminal_not_the_table(make_dataset, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from genrekit.datasets.prepare import prepare_store

    store = "a-store-with-a-name-long-enough-to-wrap"  # its title: 76 columns, the table's 49
    prepare_store(make_dataset(labels=("a", "b"), per_label=2, seconds=3.0), tmp_path / store, jobs=1)
    monkeypatch.chdir(tmp_path)
    lines = runner.invoke(app, ["info", store], env={"COLUMNS": "80"}).output.splitlines()
    # Before: wrapped at the table's width, "a-store-... (4 tracks, 4" over "segments, split random)".
    assert f"{store} (4 tracks, 4 segments, split random)" in lines
    assert max(len(line) for line in lines) <= 80


def test_piped_table_names_each_file_whole_with_its_folder(tmp_path, rng, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Into a pipe (CliRunner's output is not a terminal) the table is as wide as its rows: a long file name in a
    long folder name is on one line, whole, relative to the working folder."""
    import soundfile as sf
    from conftest import synth_tone

    album = tmp_path / "A Long Folder Name With Spaces"
    album.mkdir()
    name = "a_rather_long_file_name_of_some_song_2024_remaster.wav"
    sf.write(album / name, synth_tone(0, 4.0, 22050, rng), 22050)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["predict", str(album), "--model", "zero-shot"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert any(f"A Long Folder Name With Spaces/{name}" in line for line in result.output.splitlines()), result.output


def test_examples_are_indented_alike_in_every_command() -> None:
    """typer dedents the text after the summary as one block: a help whose text begins with "Examples:" lost its
    examples' indentation (serve did), so every command says something before its examples."""
    import typer

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    indents = {}
    for name in commands:
        lines = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output.splitlines()
        after = lines[next(i for i, line in enumerate(lines) if line.strip() == "Examples:") + 1 :] if any(line.strip() == "Examples:" for line in lines) else []
        examples = [line for line in after if line.strip().startswith(("genrekit ", "curl "))]
        indents.update({f"{name}: {line.strip()[:30]}": len(line) - len(line.lstrip()) for line in examples})
    assert len(indents) >= 10 and len(set(indents.values())) == 1, indents
