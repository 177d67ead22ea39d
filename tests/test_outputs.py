"""Outputs that lose nothing (issue 22): files that are not genrekit's stay untouched, one run per output,
names that are not UTF-8 or hold terminal escapes, and full or read-only disks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from conftest import synth_tone, write_random_model
from genrekit._io import exclusive, printable, readable
from genrekit.cli import app
from genrekit.exceptions import InUseError, OutputError, ResumeError
from genrekit.classifier import load_model
from genrekit.library.formats import ResultsFile, read_results
from genrekit.library.run import classify_library
from genrekit.datasets.store import open_store
from genrekit.datasets.prepare import prepare_store
from genrekit.training.config import TrainConfig
from genrekit.training.fit import resume, train
from genrekit.training.runs import new_run_dir

LABELS = ["blues", "classical", "rock"]
FORMATS = [".csv", ".jsonl", ".parquet"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model") / "model.pt", "cnn1", LABELS)


def write_clips(folder: Path, names: list[str | bytes], seconds: float = 3.5) -> Path:
    """Clips named by ``names`` (bytes for names that are not UTF-8) in ``folder``."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        path = os.path.join(os.fsencode(folder), name if isinstance(name, bytes) else os.fsencode(name))
        with open(path, "wb") as f:
            sf.write(f, synth_tone(i, seconds, 22050, rng), 22050, format="WAV")
    return folder


# 1. A file that is not genrekit's is never modified.


@pytest.mark.parametrize("content", [b"precious data", b"precious data\nmore, without a newline", b"\x00\xff binary \xfe" * 100])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_file_that_is_not_genrekits_is_refused_and_left_as_it_was(model_file: Path, tmp_path: Path, suffix: str, content: bytes) -> None:
    notes = tmp_path / f"notes{suffix}"
    notes.write_bytes(content)
    with pytest.raises(ResumeError, match="left as it is"):
        ResultsFile(notes, LABELS)
    result = CliRunner().invoke(app, ["predict", str(write_clips(tmp_path / "m", ["a.wav"])), "-m", str(model_file), "--out", str(notes)])
    assert result.exit_code == 2 and "not a genrekit results file" in result.output, result.output
    assert notes.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", notes.name]  # no lock file left either


def test_a_jsonl_file_of_other_json_without_final_newline_is_left_whole(tmp_path: Path) -> None:
    notes = tmp_path / "log.jsonl"
    content = b'{"event": "start"}\n' * 10_000 + b'{"event": "end"}'
    notes.write_bytes(content)
    with pytest.raises(ResumeError):
        ResultsFile(notes, LABELS)
    assert notes.read_bytes() == content


def test_a_parts_folder_that_is_not_genrekits_is_left_alone(tmp_path: Path) -> None:
    parts = tmp_path / "r.parquet.parts"
    parts.mkdir()
    (parts / "mine.txt.tmp").write_text("keep me")
    with pytest.raises(ResumeError, match="parts folder"):
        ResultsFile(tmp_path / "r.parquet", LABELS)
    assert (parts / "mine.txt.tmp").read_text() == "keep me"


# 2. One run per output: a second one is refused naming the first; a dead holder's lock is taken.

_HOLD = """
import sys, time
from pathlib import Path
from genrekit._io import exclusive
target, lock = Path(sys.argv[1]), Path(sys.argv[2])
with exclusive(target, lock, parameter="out"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_lock(target: Path, lock: Path) -> subprocess.Popen[str]:
    """Another process holding ``target``'s lock, as a running genrekit command would."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(target), str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_second_run_on_a_results_file_is_refused_naming_the_first(model_file: Path, tmp_path: Path, suffix: str) -> None:
    library = write_clips(tmp_path / "m", ["a.wav", "b.wav"])
    out = tmp_path / f"r{suffix}"
    holder = hold_lock(out, tmp_path / f"r{suffix}.lock")
    try:
        result = CliRunner().invoke(app, ["predict", str(library), "-m", str(model_file), "--out", str(out), "-j", "1"])
        assert result.exit_code == 2, result.output
        line = result.output.strip()
        assert "\n" not in line and f"in use by another genrekit run (pid {holder.pid} on " in line and "UTC" in line
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died (kill -9) with its lock file left behind: the lock is free, and the next run takes it.
    assert (tmp_path / f"r{suffix}.lock").exists()
    report = classify_library([library], out, load_model(model_file), jobs=1)
    assert report.n_computed == 2 and len(read_results(out)) == 2
    assert not (tmp_path / f"r{suffix}.lock").exists()


