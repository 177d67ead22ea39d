"""The Ray engine on a real local Ray instance (2 CPUs, no dashboard, no network): the same results and
stores as the local engine, bad files as error rows, and no file lost when a worker is killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest
import ray  # the ray extra is part of the dev install (make test): missing, this fails rather than skips
import soundfile as sf

from conftest import rows_close, synth_tone, write_random_model
from genrekit.classifier import GenreClassifier, load_model
from genrekit.exceptions import DatasetWarning
from genrekit.features.pipeline import FileResult
from genrekit.library.formats import read_results
from genrekit.library.run import classify_library
from genrekit.results import Prediction, PredictionError
from genrekit.engines.local import LocalEngine
from genrekit.engines.ray import RayEngine
from genrekit.datasets.store import open_store

from genrekit.datasets.prepare import prepare_store
pytestmark = pytest.mark.slow
LABELS = ["blues", "classical", "rock"]


@pytest.fixture(scope="module", autouse=True)
def ray_instance() -> Iterator[None]:
    """One local Ray instance for the module: starting one costs ~5 s."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model") / "model.pt", "cnn2", LABELS, seed=1)


def write_library(root: Path, n: int, *, seconds: float = 4.0) -> Path:
    rng = np.random.default_rng(1)
    for i in range(n):
        folder = root / LABELS[i % len(LABELS)]
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{LABELS[i % len(LABELS)]}.{i:05d}.wav", synth_tone(i % 5, seconds + (i % 3), 22050, rng), 22050)
    (root / "rock" / "rock.99999.wav").write_bytes(b"RIFF\x00\x00 a broken header")
    return root


def test_predict_equals_the_local_engine_and_bad_files_are_error_rows(model_file: Path, tmp_path: Path) -> None:
    library = write_library(tmp_path / "music", 7)
    model = load_model(model_file)
    local = classify_library([library], tmp_path / "local.csv", model, jobs=2)
    remote = classify_library([library], tmp_path / "ray.parquet", model, engine=RayEngine())
    assert (remote.n_files, remote.n_computed, remote.n_errors) == (local.n_files, local.n_computed, local.n_errors) == (8, 8, 1)
    rows = read_results(tmp_path / "ray.parquet")
    assert rows_close(rows, read_results(tmp_path / "local.csv"), atol=1e-5)
    (bad,) = [r for r in rows if r["error"]]
    assert bad["path"].endswith("rock.99999.wav") and bad["error"] and not bad["error"].startswith(bad["path"]) and bad["error_kind"] == "decode" and bad["genre"] is None
    rerun = classify_library([library], tmp_path / "ray.parquet", model, engine=RayEngine())
    assert (rerun.n_computed, rerun.n_skipped) == (0, 8)


