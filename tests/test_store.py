"""The feature store: contents, idempotence, incremental updates, config changes and interrupted runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import synth_tone
from genrekit.audio import load_segments
from genrekit.config import FeatureConfig, config_hash
from genrekit.datasets.discover import discover
from genrekit.exceptions import ParameterError, StoreError
from genrekit.features import extract_features
from genrekit.datasets.store import FeatureStore, open_store

from genrekit.datasets.prepare import prepare_store, process_file
SHORT = {"per_label": 2, "seconds": 6.5}  # 2 segments per track, 6 tracks


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def small_store(make_dataset: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    data = make_dataset(**SHORT)
    out = tmp_path / "store"
    report = prepare_store(data, out, jobs=1)
    assert (report.n_tracks, report.n_computed, report.n_cached, report.errors) == (6, 6, 0, [])
    return data, out


def test_prepare_then_open(small_store: tuple[Path, Path]) -> None:
    data, out = small_store
    st = open_store(out)
    assert isinstance(st, FeatureStore)
    assert isinstance(st.features, np.memmap) and st.features.dtype == np.float16
    assert st.features.shape == (12, 128, 130)
    assert st.label_names == ["blues", "classical", "rock"]
    assert st.summary() == {label: {"tracks": 2, "segments": 4} for label in st.label_names}
    assert st.config == FeatureConfig() and st.errors == []
    assert st.track_ids.tolist() == [tid for tid in ("blues.00000", "blues.00001", "classical.00000", "classical.00001", "rock.00000", "rock.00001") for _ in range(2)]
    assert st.segment_index.tolist() == [0, 1] * 6 and st.start_s.tolist() == [0.0, 3.0] * 6

    rows = _csv(out / "segments.csv")
    assert list(rows[0]) == ["track_id", "label", "segment_index", "start_s", "path"]
    assert rows[1] == {"track_id": "blues.00000", "label": "blues", "segment_index": "1", "start_s": "3.000", "path": str(data / "blues" / "blues.00000.wav")}
    assert list(_csv(out / "tracks.csv")[0]) == ["track_id", "label", "path", "content_hash", "group", "n_segments", "first_segment"]
    meta = json.loads((out / "store.json").read_text())
    assert FeatureConfig.from_dict(meta["feature_config"]) == FeatureConfig()
    assert meta["config_hash"] == config_hash(FeatureConfig()) and meta["feature_shape"] == [128, 130]
    assert (meta["n_tracks"], meta["n_segments"], meta["n_errors"]) == (6, 12, 0)

    segments, _ = load_segments(data / "rock" / "rock.00001.wav", FeatureConfig().audio)
    expected = extract_features(segments, FeatureConfig()).astype(np.float16)
    np.testing.assert_array_equal(st.features[10:12], expected)


def test_second_run_does_no_work(small_store: tuple[Path, Path]) -> None:
    data, out = small_store
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    report = prepare_store(data, out, jobs=1)
    assert report.up_to_date and report.n_computed == 0 and report.n_segments == 12
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == before


def test_added_track_is_computed_alone(small_store: tuple[Path, Path], rng: np.random.Generator) -> None:
    data, out = small_store
    sf.write(data / "rock" / "rock.00002.wav", synth_tone(2, 9.5, 22050, rng), 22050)
    calls: list[tuple[int, int, str]] = []
    report = prepare_store(data, out, jobs=1, on_progress=lambda *a: calls.append(a))
    assert not report.up_to_date and (report.n_computed, report.n_cached) == (1, 6)
    assert calls[0] == (0, 7, "") and [done for done, _, _ in calls[1:]] == list(range(1, 8))  # cached files count too
    assert (7, 7, str(data / "rock" / "rock.00002.wav")) in calls
    st = open_store(out)
    assert st.features.shape[0] == 15 and (st.track_ids == "rock.00002").sum() == 3


def test_changed_file_is_computed_alone(small_store: tuple[Path, Path], rng: np.random.Generator) -> None:
    data, out = small_store
    old = open_store(out).features[0:2].copy()
    sf.write(data / "blues" / "blues.00000.wav", synth_tone(7, 6.5, 22050, rng), 22050)
    report = prepare_store(data, out, jobs=1)
    assert (report.n_computed, report.n_cached) == (1, 5)
    st = open_store(out)
    assert not np.array_equal(st.features[0:2], old)
    assert len(list((out / "cache").glob("*/*.npy"))) == 6  # the replaced file's features are dropped


def test_removed_track_leaves_the_store(small_store: tuple[Path, Path]) -> None:
    data, out = small_store
    (data / "classical" / "classical.00001.wav").unlink()
    report = prepare_store(data, out, jobs=1)
    assert (report.n_computed, report.n_cached, report.n_segments) == (0, 5, 10)
    assert "classical.00001" not in open_store(out).track_ids


def test_changed_feature_config_rebuilds(small_store: tuple[Path, Path]) -> None:
    data, out = small_store
    config = FeatureConfig(scaling="standard", audio=replace(FeatureConfig().audio, hop_seconds=1.5))
    report = prepare_store(data, out, config, jobs=1)
    assert (report.n_computed, report.n_cached) == (6, 0)
    st = open_store(out)
    assert st.config == config and st.features.shape == (6 * 3, 128, 130)  # starts 0, 1.5, 3.0 s
    assert [p.name for p in (out / "cache").iterdir()] == [config_hash(config)]
    assert st.features.max() > 0  # standard scaling: not referenced to each segment's max
    assert prepare_store(data, out, config, jobs=1).up_to_date


def test_byte_identical_files_are_computed_once(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_dataset(**SHORT)
    (data / "rock" / "rock.00009.wav").write_bytes((data / "rock" / "rock.00000.wav").read_bytes())
    with pytest.warns(UserWarning, match="byte-identical"):
        report = prepare_store(data, tmp_path / "store", jobs=1)
    assert (report.n_computed, report.n_cached, report.n_segments) == (6, 1, 14)
    st = open_store(tmp_path / "store")
    np.testing.assert_array_equal(st.features[st.track_ids == "rock.00000"], st.features[st.track_ids == "rock.00009"])


def test_bad_file_is_listed_and_others_stored(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_dataset(**SHORT)
    (data / "rock" / "broken.wav").write_bytes(b"RIFF....WAVEnonsense")
    report = prepare_store(data, tmp_path / "store", jobs=1)
    assert report.n_computed == 6 and [p for p, _ in report.errors] == [str(data / "rock" / "broken.wav")]
    st = open_store(tmp_path / "store")
    assert st.errors == report.errors and len(st.tracks) == 6
    again = prepare_store(data, tmp_path / "store", jobs=1)
    assert again.up_to_date and again.errors == report.errors and again.n_computed == 0


def test_unusable_file_is_retried_only_once_changed(make_dataset: Callable[..., Path], tmp_path: Path, rng: np.random.Generator) -> None:
    """A file's reason is cached like features: copies share it under their own path; new bytes are tried again."""
    data = make_dataset(**SHORT)
    broken, copy = data / "rock" / "broken.wav", data / "rock" / "copy.wav"
    broken.write_bytes(b"RIFF....WAVEnonsense")
    out = tmp_path / "store"
    first = prepare_store(data, out, jobs=1)
    (reason,) = {r for p, r in first.errors if p == str(broken)}
    assert str(broken) not in reason  # the reason alone: the path is its own column
    copy.write_bytes(broken.read_bytes())
    with pytest.warns(UserWarning, match="byte-identical"):
        second = prepare_store(data, out, jobs=1)
    assert second.n_computed == 0 and dict(second.errors) == {str(broken): reason, str(copy): reason}
    sf.write(broken, synth_tone(3, 6.5, 22050, rng), 22050)
    third = prepare_store(data, out, jobs=1)
    assert third.n_computed == 1 and [p for p, _ in third.errors] == [str(copy)]
    assert len(list((out / "cache").glob("*/*.error.json"))) == 1


