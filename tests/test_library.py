"""Library runs: results files that are written as they go, survive ``kill -9`` and resume to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import synth_tone, write_random_model
from genrekit.cli import app
from genrekit.exceptions import ParameterError, ResumeError
from genrekit.classifier import load_model
from genrekit.library.formats import ResultsFile, read_results, result_columns
from genrekit.library.run import classify_library

LABELS = ["blues", "classical", "rock"]
FORMATS = [".csv", ".jsonl", ".parquet"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cnn2 with random weights: inference costs and behaves as a trained one's."""
    return write_random_model(tmp_path_factory.mktemp("model") / "model.pt", "cnn2", LABELS)


def write_library(root: Path, n: int, *, seconds: float = 3.5, bad: bool = True, copy: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / LABELS[i % len(LABELS)]
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"track {i:03d}, take.wav", synth_tone(i % 7, seconds, 22050, rng), 22050)  # a comma for CSV quoting
    if bad:
        (root / "broken.wav").write_bytes(b"RIFF not really")
    if copy:
        (root / "copy.wav").write_bytes((root / LABELS[0] / "track 000, take.wav").read_bytes())
    return root


def row(path: str, p: float, *, error: str | None = None) -> dict[str, object]:
    r: dict[str, object] = dict.fromkeys(result_columns(LABELS))
    r.update(path=path, content_hash=f"{abs(hash(path)):032x}"[:32])
    if error:
        r.update(error=error, error_kind="decode")
    else:
        r.update(genre="blues", confidence=p, uncertain=False, p_blues=p, p_classical=(1 - p) / 2, p_rock=(1 - p) / 2, duration_s=30.0)
    return r


