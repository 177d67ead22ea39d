"""The engine interface: a registry of engines that ``prepare`` and library runs hold, and a third engine
added as one class plus its registration, giving the same store and results file as the local engine."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import rows_close, write_random_model
from genrekit import engines
from genrekit.classifier import GenreClassifier, load_model
from genrekit.config import FeatureConfig
from genrekit.datasets.discover import hash_file
from genrekit.datasets.prepare import process_file, prepare_store
from genrekit.engines import Engine, available_engines, get_engine, register_engine
from genrekit.engines.local import LocalEngine
from genrekit.engines.ray import RayEngine
from genrekit.exceptions import DatasetWarning, ParameterError, WorkerDiedError
from genrekit.features.pipeline import FileResult
from genrekit.library.formats import read_results
from genrekit.library.run import classify_library
from genrekit.results import Prediction, PredictionError

LABELS = ["blues", "classical", "rock"]
SHORT = {"per_label": 2, "seconds": 6.5}  # 2 segments per track, 6 tracks


class SerialEngine:
    """A third engine: every file in this process, one after another. It records the paths it ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    @contextmanager
    def session(self) -> Iterator[None]:
        yield

    def map_files(self, work: Callable[[str], FileResult], paths: Iterable[str], *, preload: Sequence[str] = ()) -> Generator[FileResult, None, None]:
        for path in paths:
            self.ran.append(path)
            yield work(path)

    def hash_files(self, paths: Sequence[str]) -> Generator[tuple[str, str | None, str | None], None, None]:
        for path in paths:
            yield (path, *hash_file(path))

    def classify(
        self, model: GenreClassifier, items: Sequence[tuple[str, str]], *, max_duration: float | None = None
    ) -> Generator[tuple[str, Prediction | PredictionError], None, None]:
        for path, digest in items:
            self.ran.append(path)
            yield digest, next(model.predict_many([path], jobs=1, max_duration=max_duration))


@pytest.fixture
def serial(monkeypatch: pytest.MonkeyPatch) -> SerialEngine:
    """A SerialEngine registered as ``serial`` for one test (the registry is put back after it)."""
    monkeypatch.setattr(engines, "_ENGINES", dict(engines._ENGINES))
    engine = SerialEngine()
    register_engine("serial", lambda *, jobs=None, address=None: engine)
    return engine


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model") / "model.pt", "cnn1", LABELS)