def test_prepare_gives_the_local_engines_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_library(tmp_path / "data", 6)
    monkeypatch.chdir(tmp_path)  # relative paths, as a user types them: sent absolute, stored as typed
    local = prepare_store("data", "local", jobs=2)

    def no_reading_here(path: str) -> tuple[str | None, str | None]:
        raise AssertionError(f"the driver read {path}: Ray's tasks hash the files")

    monkeypatch.setattr("genrekit.engines.ray.hash_file", no_reading_here)  # the driver's copy; tasks import their own
    monkeypatch.setattr("genrekit.engines.local.hash_file", no_reading_here)
    monkeypatch.setattr("genrekit.datasets.discover.file_hash", no_reading_here)
    remote = prepare_store("data", "ray", engine=RayEngine())
    assert (remote.n_computed, len(remote.errors)) == (local.n_computed, len(local.errors)) == (6, 1)
    for name in ("features.npy", "segments.csv", "tracks.csv", "errors.csv"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    meta = {k: v for k, v in json.loads((tmp_path / "ray" / "store.json").read_text()).items() if k != "created"}
    assert meta == {k: v for k, v in json.loads((tmp_path / "local" / "store.json").read_text()).items() if k != "created"}
    assert open_store(tmp_path / "ray").errors[0][0] == str(Path("data") / "rock" / "rock.99999.wav")


class _Counted:
    """A RayEngine that counts what comes back from its Ray tasks: one result for each file they decoded."""

    def __init__(self) -> None:
        self.ray = RayEngine()
        self.decoded: list[str] = []

    def session(self) -> AbstractContextManager[object]:
        return self.ray.session()

    def map_files(self, work: Callable[[str], FileResult], paths: Iterable[str], *, preload: Sequence[str] = ()) -> Generator[FileResult, None, None]:
        for result in self.ray.map_files(work, paths, preload=preload):
            self.decoded.append(result.path)
            yield result

    def hash_files(self, paths: Sequence[str]) -> Generator[tuple[str, str | None, str | None], None, None]:
        return self.ray.hash_files(paths)

    def classify(
        self, model: GenreClassifier, items: Sequence[tuple[str, str]], *, max_duration: float | None = None
    ) -> Generator[tuple[str, Prediction | PredictionError], None, None]:
        for digest, result in self.ray.classify(model, items, max_duration=max_duration):
            self.decoded.append(str(result.path))
            yield digest, result


def test_byte_identical_copies_are_decoded_once_as_locally(model_file: Path, tmp_path: Path) -> None:
    library = write_library(tmp_path / "music", 3)
    original = library / "blues" / "blues.00000.wav"
    (library / "classical" / "copy.wav").write_bytes(original.read_bytes())
    model = load_model(model_file)
    local = classify_library([library], tmp_path / "local.csv", model, jobs=2)
    engine = _Counted()
    remote = classify_library([library], tmp_path / "ray.csv", model, engine=engine)
    assert (remote.n_files, remote.n_computed, remote.n_copied) == (local.n_files, local.n_computed, local.n_copied) == (5, 4, 1)
    assert sorted(engine.decoded) == sorted(str(p) for p in library.rglob("*.wav") if p.name != "copy.wav")  # before: the copy too
    rows = read_results(tmp_path / "ray.csv")
    assert rows_close(rows, read_results(tmp_path / "local.csv"), atol=1e-5)
    by_path = {Path(r["path"]).name: r for r in rows}
    assert {k: v for k, v in by_path["copy.wav"].items() if k != "path"} == {k: v for k, v in by_path[original.name].items() if k != "path"}

    engine.decoded.clear()
    with pytest.warns(DatasetWarning, match="byte-identical"):
        report = prepare_store(library, tmp_path / "store", engine=engine)
    assert (report.n_computed, report.n_cached, len(report.errors)) == (3, 1, 1)
    assert len(engine.decoded) == 4 and not {str(original), str(library / "classical" / "copy.wav")} <= set(engine.decoded)


def _ray_workers(title: str) -> list[int]:
    """Process ids of Ray workers whose process title names ``title`` (Ray titles its workers ``ray::<what runs>``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("ray::") and title in cmdline:
                pids.append(int(entry))
    return pids


def test_ray_hashes_in_tasks_as_the_local_engine_does_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same (path, hash, reason) for every file, an unreadable one included, and not one file read by this
    process: hashing this driver's way is made to fail, the tasks' way works (they run in other processes)."""
    library = write_library(tmp_path / "music", 3)
    paths = [str(p) for p in sorted(library.rglob("*.wav"))] + [str(library / "blues")]  # a folder: cannot be read
    local = sorted(LocalEngine().hash_files(paths))
    unreadable = [(path, reason) for path, digest, reason in local if digest is None]
    assert unreadable == [(str(library / "blues"), unreadable[0][1])] and unreadable[0][1].startswith("cannot be read")

    def no_reading_here(path: str) -> tuple[str | None, str | None]:
        raise AssertionError(f"{path} was read by the driver")

    monkeypatch.setattr("genrekit.engines.ray.hash_file", no_reading_here)
    monkeypatch.setattr("genrekit.engines.local.hash_file", no_reading_here)
    assert sorted(RayEngine().hash_files(paths)) == local


def test_killed_workers_lose_no_file(model_file: Path, tmp_path: Path) -> None:
    library = write_library(tmp_path / "music", 60, seconds=8.0)
    model = load_model(model_file)
    expected = classify_library([library], tmp_path / "local.jsonl", model, jobs=2)
    killed: dict[str, int] = {}
    stop = threading.Event()

    def kill_once_each() -> None:
        """SIGKILL one decode worker and one model worker as soon as each is seen working."""
        while not stop.is_set() and len(killed) < 2:
            for title in ("_featurize_batch", "_classify_batch"):
                pids = [] if title in killed else _ray_workers(title)
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed[title] = pids[0]
            time.sleep(0.01)

    killer = threading.Thread(target=kill_once_each, daemon=True)
    killer.start()
    try:
        report = classify_library([library], tmp_path / "ray.jsonl", model, engine=RayEngine())
    finally:
        stop.set()
        killer.join()
    assert set(killed) == {"_featurize_batch", "_classify_batch"}, f"workers killed: {killed}"
    assert report.n_files == expected.n_files == 61
    assert rows_close(read_results(tmp_path / "ray.jsonl"), read_results(tmp_path / "local.jsonl"), atol=1e-5)


def test_the_default_model_runs_on_ray_as_locally(tmp_path: Path) -> None:
    library = tmp_path / "music"
    library.mkdir()
    rng = np.random.default_rng(2)
    for i in range(2):
        sf.write(library / f"clip{i}.wav", synth_tone(i, 3.0, 22050, rng), 22050)
    model = load_model()
    classify_library([library], tmp_path / "local.csv", model, jobs=1)
    classify_library([library], tmp_path / "ray.csv", model, engine=RayEngine())
    rows = read_results(tmp_path / "ray.csv")
    assert len(rows) == 2 and not any(r["error"] for r in rows)
    assert rows_close(rows, read_results(tmp_path / "local.csv"), atol=1e-5)


def test_cli_commands_with_engine_ray(model_file: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genrekit.cli import app

    data = write_library(tmp_path / "data", 3)
    runner = CliRunner()
    result = runner.invoke(app, ["prepare", str(data), "--out", str(tmp_path / "store"), "--engine", "ray"])
    assert result.exit_code == 0, result.output
    assert "3 tracks" in result.output and "1 skipped" in result.output and len(open_store(tmp_path / "store").tracks) == 3
    result = runner.invoke(app, ["predict", str(data), "-m", str(model_file), "--engine", "ray", "--out", str(tmp_path / "r.parquet")])
    assert result.exit_code == 1 and "rock.99999.wav" in result.output and "4 files, 4 classified now" in result.output
    result = runner.invoke(app, ["predict", str(data), "-m", str(model_file), "--engine", "ray"])
    assert result.exit_code == 2 and "--out" in result.output


@pytest.mark.shared_data
def test_shared_data_real_clips_and_bad_audio_give_the_local_engines_rows(model_file: Path, shared_data: Path, tmp_path: Path) -> None:
    """Real GTZAN clips (OGG, the original .au, a FLAC excerpt) and every bad-audio fixture."""
    files = [
        shared_data / "gtzan-dev" / "rock" / "rock.00000.ogg",
        shared_data / "gtzan-dev" / "reggae" / "reggae.00016.au",
        shared_data / "gtzan-dev-excerpts" / "blues" / "blues.00010.flac",
        *sorted(p for p in (shared_data / "bad-audio").iterdir() if p.suffix != ".md"),
    ]
    model = load_model(model_file)
    local = classify_library(files, tmp_path / "local.parquet", model, jobs=2)
    remote = classify_library(files, tmp_path / "ray.parquet", model, engine=RayEngine())
    rows = read_results(tmp_path / "ray.parquet")
    assert rows_close(rows, read_results(tmp_path / "local.parquet"), atol=1e-5)
    assert remote.errors == local.errors and len(remote.errors) >= 4  # empty, not audio, random bytes, NaN samples, ...
    assert all(reason and not reason.startswith(path) for path, reason in remote.errors)  # the path is its own column
    assert sum(1 for r in rows if r["genre"] is not None) >= 3


def test_without_ray_installed_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from genrekit.engines.ray import RayUnavailableError

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the extra is not installed
    with pytest.raises(RayUnavailableError, match=r"pip install 'genrekit\[ray\]'"), RayEngine().session():
        pass


def _predict_on_ray(model_file: Path, tmp_path: Path) -> subprocess.Popen[str]:
    """``genrekit predict --engine ray`` (its own local Ray instance) in a subprocess, once it has written results."""
    library = write_library(tmp_path / "music", 24, seconds=8.0)
    out = tmp_path / "r.csv"
    command = [sys.executable, "-m", "genrekit", "predict", str(library), "-m", str(model_file), "--engine", "ray", "-j", "2", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    deadline = time.monotonic() + 180
    while not (out.is_file() and len(out.read_text().splitlines()) >= 2):  # a row: decode and model tasks have run
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    return process


def test_sigterm_ends_a_ray_run_as_the_local_engine(model_file: Path, tmp_path: Path) -> None:
    process = _predict_on_ray(model_file, tmp_path)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    # before: Ray's handler dumped a native stack ("*** SIGTERM received ***") and exited 15 (or aborted)
    assert process.returncode == 128 + signal.SIGTERM and "terminated" in err, err
    assert "SIGTERM received" not in err
    assert "constructor arguments in the object store" not in err  # before: an error line in every Ray run


def test_ray_processes_do_not_outlive_a_killed_driver(model_file: Path, tmp_path: Path) -> None:
    from genrekit.engines import _reaper
    process = _predict_on_ray(model_file, tmp_path)
    started = _reaper._descendants(process.pid, _reaper._processes())  # raylet, GCS, agents, workers (and the watchdog)
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        table = _reaper._processes()
        left = {pid for pid, start in started.items() if pid in table and table[pid][1] == start}
        if not left:
            break
        time.sleep(0.2)
    # before: ray::DashboardAgent and ray::RuntimeEnvAgent stayed for good
    assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in left]