def test_the_lock_is_exclusive_within_a_process_too(tmp_path: Path) -> None:
    target, lock = tmp_path / "x", tmp_path / "x.lock"
    with exclusive(target, lock, parameter="out"):
        with pytest.raises(InUseError, match=f"pid {os.getpid()} on "), exclusive(target, lock, parameter="out"):
            pass
        assert lock.exists()
    assert not lock.exists()
    with exclusive(target, lock, parameter="out"):  # released: free again
        pass


def test_a_second_prepare_on_a_store_is_refused_naming_the_first(tmp_path: Path) -> None:
    data = write_clips(tmp_path / "data" / "blues", ["a.wav", "b.wav"]).parent
    out = tmp_path / "store"
    out.mkdir()
    holder = hold_lock(out, out / ".genrekit.lock")
    try:
        result = CliRunner().invoke(app, ["prepare", str(data), "--out", str(out), "-j", "1"])
        assert result.exit_code == 2 and f"in use by another genrekit run (pid {holder.pid} on " in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    assert prepare_store(data, out, jobs=1).n_tracks == 2  # the dead holder's lock is taken
    assert open_store(out).meta["n_tracks"] == 2 and not (out / ".genrekit.lock").exists()


def test_a_run_folder_in_use_is_refused_and_not_cleared(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"store": "s", "train_config": TrainConfig().to_dict(), "feature_config": {}}))
    holder = hold_lock(run, run / ".genrekit.lock")  # a run in its first epoch: config.json and its lock
    try:
        with pytest.raises(InUseError, match=f"pid {holder.pid} "):
            train(tmp_path / "no-store", run_dir=run)
        with pytest.raises(InUseError, match=f"pid {holder.pid} "):
            resume(run)
        with pytest.raises(InUseError, match=f"pid {holder.pid} "):
            new_run_dir(tmp_path / "runs", "x")  # would have deleted the running run's files
        assert (run / "config.json").is_file()
    finally:
        holder.kill()
        holder.wait()
    assert new_run_dir(tmp_path / "runs", "x") == run and not any(run.iterdir())


# 3. Names that are not UTF-8 (Latin-1 café) are classified, stored and shown readably.