def test_process_file_returns_features_or_reason(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_dataset(**SHORT)
    good = process_file(data / "blues" / "blues.00000.wav", FeatureConfig())
    assert good.failure is None and good.features is not None and good.features.shape == (2, 128, 130)
    assert good.features.dtype == np.float16 and good.starts is not None and good.starts.tolist() == [0.0, 3.0]
    bad = process_file(tmp_path / "missing.wav", FeatureConfig())
    assert bad.features is None and bad.failure is not None and "no such file" in bad.failure.error
    assert bad.failure.path == str(tmp_path / "missing.wav") and not bad.failure.error.startswith(bad.failure.path)


def test_open_store_errors(small_store: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = small_store
    with pytest.raises(StoreError, match="not a complete"):
        open_store(tmp_path / "nothing-here")
    (out / "features.npy").unlink()
    with pytest.raises(StoreError, match="missing or damaged"):
        open_store(out)


def test_missing_store_file_is_rebuilt(small_store: tuple[Path, Path]) -> None:
    data, out = small_store
    (out / "features.npy").unlink()
    report = prepare_store(data, out, jobs=1)
    assert not report.up_to_date and report.n_cached == 6
    assert open_store(out).features.shape == (12, 128, 130)


def test_jobs_must_be_positive(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="jobs"):
        prepare_store(make_dataset(**SHORT), tmp_path / "store", jobs=0)


_SLOW_PREPARE = (
    "import sys, time\n"
    "from genrekit.datasets.prepare import prepare_store\n"
    "prepare_store(sys.argv[1], sys.argv[2], jobs=1, on_progress=lambda *a: time.sleep(0.25))\n"
)


@pytest.mark.slow
def test_interrupted_prepare_then_rerun(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    """Kill prepare mid-way while it rebuilds a complete store: never readable as complete; a rerun finishes it."""
    data = make_dataset(per_label=5, seconds=3.2)
    out = tmp_path / "store"
    prepare_store(data, out, FeatureConfig(scaling="standard"), jobs=1)  # a complete store, other config
    new_cache = out / "cache" / config_hash(FeatureConfig())
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_PREPARE, str(data), str(out)])
    try:
        deadline = time.monotonic() + 60
        while len(list(new_cache.glob("*[!p].npy"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9, "prepare finished before it could be interrupted"
    n_done = len(list(new_cache.glob("*[!p].npy")))
    assert 3 <= n_done < 15
    with pytest.raises(StoreError, match="interrupted prepare"):
        open_store(out)

    report = prepare_store(data, out, jobs=1)
    assert report.n_cached >= n_done and report.n_computed + report.n_cached == 15
    assert not list(out.rglob("*.tmp*"))
    clean = tmp_path / "clean"
    prepare_store(data, clean, jobs=1)
    st, ref = open_store(out), open_store(clean)
    assert st.config == ref.config == FeatureConfig()
    np.testing.assert_array_equal(np.asarray(st.features), np.asarray(ref.features))
    assert (out / "segments.csv").read_text() == (clean / "segments.csv").read_text()
    assert (out / "tracks.csv").read_text() == (clean / "tracks.csv").read_text()


def test_prepare_from_tracks_without_hashes(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    tracks = discover(make_dataset(**SHORT), hashes=False)
    report = prepare_store(tracks, tmp_path / "store", jobs=1)
    assert report.errors == [] and report.n_computed == 6
    assert all(t.content_hash for t in open_store(tmp_path / "store").tracks)


def test_refuses_a_folder_that_is_not_a_store(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_dataset(**SHORT)
    home = tmp_path / "home"
    (home / "cache" / "browser").mkdir(parents=True)
    (home / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a genrekit feature store"):
        prepare_store(data, home, jobs=1)
    assert (home / "cache" / "browser").is_dir() and not (home / "store.json").exists()
    with pytest.raises(StoreError, match="not a folder"):
        prepare_store(data, home / "notes.txt", jobs=1)


class _DyingPool:
    """Stands in for ProcessPoolExecutor whose workers die, as when a decoder segfaults."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.calls = 0

    def __enter__(self) -> _DyingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def shutdown(self, **options: object) -> None:
        return None

    def submit(self, fn: Callable[..., object], *args: object, **kwargs: object) -> Future[object]:
        future: Future[object] = Future()
        self.calls += 1
        if self.calls == 1:
            future.set_result(fn(*args, **kwargs))
        else:
            future.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
        return future


def test_dead_worker_is_a_store_error_and_a_rerun_continues(
    make_dataset: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_dataset(**SHORT)
    with monkeypatch.context() as patch:
        patch.setattr("genrekit.engines.local.ProcessPoolExecutor", _DyingPool)
        with pytest.raises(StoreError, match="worker process died"):
            prepare_store(data, tmp_path / "store", jobs=2)
    with pytest.raises(StoreError, match="interrupted prepare"):
        open_store(tmp_path / "store")
    finished = len(list((tmp_path / "store" / "cache").glob("*/*.npy")))
    assert finished <= 1
    report = prepare_store(data, tmp_path / "store", jobs=1)
    assert (report.n_cached, report.n_computed) == (finished, 6 - finished)
    assert open_store(tmp_path / "store").features.shape == (12, 128, 130)


def test_parallel_prepare_keeps_torch_out_of_the_main_process(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    """Workers compute features; the main process only hashes, caches and writes, so it never pays for torch."""
    root = make_dataset(per_label=1, seconds=3.0)
    code = (
        "import sys\nfrom genrekit.datasets.prepare import prepare_store\nfrom genrekit.datasets.store import open_store\n"
        "if __name__ == '__main__':\n"
        f"    report = prepare_store({str(root)!r}, {str(tmp_path / 'store')!r}, jobs=2)\n"
        "    assert report.n_computed == 3 and open_store(report.store).features.shape == (3, 128, 130), report\n"
        "    assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    script = tmp_path / "prepare_main.py"
    script.write_text(code)
    subprocess.run([sys.executable, str(script)], check=True, timeout=300)