def test_a_registered_engine_builds_the_local_engines_store(serial: SerialEngine, make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_dataset(**SHORT)
    (data / "rock" / "copy.wav").write_bytes((data / "blues" / "blues.00000.wav").read_bytes())
    (data / "rock" / "broken.wav").write_bytes(b"RIFF not really")
    with pytest.warns(DatasetWarning, match="byte-identical"):
        local = prepare_store(data, tmp_path / "local", jobs=1)
    with pytest.warns(DatasetWarning, match="byte-identical"):
        mine = prepare_store(data, tmp_path / "serial", engine="serial")
    assert (mine.n_computed, mine.n_cached, len(mine.errors)) == (local.n_computed, local.n_cached, len(local.errors)) == (6, 1, 1)
    for name in ("features.npy", "segments.csv", "tracks.csv", "errors.csv"):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    # the copy was computed once (by whichever path came first), and the broken file was tried
    assert len(serial.ran) == 7 and not {str(data / "blues" / "blues.00000.wav"), str(data / "rock" / "copy.wav")} <= set(serial.ran)
    with pytest.warns(DatasetWarning, match="byte-identical"):
        rerun = prepare_store(data, tmp_path / "serial", engine="serial")
    assert rerun.up_to_date and len(serial.ran) == 7  # nothing cached is sent to the engine


def test_a_registered_engine_gives_the_local_engines_rows(serial: SerialEngine, model_file: Path, tmp_path: Path) -> None:
    from test_library import write_library

    library = write_library(tmp_path / "music", 4)  # 4 tracks, a broken file, and a copy of the first track
    model = load_model(model_file)
    local = classify_library([library], tmp_path / "local.csv", model, jobs=1)
    mine = classify_library([library], tmp_path / "serial.csv", model, engine="serial")
    assert rows_close(read_results(tmp_path / "serial.csv"), read_results(tmp_path / "local.csv"))
    assert (mine.n_files, mine.n_computed, mine.n_copied, mine.n_errors) == (local.n_files, local.n_computed, local.n_copied, local.n_errors) == (6, 5, 1, 1)
    assert len(serial.ran) == 5 and str((library / "copy.wav").absolute()) not in serial.ran  # copies are decoded once, above the engine
    rerun = classify_library([library], tmp_path / "serial.csv", model, engine="serial")
    assert (rerun.n_skipped, rerun.n_computed, len(serial.ran)) == (6, 0, 5)


def test_an_engine_object_is_used_as_it_is(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    engine = SerialEngine()
    data = make_dataset(per_label=1, seconds=3.0)
    report = prepare_store(data, tmp_path / "store", engine=engine, jobs=4)  # jobs is the named engines' option
    assert report.n_computed == 3 and sorted(engine.ran) == sorted(str(p) for p in data.glob("*/*.wav"))
    assert get_engine(engine, jobs=8, address="auto") is engine


def test_the_registry_names_its_engines_and_refuses_unknown_ones(serial: SerialEngine) -> None:
    assert available_engines() == ["local", "ray", "serial"]
    assert get_engine("local", jobs=3) == LocalEngine(3)
    assert get_engine("ray", jobs=3) == RayEngine(num_cpus=3)
    assert get_engine("ray", jobs=3, address="auto") == RayEngine(address="auto")  # a running cluster has its own CPUs
    with pytest.raises(ParameterError, match=r"The 'engine' parameter must be one of local, ray or serial\. Got 'spark' instead"):
        get_engine("spark")
    with pytest.raises(ParameterError, match="'serial' is taken"):
        register_engine("serial", lambda *, jobs=None, address=None: SerialEngine())
    with pytest.raises(ParameterError, match="'address' parameter is where a Ray cluster runs"):
        get_engine("local", address="auto")
    with pytest.raises(ParameterError, match="'jobs' parameter must be >= 1"):
        get_engine("local", jobs=0)


def test_shipped_engines_and_a_new_one_have_the_engine_methods(serial: SerialEngine) -> None:
    for name in available_engines():
        assert isinstance(get_engine(name), Engine), name


def test_unknown_engine_names_fail_before_anything_is_written(model_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="one of local or ray"):
        prepare_store(tmp_path / "nowhere", tmp_path / "store", engine="spark")
    with pytest.raises(ParameterError, match="one of local or ray"):
        classify_library([tmp_path], tmp_path / "r.csv", load_model(model_file), engine="spark")
    assert list(tmp_path.iterdir()) == []


def test_local_map_files_draws_paths_lazily_and_starts_nothing_without_work(make_dataset: Callable[..., Path]) -> None:
    data = make_dataset(per_label=1, seconds=3.0)
    work = functools.partial(process_file, config=FeatureConfig())
    assert list(LocalEngine(2).map_files(work, iter(()))) == []
    drawn: list[str] = []

    def paths() -> Iterator[str]:
        for path in sorted(map(str, data.glob("*/*.wav"))):
            drawn.append(path)
            yield path

    results = LocalEngine(1).map_files(work, paths())
    first = next(results)
    assert first.failure is None and first.path == drawn[0]
    assert len(drawn) <= 2  # a result can come back before the last path is drawn: the caller caches as it goes
    assert sorted([first.path, *(r.path for r in results)]) == drawn and len(drawn) == 3


def _die_on_b(path: str) -> str:
    """Per-file work whose worker dies on file "b", as one a decoder crashes or the kernel kills."""
    if path == "b":
        os._exit(1)
    return path


def test_a_dead_local_worker_is_genrekits_error_not_the_pools() -> None:
    with pytest.raises(WorkerDiedError, match="a worker process died"):
        list(LocalEngine(jobs=2).map_files(_die_on_b, ["a", "b", "c", "d"]))  # type: ignore[arg-type]


class DyingEngine(SerialEngine):
    """A SerialEngine whose worker dies after its first file."""

    def classify(
        self, model: GenreClassifier, items: Sequence[tuple[str, str]], *, max_duration: float | None = None
    ) -> Generator[tuple[str, Prediction | PredictionError], None, None]:
        yield next(super().classify(model, items, max_duration=max_duration))
        raise WorkerDiedError("a worker process died (out of memory, or a decoder crashed on a corrupt file)")


def test_a_library_run_whose_worker_dies_keeps_its_rows_and_says_how_to_go_on(model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_library import write_library

    library = write_library(tmp_path / "music", 4)
    model = load_model(model_file)
    out = tmp_path / "results.csv"
    with pytest.raises(WorkerDiedError) as died:
        classify_library([library], out, model, engine=DyingEngine())
    assert str(died.value) == (
        "a worker process died (out of memory, or a decoder crashed on a corrupt file). Files finished so far are kept: run again with the same out to continue"
    )
    kept = read_results(out)
    assert sum(1 for r in kept if not r["error"]) == 2  # the file finished before the death, and its copy
    rerun = classify_library([library], out, model, engine=SerialEngine())
    assert (rerun.n_files, rerun.n_skipped, rerun.n_computed) == (6, 2, 4)  # what the dead run finished is not done again
    assert len(read_results(out)) == 6


def test_the_local_engines_workers_import_torch_only_for_work_that_needs_it(tmp_path: Path) -> None:
    """A log-mel prepare runs without PyTorch in its workers; a musicnn one has it imported once, before the
    fork. Each in a fresh process: a process has one fork server, started with the first pool's preload."""
    from genrekit.features.kinds import kind_module

    assert kind_module("logmel") == "genrekit.features.logmel" and kind_module("musicnn") == "genrekit.features.musicnn"
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys\n"
        "from engine_probe import torch_imported\n"
        "from genrekit.engines.local import LocalEngine\n"
        "if __name__ == '__main__':\n"
        "    print(list(LocalEngine(jobs=2).map_files(torch_imported, ['a', 'b', 'c', 'd'], preload=(sys.argv[1],))))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}

    def workers_have_torch(kind: str) -> str:
        probe = subprocess.run([sys.executable, str(script), kind_module(kind)], capture_output=True, text=True, env=env, timeout=120)
        assert probe.returncode == 0, probe.stderr
        return probe.stdout.strip()

    assert workers_have_torch("logmel") == "[False, False, False, False]"
    assert workers_have_torch("musicnn") == "[True, True, True, True]"