@pytest.mark.parametrize("suffix", FORMATS)
def test_results_file_round_trips_and_resumes(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"results{suffix}"
    first = ResultsFile(out, LABELS)
    assert first.table.num_rows == 0
    rows = [row("/m/b.wav", 0.5), row("/m/a, \"quoted\".wav", 1 / 3), row("/m/bad.wav", 0.0, error="not decodable audio")]
    for r in rows:
        first.add(r)
    first.close()
    assert ResultsFile(out, LABELS).table.to_pylist() == rows  # before the end of a run: every added row is there, exactly
    again = ResultsFile(out, LABELS)
    again.add(row("/m/b.wav", 0.75))  # the same path again: the latest wins
    again.close()
    final = ResultsFile(out, LABELS).finish().to_pylist()
    assert [r["path"] for r in final] == sorted(r["path"] for r in rows)
    assert next(r for r in final if r["path"] == "/m/b.wav")["confidence"] == 0.75
    assert read_results(out) == final
    assert not out.with_name(out.name + ".parts").exists()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_row_torn_by_a_kill_is_cut_off(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"results{suffix}"
    results = ResultsFile(out, LABELS)
    results.add(row("/m/a.wav", 0.5))
    results.close()
    with open(out, "a") as f:
        f.write('/m/b.wav,0123' if suffix == ".csv" else '{"path": "/m/b.wav", "content')
    assert ResultsFile(out, LABELS).table["path"].to_pylist() == ["/m/a.wav"]


def test_a_part_a_kill_left_unfinished_is_ignored(tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    results = ResultsFile(out, LABELS)
    results.add(row("/m/a.wav", 0.5))
    results.close()
    parts = out.with_name(out.name + ".parts")
    (parts / "part-000001.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert ResultsFile(out, LABELS).table["path"].to_pylist() == ["/m/a.wav"]
    assert not list(parts.glob("*.tmp"))


@pytest.mark.parametrize("suffix", FORMATS)
def test_another_models_results_are_refused(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"results{suffix}"
    results = ResultsFile(out, LABELS)
    results.add(row("/m/a.wav", 0.5))
    results.close()
    with pytest.raises(ResumeError, match="another model"):
        ResultsFile(out, ["jazz", "pop"])


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"\.parquet, \.csv, \.jsonl"):
        ResultsFile(tmp_path / "results.xlsx", LABELS)


@settings(max_examples=30, deadline=None)
@given(
    paths=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30), min_size=1, max_size=5, unique=True),
    p=st.floats(0, 1),
)
def test_csv_and_jsonl_keep_any_path_and_float_exactly(tmp_path_factory: pytest.TempPathFactory, paths: list[str], p: float) -> None:
    folder = tmp_path_factory.mktemp("rt")
    for suffix in (".csv", ".jsonl"):
        rows = [row(path, p) for path in paths]
        results = ResultsFile(folder / f"r{suffix}", LABELS)
        for r in rows:
            results.add(r)
        results.close()
        assert ResultsFile(folder / f"r{suffix}", LABELS).table.to_pylist() == rows


@pytest.mark.parametrize("suffix", FORMATS)
def test_library_run_has_a_row_per_file_and_a_rerun_skips_them(model_file: Path, tmp_path: Path, suffix: str) -> None:
    library = write_library(tmp_path / "music", 6)
    model = load_model(model_file)
    out = tmp_path / f"results{suffix}"
    report = classify_library([library, tmp_path / "missing.wav"], out, model, jobs=1)
    rows = read_results(out)
    assert (report.n_files, report.n_computed, report.n_copied, report.n_skipped) == (9, 7, 1, 0)  # 6 + broken + copy + missing; the copy is not decoded
    assert len(rows) == 9 and [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    by_name = {Path(r["path"]).name: r for r in rows}
    broken = by_name["broken.wav"]
    assert broken["path"] == str((library / "broken.wav").absolute()) and broken["error_kind"] == "decode"
    assert broken["error"].startswith("not decodable audio") and broken["path"] not in broken["error"]  # the reason alone
    assert by_name["missing.wav"]["error"] == "no such file or folder" and by_name["missing.wav"]["error_kind"] == "missing"
    assert by_name["missing.wav"]["content_hash"] is None
    assert sorted(p for p, _ in report.errors) == sorted(r["path"] for r in rows if r["error"])
    good = by_name["track 003, take.wav"]
    expected = model.predict(library / "blues" / "track 003, take.wav")
    assert good["genre"] == expected.genre and good["uncertain"] is expected.uncertain
    assert good["duration_s"] == pytest.approx(3.5)
    assert [good[f"p_{g}"] for g in LABELS] == pytest.approx([expected.probabilities[g] for g in LABELS], abs=1e-6)
    copy = by_name["copy.wav"]
    assert {k: v for k, v in copy.items() if k != "path"} == {k: v for k, v in by_name["track 000, take.wav"].items() if k != "path"}

    (library / "rock" / "track 002, take.wav").write_bytes((library / "blues" / "track 003, take.wav").read_bytes())  # changed bytes
    again = classify_library([library], out, model, jobs=1)
    assert (again.n_files, again.n_computed, again.n_copied, again.n_skipped) == (8, 0, 1, 7)
    rows_after = read_results(out)
    assert len(rows_after) == 9
    changed = next(r for r in rows_after if r["path"].endswith("track 002, take.wav"))
    assert changed["content_hash"] == good["content_hash"] and changed["p_rock"] == good["p_rock"]


def test_cli_library_run_and_old_formats_side_by_side(model_file: Path, tmp_path: Path) -> None:
    library = write_library(tmp_path / "music", 3, copy=False)
    runner = CliRunner()
    out = tmp_path / "results.csv"
    result = runner.invoke(app, ["predict", str(library), "-m", str(model_file), "--out", str(out), "-j", "1"])
    assert result.exit_code == 1, result.output  # the broken file
    assert "broken.wav" in result.output and "4 files, 4 classified now" in result.output
    assert read_results(out)[0].keys() == set(result_columns(LABELS))
    typed = tmp_path / "typed.csv"  # what users type: --format csv with a .csv --out is the same library run
    result = runner.invoke(app, ["predict", str(library), "-m", str(model_file), "--format", "csv", "--out", str(typed), "-j", "1"])
    assert result.exit_code == 1 and "4 files, 4 classified now" in result.output, result.output
    assert typed.read_bytes() == out.read_bytes()
    for again in (out, typed):  # both resume: nothing is classified twice
        result = runner.invoke(app, ["predict", str(library), "-m", str(model_file), "--format", "csv", "--out", str(again), "-j", "1"])
        assert "4 files, 0 classified now, 4 already there" in result.output, result.output
    assert typed.read_bytes() == out.read_bytes()
    broken = next(r for r in read_results(out) if r["path"].endswith("broken.wav"))
    assert (broken["error_kind"], broken["error"].startswith("not decodable audio")) == ("decode", True)
    assert f"failed {broken['path']}: not decodable audio" in " ".join(result.output.split())  # the path once, then the reason
    result = runner.invoke(app, ["predict", str(library), "-m", str(model_file), "--out", str(out), "--segments"])
    assert result.exit_code == 2 and "--segments" in result.output
    result = runner.invoke(app, ["predict", str(library), "-m", str(model_file), "--engine", "spark", "--out", str(out)])
    assert result.exit_code == 2 and "The '--engine' option must be one of local or ray. Got 'spark' instead." in result.output


def _run(cmd: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _n_rows(out: Path) -> int:
    if out.suffix == ".parquet":
        parts = out.with_name(out.name + ".parts")
        return len(list(parts.glob("part-*.parquet"))) if parts.is_dir() else 0
    return max(0, out.read_bytes().count(b"\n") - (out.suffix == ".csv")) if out.exists() else 0


# `genrekit predict` in a real process, with Parquet parts every 20 ms instead of every second: the run
# (~1 s of cnn2 here) is then killed with several parts written and more to come.
_CLI = "import sys; import genrekit.library.formats as lib; lib._PART_SECONDS = 0.02; from genrekit.cli import main; sys.argv[0] = 'genrekit'; main()"


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_kill_9_then_rerun_equals_an_uninterrupted_run(model_file: Path, tmp_path: Path, suffix: str) -> None:
    library = write_library(tmp_path / "music", 100, seconds=12.0)
    cli = [sys.executable, "-c", _CLI, "predict", str(library), "-m", str(model_file), "-j", "1", "--out"]
    whole = tmp_path / f"whole{suffix}"
    assert _run([*cli, str(whole)]).wait(timeout=300) == 1  # the broken file
    killed = tmp_path / f"killed{suffix}"
    proc = _run([*cli, str(killed)])
    deadline = time.monotonic() + 240
    while _n_rows(killed) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    partial = ResultsFile(killed, LABELS).table.num_rows
    assert 0 < partial < 102, "the kill must land in the middle of the run"
    assert _run([*cli, str(killed)]).wait(timeout=300) == 1
    assert read_results(killed) == read_results(whole)


def test_jsonl_rows_are_json_objects(model_file: Path, tmp_path: Path) -> None:
    library = write_library(tmp_path / "music", 2, bad=False, copy=False)
    out = tmp_path / "r.jsonl"
    classify_library([library], out, load_model(model_file), jobs=1)
    lines = out.read_text().splitlines()
    assert [list(json.loads(line)) for line in lines] == [result_columns(LABELS)] * 2