LATIN1 = b"caf\xe9.wav"


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_latin1_name_is_classified_in_library_runs_and_resumed(model_file: Path, tmp_path: Path, suffix: str) -> None:
    library = write_clips(tmp_path / "m", [LATIN1, "ok.wav"])
    out = tmp_path / f"r{suffix}"
    result = CliRunner().invoke(app, ["predict", str(library), "-m", str(model_file), "--out", str(out), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "2 files, 2 classified now" in result.output
    rows = {Path(r["path"]).name: r for r in read_results(out)}
    assert set(rows) == {"caf\\xe9.wav", "ok.wav"} and rows["caf\\xe9.wav"]["genre"] in LABELS and rows["caf\\xe9.wav"]["error"] is None
    again = classify_library([library], out, load_model(model_file), jobs=1)
    assert (again.n_computed, again.n_skipped) == (0, 2)  # the row's readable path is recognised as the file's


def test_a_latin1_name_alone_is_classified_and_shown_readably(model_file: Path, tmp_path: Path) -> None:
    path = os.fsdecode(os.path.join(os.fsencode(write_clips(tmp_path / "m", [LATIN1])), LATIN1))
    result = CliRunner().invoke(app, ["predict", path, "-m", str(model_file)])
    assert result.exit_code == 0 and "caf\\xe9.wav" in result.output, result.output
    result = CliRunner().invoke(app, ["predict", path, "-m", str(model_file), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["path"].endswith("caf\\xe9.wav")


def test_a_latin1_name_is_stored_by_prepare_with_its_real_path(tmp_path: Path) -> None:
    data = write_clips(tmp_path / "data" / "blues", [LATIN1, "ok.wav"]).parent
    write_clips(tmp_path / "data" / "rock", ["r1.wav", "r2.wav"])
    result = CliRunner().invoke(app, ["prepare", str(data), "--out", str(tmp_path / "store"), "-j", "1"])
    assert result.exit_code == 0 and "4 tracks" in result.output and "0 skipped" in result.output, result.output
    store = open_store(tmp_path / "store")
    assert os.fsencode(data / "blues") + b"/" + LATIN1 in {os.fsencode(t.path) for t in store.tracks}
    assert prepare_store(data, tmp_path / "store", jobs=1).up_to_date


# 4. Terminal escape sequences in names never reach the terminal.

RED, TITLE = "\x1b[31mred.wav", "\x1b]0;TITLE\x07.wav"


def test_escape_sequences_in_names_are_escaped_in_everything_printed(model_file: Path, tmp_path: Path) -> None:
    library = write_clips(tmp_path / "m", [RED, TITLE])
    (library / "\x1b[2Jbroken.wav").write_bytes(b"RIFF not really")
    runner = CliRunner()
    for args in ([], ["--out", str(tmp_path / "r.csv")], ["--segments"]):
        result = runner.invoke(app, ["predict", str(library), "-m", str(model_file), "-j", "1", *args])
        assert result.exit_code == 1, result.output  # the broken file
        assert "\x1b" not in result.output and "\x07" not in result.output
        assert "\\x1b[2Jbroken.wav" in result.output
    assert "\\x1b[31mred.wav" in result.output  # the --segments timeline line
    data = tmp_path / "data"
    (data / "blues").mkdir(parents=True)
    for name in (RED, TITLE, "\x1b[2Jbroken.wav"):
        (data / "blues" / name).write_bytes((library / name).read_bytes())
    result = runner.invoke(app, ["prepare", str(data), "--out", str(tmp_path / "store"), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\\x1b[2Jbroken.wav" in result.output


def test_printable_escapes_control_characters_and_undecodable_bytes() -> None:
    assert printable("a\x1b[31mb\x07\n\x9bc") == "a\\x1b[31mb\\x07\\x0a\\x9bc"
    assert printable("one\ntwo", keep_newlines=True) == "one\ntwo"
    assert readable(os.fsdecode(b"caf\xe9")) == "caf\\xe9" and readable("café ♫") == "café ♫"


# 5. A full or read-only disk: one line naming the path and the reason; what was written is kept.


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_full_disk_is_one_line_and_the_run_resumes(model_file: Path, tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    library = write_clips(tmp_path / "m", [f"{i}.wav" for i in range(3)])
    out = tmp_path / f"r{suffix}"

    def full(fd: int) -> None:
        raise _fail(errno.ENOSPC)

    monkeypatch.setattr(os, "fsync", full)
    result = CliRunner().invoke(app, ["predict", str(library), "-m", str(model_file), "--out", str(out), "-j", "1"])
    monkeypatch.undo()
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert f"{out}: cannot write (no space left on device)" in result.output and "run the same command again" in result.output
    assert not list(tmp_path.glob("*.tmp")) and not out.with_name(out.name + ".lock").exists()
    report = classify_library([library], out, load_model(model_file), jobs=1)
    assert report.n_skipped == (3 if suffix != ".parquet" else 0)  # text rows were in the file; parts never completed
    assert len(read_results(out)) == 3


def test_a_write_that_fills_the_disk_leaves_no_torn_row(model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = write_clips(tmp_path / "m", [f"{i}.wav" for i in range(3)])
    out = tmp_path / "r.csv"
    real_write = os.write
    writes = []

    def filling(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") == str(out):
            writes.append(len(data))
            if len(writes) == 2:  # the second row: half of it fits
                real_write(fd, bytes(data)[: len(data) // 2])
                raise _fail(errno.ENOSPC)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", filling)
    with pytest.raises(OutputError, match="no space left on device") as caught:
        classify_library([library], out, load_model(model_file), jobs=1)
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC and caught.value.path == str(out)
    assert out.read_bytes().endswith(b"\n") and len(read_results(out)) == 1
    assert classify_library([library], out, load_model(model_file), jobs=1).n_skipped == 1


@pytest.mark.parametrize("code, reason", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_a_read_only_place_is_one_line_for_results_stores_and_runs(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, reason: str
) -> None:
    library = write_clips(tmp_path / "m", ["a.wav"])
    data = library.parent
    prepare_store(data, tmp_path / "store", jobs=1)
    locked = tmp_path / "ro"
    real_open, real_mkdir = os.open, os.mkdir

    def refuse(path: Any) -> None:
        if os.fsdecode(path).startswith(str(locked)):
            raise OSError(code, os.strerror(code), os.fsdecode(path))

    monkeypatch.setattr(os, "open", lambda path, *a, **k: refuse(path) or real_open(path, *a, **k))
    monkeypatch.setattr(os, "mkdir", lambda path, *a, **k: refuse(path) or real_mkdir(path, *a, **k))
    runner = CliRunner()
    for args in (
        ["predict", str(library), "-m", str(model_file), "--out", str(locked / "r.parquet")],
        ["prepare", str(data), "--out", str(locked / "store")],
        ["train", str(tmp_path / "store"), "--runs-dir", str(locked / "runs")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and f"{locked}" in result.output and f"cannot write ({reason})" in result.output


def test_a_full_disk_during_prepare_keeps_the_cache_for_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_clips(tmp_path / "data" / "blues", ["a.wav", "b.wav"]).parent
    out = tmp_path / "store"
    real_fsync = os.fsync
    calls = []

    def full_after_one(fd: int) -> None:
        calls.append(fd)
        if len(calls) > 1:  # the first track's cache entry fits, then the disk is full
            raise _fail(errno.ENOSPC)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_after_one)
    with pytest.raises(OutputError, match="no space left on device"):
        prepare_store(data, out, jobs=1)
    monkeypatch.undo()
    assert not list(out.rglob("*.tmp"))
    report = prepare_store(data, out, jobs=1)
    assert (report.n_cached, report.n_computed) == (1, 1) and open_store(out).meta["n_tracks"] == 2


def test_a_full_disk_during_training_is_one_line_and_the_run_resumes(make_dataset: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genrekit.config import AudioConfig, FeatureConfig
    from genrekit.datasets.splits import SplitConfig

    prepare_store(make_dataset(per_label=4, seconds=3.0), tmp_path / "store", FeatureConfig(audio=AudioConfig(segment_seconds=1.0, hop_seconds=1.0)), jobs=1)
    config = TrainConfig(model="cnn1", epochs=2, batch_size=8, split=SplitConfig(val_fraction=0.25), num_threads=1)
    run = tmp_path / "runs" / "x"

    def full(fd: int) -> None:
        raise _fail(errno.ENOSPC)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=f"{run}: cannot write \\(no space left on device\\)"):
        train(tmp_path / "store", config, run_dir=run)
    monkeypatch.undo()
    assert not list(run.glob("*.tmp")) and not (run / ".genrekit.lock").exists()
    assert [m.epoch for m in resume(run).history] == [1, 2]


def test_a_file_named_like_the_lock_that_is_not_genrekits_is_left_alone(tmp_path: Path) -> None:
    lock = tmp_path / "r.csv.lock"
    lock.write_text("my notes")
    with pytest.raises(OutputError, match="not a genrekit lock file"), exclusive(tmp_path / "r.csv", lock, parameter="out"):
        pass
    assert lock.read_text() == "my notes"


@pytest.mark.parametrize(
    "args",
    [
        ["spectrogram", "{clip}", "--out", "{file}"],
        ["predict", "{clip}", "-m", "{model}", "--format", "json", "--plot", "{file}"],
        ["predict", "{clip}", "-m", "{model}", "--format", "json", "--plot", "{file}/timelines"],
        ["predict", "{clip}", "-m", "{model}", "--out", "{file}/results.csv"],
        ["demo", "-m", "{model}", "--out", "{file}"],
    ],
    ids=["spectrogram", "plot", "plot-below", "results-below", "demo"],
)
def test_a_file_where_an_output_folder_goes_is_one_line_and_left_as_it_was(model_file: Path, tmp_path: Path, args: list[str]) -> None:
    clip = write_clips(tmp_path / "music", ["a.wav"]) / "a.wav"
    in_the_way = tmp_path / "plots.png"
    in_the_way.write_bytes(b"someone's picture")
    fields = {"clip": str(clip), "model": str(model_file), "file": str(in_the_way)}
    result = CliRunner().invoke(app, [a.format(**fields) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {in_the_way}") and "in the way of a folder" in line and "choose another place" in line
    assert in_the_way.read_bytes() == b"someone's picture"
