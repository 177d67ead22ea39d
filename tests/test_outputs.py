"""Outputs that lose nothing (issue 22): files that are not genrekit's stay untouched, one run per output,
names that are not UTF-8 or hold terminal escapes, and full or read-only disks."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from conftest import synth_tone, write_random_model
from genrekit._io import exclusive, printable, readable
from genrekit.cli import app
from genrekit.exceptions import InUseError, OutputError, ResumeError
from genrekit.inference import load_model
from genrekit.library import ResultsFile, classify_library, read_results

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
with exclusive(target, lock, option="--out"):
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
    with exclusive(target, lock, option="--out"):
        with pytest.raises(InUseError, match=f"pid {os.getpid()} on "), exclusive(target, lock, option="--out"):
            pass
        assert lock.exists()
    assert not lock.exists()
    with exclusive(target, lock, option="--out"):  # released: free again
        pass
