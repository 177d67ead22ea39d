"""What a user reads when things go wrong: one line per problem, naming the path and the option they typed."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_tone
from typer.testing import CliRunner

from genrekit.audio import load_audio
from genrekit.cli import app
from genrekit.exceptions import AudioDecodeError
from genrekit.datasets.discover import find_audio_files

runner = CliRunner()


def _clip(path: Path, rng: np.random.Generator, seconds: float = 4.0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth_tone(1, seconds, 22050, rng), 22050, format=fmt)
    return path


def test_failed_lines_are_never_wrapped(tmp_path: Path) -> None:
    missing = tmp_path / ("a-rather-long-folder-name-" * 4) / "and-a-long-song-name.wav"
    result = runner.invoke(app, ["predict", str(missing)])
    assert result.exit_code == 1
    assert f"failed {missing}: no such file or folder" in result.output.splitlines()


def test_mpg123_notes_do_not_reach_stderr(tmp_path: Path, rng: np.random.Generator) -> None:
    mp3 = _clip(tmp_path / "damaged.mp3", rng, seconds=20.0)
    data = bytearray(mp3.read_bytes())
    for k in range(len(data) // 4, len(data) - 100, len(data) // 20):
        data[k : k + 60] = bytes(60)  # zeroed frames: libmpg123 prints "Illegal Audio-MPEG-Header" and resyncs
    mp3.write_bytes(bytes(data))
    result = subprocess.run([sys.executable, "-m", "genrekit", "predict", str(mp3), "--jobs", "1"], capture_output=True, text=True, timeout=120)
    assert "Illegal Audio-MPEG-Header" not in result.stderr and "resync" not in result.stderr
    assert "damaged.mp3" in result.stdout


def test_unreadable_file_says_permission_denied(tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root in CI, where chmod 000 does not stop reading: os.access answers as for another user.
    path = _clip(tmp_path / "music" / "locked.wav", rng)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(path) else real_access(p, mode, **kw))
    with pytest.raises(AudioDecodeError, match=r"locked.wav: permission denied$"):
        load_audio(path, sample_rate=22050)
    result = runner.invoke(app, ["predict", str(tmp_path / "music"), "--format", "csv", "--jobs", "1"])
    assert result.exit_code == 1
    assert f"failed {path}: permission denied" in result.output


def test_folder_mode_names_every_entry_it_cannot_use(tmp_path: Path, rng: np.random.Generator) -> None:
    music = tmp_path / "music"
    good = _clip(music / "good.wav", rng)
    (music / "gone.mp3").symlink_to(music / "deleted.mp3")
    (music / "loop.ogg").symlink_to(music / "loop.ogg")
    (music / "album.flac").mkdir()
    (music / "back").symlink_to(music)
    (tmp_path / "empty").mkdir()
    files, errors = find_audio_files([music, tmp_path / "empty"])
    assert files == [good]
    reasons = {Path(e.path).name: e.error for e in errors}
    assert "broken symbolic link" in reasons["gone.mp3"]
    assert "symbolic link loop" in reasons["loop.ogg"]
    assert "a folder named like an audio file" in reasons["album.flac"]
    assert "symbolic link loop" in reasons["back"]
    assert reasons["empty"] == "no audio files in this folder (extensions: au, flac, mp3, ogg, wav)"
    assert all(e.error and not e.error.startswith(e.path) for e in errors)  # the path is its own field
    result = runner.invoke(app, ["predict", str(tmp_path / "empty")])
    assert result.exit_code == 1 and str(tmp_path / "empty") in result.output


def test_errors_name_the_options_typed_not_library_parameters(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path), "--split", "bogus"])
    assert result.exit_code == 2
    assert "'--split' option" in result.output and "strategy" not in result.output
    assert "filtered, random, kfold or leaky-segments" in result.output
    result = runner.invoke(app, ["predict", str(tmp_path), "--model", "nope"])
    assert result.exit_code == 2 and "available models: default" in result.output and "['" not in result.output


_PLACEHOLDERS = ("DATA", "STORE", "RUN", "CLIP", "OUT", "CONFIG", "KINDCONFIG")
# (arguments, the option the message must name, choices it must list as words or None); DATA, STORE, RUN,
# CLIP, OUT and CONFIG stand for paths made by the test. Each is refused before any work starts.
_BAD_OPTIONS = [
    (["prepare", "DATA", "--out", "OUT", "--features", "bogus"], "--features", "logmel or musicnn"),
    (["prepare", "DATA", "--out", "OUT", "--scaling", "bogus"], "'--scaling' option", "seed or standard"),
    (["prepare", "DATA", "--out", "OUT", "--jobs", "0"], "'--jobs' option", None),
    (["prepare", "DATA", "--out", "OUT", "--engine", "bogus"], "'--engine' option", "local or ray"),
    (["info", "STORE", "--split", "bogus"], "'--split' option", "filtered, random, kfold or leaky-segments"),
    (["train", "STORE", "--model", "bogus"], "'--model' option", "cnn1, cnn2 or musicnn-head"),
    (["train", "STORE", "--split", "kfold", "--n-folds", "1"], "'--n-folds' option", None),
    (["train", "STORE", "--epochs", "0"], "'--epochs' option", None),
    (["train", "STORE", "--threads", "0"], "'--threads' option", None),
    (["train", "STORE", "--augment-prob", "2"], "'--augment-prob' option", None),
    (["train", "STORE", "--mixup", "-1"], "'--mixup' option", None),
    (["train", "STORE", "--lr-schedule", "bogus"], "'--lr-schedule' option", "none, cosine or plateau"),
    (["evaluate", "RUN", "--split", "train"], "--split", "test or val"),
    (["compare", "RUN", "--format", "bogus"], "'--format' option", "table, csv or json"),
    (["predict", "CLIP", "--format", "bogus"], "'--format' option", "table, json or csv"),
    (["predict", "CLIP", "--jobs", "0"], "'--jobs' option", None),
    (["predict", "CLIP", "--model", "nope"], "--model 'nope' not found", "available models: default"),
    (["predict", "CLIP", "--out", "OUT.txt"], "--out", "--format json or csv"),
    (["serve", "--log-level", "loud"], "'--log-level' option", "critical, error, warning, info, debug or trace"),
    (["prepare", "DATA", "--out", "OUT", "--config", "CONFIG"], "--config", "sample_rte"),
    (["prepare", "DATA", "--out", "OUT", "--config", "KINDCONFIG"], "--config", "logmel or musicnn. Got 'mfcc'"),
]


@pytest.mark.parametrize(("args", "option", "choices"), _BAD_OPTIONS, ids=[" ".join(a for a in args if a.split(".")[0] not in _PLACEHOLDERS) for args, _, _ in _BAD_OPTIONS])
def test_bad_option_values_get_one_line_naming_the_option(
    tmp_path: Path, rng: np.random.Generator, args: list[str], option: str, choices: str | None
) -> None:
    """A bad value is one line that names the option as typed and lists the choices as words: no
    library parameter names (strategy, kind, num_threads), no Python reprs or None, no traceback."""
    config = tmp_path / "config.json"
    config.write_text('{"audio": {"sample_rte": 22050}}')
    kind_config = tmp_path / "kind.json"
    kind_config.write_text('{"kind": "mfcc"}')
    paths = {"DATA": tmp_path / "data", "STORE": tmp_path / "store", "RUN": tmp_path / "run", "CLIP": tmp_path / "clip.wav", "OUT": tmp_path / "out",
             "CONFIG": config, "KINDCONFIG": kind_config}
    _clip(tmp_path / "data" / "a" / "a.00000.wav", rng)
    _clip(tmp_path / "clip.wav", rng)
    if args[0] == "info":  # info reads the store before the split
        from genrekit.datasets.prepare import prepare_store

        prepare_store(tmp_path / "data", tmp_path / "store", jobs=1)
    argv = [str(paths[a.split(".")[0]]) + a[len(a.split(".")[0]):] if a.split(".")[0] in paths else a for a in args]
    result = runner.invoke(app, argv)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = lines[0]
    assert message.startswith("error: ") and option in message and "Traceback" not in message
    if choices is not None:
        assert choices in message
    for python_word in ("['", "('", "None", "strategy", "'kind'", "num_threads", "'fmt'", "augment_prob"):
        assert python_word not in message
    if "--config" in args:
        assert "--hop-seconds" not in message and "(--features)" not in message  # the file's keys are named as keys, not as options


def test_decoding_warnings_show_in_table_and_csv(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _clip(tmp_path / "cut.wav", rng, seconds=6.0)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # the header still promises 6 s
    table = runner.invoke(app, ["predict", str(path)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "notes" in table.output and "truncated" in table.output
    out = runner.invoke(app, ["predict", str(path), "--format", "csv"])
    row = next(csv.DictReader(io.StringIO(out.stdout)))
    assert row["warnings"].startswith("truncated, header promises 6.00 s")



def test_prepare_names_broken_links_and_loops(tmp_path: Path, make_dataset) -> None:
    from genrekit.datasets.prepare import prepare_store

    data = make_dataset(labels=("a", "b"), per_label=1, seconds=3.0)
    (data / "a" / "gone.wav").symlink_to(data / "a" / "deleted.wav")
    (data / "b" / "loop.wav").symlink_to(data / "b" / "loop.wav")
    report = prepare_store(data, tmp_path / "store", jobs=1)
    reasons = {Path(p).name: r for p, r in report.errors}
    assert "broken symbolic link" in reasons["gone.wav"] and "symbolic link loop" in reasons["loop.wav"]
    assert report.n_tracks - len(report.errors) == 2


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--model", "cnn2"], "cnn2 reads log-mel spectrograms of shape (n_mels, n_frames) (--features logmel). Got features of shape"),
        (["--model", "musicnn-head", "--augment", "noise"], "augmentations (--augment) work on log-mel features; this store holds musicnn features: use only mixup (--mixup)"),
    ],
)
def test_training_on_a_store_of_other_features_is_one_line(make_dataset, tmp_path: Path, options: list[str], expected: str) -> None:
    """cnn2 (the default model) on a musicnn store used to end in an IndexError traceback from the model build."""
    from genrekit.datasets.prepare import prepare_store
    from genrekit.features import default_config

    store = tmp_path / "store"
    prepare_store(make_dataset(labels=("a", "b"), per_label=5, seconds=3.0), store, default_config("musicnn"), jobs=1)
    result = runner.invoke(app, ["train", str(store), *options, "--epochs", "1", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and expected in errors[0], result.output
    assert not any((tmp_path / "runs").iterdir()), "a refused run leaves no run folder behind"


def test_ray_address_without_a_cluster_is_one_line_with_the_hint(tmp_path: Path, rng: np.random.Generator) -> None:
    """Ray finds clusters by their files and processes: this module starts none (test_ray_engine.py's runs later)."""
    from conftest import write_random_model

    clip = _clip(tmp_path / "a.wav", rng)
    model = write_random_model(tmp_path / "m.pt")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(tmp_path / "ray")}
    cmd = [sys.executable, "-m", "genrekit", "predict", str(clip), "-m", str(model), "--engine", "ray", "--address", "auto", "--out", str(tmp_path / "r.parquet")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--address" in done.stderr and "ray start --head" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_parameter_errors_carry_their_fields_and_the_cli_words_them_from_those() -> None:
    """The library says its parameters; the CLI names its options from the error's fields and one table, not
    by rewriting the message's text."""
    import pickle

    from genrekit.cli._app import cli_message
    from genrekit.cli.data import prepare
    from genrekit.cli.train import evaluate, train
    from genrekit.datasets.splits import SplitConfig
    from genrekit.exceptions import Mention, ParameterError

    with pytest.raises(ParameterError) as refused:
        SplitConfig(strategy="bogus")  # type: ignore[arg-type]
    error = refused.value
    assert str(error) == "The 'strategy' parameter must be one of filtered, random, kfold or leaky-segments. Got 'bogus' instead."
    assert (error.parameter, error.got) == ("strategy", "bogus")
    assert cli_message(error, train) == "The '--split' option must be one of filtered, random, kfold or leaky-segments. Got 'bogus' instead."
    again = pickle.loads(pickle.dumps(error))  # as a worker process's error reaches the command
    assert (str(again), again.parameter, again.allowed, again.got) == (str(error), error.parameter, error.allowed, error.got)

    optional = ParameterError.invalid("patience", "an integer >= 1", 0, optional="None")
    assert str(optional).endswith("must be an integer >= 1 (or None). Got 0 instead.")
    assert cli_message(optional, train) == "The '--patience' option must be an integer >= 1. Got 0 instead."  # a user leaves it out instead

    mentioned = ParameterError("cnn2 reads log-mel (", Mention("features", "logmel"), "); use ", Mention("model", "musicnn-head"), ".")
    assert str(mentioned) == "cnn2 reads log-mel (features='logmel'); use model='musicnn-head'."
    assert cli_message(mentioned, train) == "cnn2 reads log-mel (--features logmel); use --model musicnn-head."
    assert cli_message(mentioned, evaluate) == "cnn2 reads log-mel (features='logmel'); use model='musicnn-head'."  # no such options there
    assert cli_message(ParameterError.invalid("kind", "logmel or musicnn", "x", subject="The feature kind"), prepare).startswith("The '--features' option")


def test_library_errors_name_no_command_line_options() -> None:
    """Outside cli/, a raised message names parameters (Mention), never an option such as "--features" (only
    a whole shell command quoted as one, which the user types as it is)."""
    import ast
    import re

    src = Path(__file__).parents[1] / "src" / "genrekit"
    found = []
    for path in src.rglob("*.py"):
        if "cli" in path.relative_to(src).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise):
                texts = [c for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                found += [f"{path.relative_to(src)}:{c.lineno}" for c in texts if re.search(r"(?<![\w-])--[a-z]", re.sub(r"`[^`]*`|genrekit \w+ [^)]*", "", c.value))]
    assert not found, found


def _session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
        except OSError:
            continue
        if fields and fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def _until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
@pytest.mark.parametrize("command", ["prepare", "predict"])
def test_a_killed_command_leaves_no_leaked_semaphores(make_dataset: Callable[..., Path], tmp_path: Path, command: str) -> None:
    """The process pool's queues hold named semaphores; a command ended by SIGTERM unlinks them before it exits,
    so multiprocessing's resource tracker has nothing to clean up and prints no "leaked semaphore objects"."""
    data = make_dataset(labels=("a", "b"), per_label=20, seconds=30.0)
    args = ["prepare", str(data), "--out", str(tmp_path / "store")] if command == "prepare" else ["predict", str(data), "--format", "csv"]
    proc = subprocess.Popen([sys.executable, "-m", "genrekit", *args, "--jobs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)
    try:
        assert _until(lambda: len(_session_pids(proc.pid)) >= 4, 60), "workers never started"  # command, fork server, 2 workers
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert _until(lambda: not _session_pids(proc.pid), 15)  # the resource tracker too: it has said all it will
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert "terminated" in err and "leaked semaphore" not in err, err
    finally:
        for pid in _session_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
