"""Feature extraction: ``genrekit prepare`` (all cores, fresh store) vs a plain sequential librosa loop.

The baseline is what the original notebook did, per clip: ``librosa.load`` at 22050 Hz, then per 3 s
segment ``librosa.feature.melspectrogram`` + ``librosa.power_to_db(ref=np.max)``, one process. It runs
with single-threaded BLAS (``OMP/OPENBLAS/MKL_NUM_THREADS=1``, set below before numpy loads): on a busy
2-core machine librosa's mel product with default BLAS threads was ~7x slower (64 vs 8 ms a segment),
so a one-thread baseline is the fair, harder one. genrekit's side is :func:`genrekit.datasets.prepare.prepare_store`
as the user runs it, ``genrekit prepare DATA --out STORE`` in a fresh process each time (interpreter
start, imports, worker start-up included): discovery, content hashing, worker processes (forkserver, one
torch thread each), the per-track cache and the consolidated memory-mapped float16 store. The librosa loop
runs in this process with librosa already imported, which favours the baseline.

Workloads: ``--n`` synthetic 30 s clips (16-bit WAV, 22050 Hz, written once into a temp folder) and
``../shared/data/gtzan-dev`` (OGG Vorbis; ``--dev-limit`` clips). Repeats are interleaved
(librosa, genrekit, librosa, ...) and the medians compared. Agreement: max |dB difference| of the stored
float16 features vs librosa's on bins above -60 dB (full 3 s segments of the first ``--check`` clips).

Optimizations of the per-file path (``process_file``), measured per 30 s WAV clip, one thread, busy machine:

==============================================  ===========================  ==========================
change                                          predicted                    measured
==============================================  ===========================  ==========================
banded mel product (skip the zero blocks)       mel step 8.5 -> ~1.5 ms      8.5 -> 0.95 ms
in-place power / log10                          ~1 ms                        power 2.0 -> 1.4 ms
strided windows instead of pad + index gather   ~2 ms                        decode+segment 5.6 -> 1.9 ms
filterbank without importing librosa            worker start -1 s            librosa/scipy/numba (~1.5 s) gone
(all: logmel / process_file)                    1.5x                         logmel 22.9 -> 14.7 ms,
                                                                             process_file 30 -> 21 ms
==============================================  ===========================  ==========================

Also: the fork server preloads torch once for all workers (it was imported by each), and the main process
no longer imports torch at all. Outcome then: 1.97x for 300 WAV clips and 1.55x for 100 OGG clips at load
1.5; 1.42x / 1.23x for 1,000 WAV / 348 OGG clips at load ~5. Each run paid its start-up and a serial phase
hashing every file before the first was sent to a worker. Second round, same busy machine (A/B runs
interleaved against the previous commit, or microbenchmarks of one step, one thread):

==============================================  ===========================  ==========================
change                                          predicted                    measured
==============================================  ===========================  ==========================
hash in a thread, send each uncached file to    the serial hashing phase     300 WAV clips, whole run
the workers at once (hashing, fork server       (~2.7 ms a clip) and most    9.6 -> 7.3 s
start-up and features overlap)                  of the start-up hidden
SHA-256 (CPU SHA extensions) for BLAKE2b        hash 1.7 -> ~1 ms a clip     1.72 -> 1.04 ms
16-bit PCM read as int16, scaled by numpy       decode 1.6 -> ~0.5 ms        1.62 -> 0.45 ms, same values
log-mel one segment per STFT (was 8)            logmel -20 %                 9.6 -> 8.1 ms (noisy)
numpy's rfft, to keep torch out of workers      start-up -1.4 CPU s          rejected: 2.6 ms vs torch's
                                                                             0.23 ms per segment
|X|^2 fused into the mel product                -0.5 ms a clip               no gain above noise; dropped
==============================================  ===========================  ==========================

Outcome: see ``RESULTS.md`` (the README quotes the latest rows). A clip now costs a worker ~8 ms (STFT ~3,
|X|^2 ~1.3, mel ~1.5, decode 0.5) and the main process ~3 ms (hash, cache write, consolidation) against
librosa's ~32 ms per segment-wise clip on an idle core. OGG stays bound by the Vorbis decoder (~12-20 ms a
clip, the same library code librosa calls), so its ratio cannot reach 4x on 2 cores.

    .venv/bin/python benchmarks/bench_features.py --n 1000            # the issue's workload
    .venv/bin/python benchmarks/bench_features.py --quick             # what `make bench` runs
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
from collections.abc import Callable  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from _common import append_row, interleaved, machine, median, now, shared_data, synth_dataset  # noqa: E402
from genrekit.audio import segment_starts  # noqa: E402
from genrekit.config import FeatureConfig  # noqa: E402
from genrekit.datasets.store import open_store  # noqa: E402

SECTION = "## Feature extraction (`benchmarks/bench_features.py`)"
COLUMNS = (
    "date (UTC)", "machine", "workload", "clips", "repeats", "librosa loop s", "genrekit prepare s", "clips/s",
    "speedup", "max abs dB diff (> -60 dB)", "jobs",
)
CONFIG = FeatureConfig()


def librosa_features(path: Path) -> list[np.ndarray]:
    """The original's per-clip features: one log-mel per 3 s segment (the last one may be short)."""
    import librosa

    y, sr = librosa.load(path, sr=CONFIG.audio.sample_rate)
    win = CONFIG.audio.segment_samples
    out = []
    for start in segment_starts(len(y), CONFIG.audio):
        mel = librosa.feature.melspectrogram(y=y[start : start + win], sr=sr, n_fft=CONFIG.n_fft, hop_length=CONFIG.hop_length, n_mels=CONFIG.n_mels)
        out.append(librosa.power_to_db(mel, ref=np.max))
    return out


def librosa_whole_clip(path: Path) -> np.ndarray:
    """The issue's literal baseline: one melspectrogram + power_to_db over the whole clip (no segments)."""
    import librosa

    y, sr = librosa.load(path, sr=CONFIG.audio.sample_rate)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=CONFIG.n_fft, hop_length=CONFIG.hop_length, n_mels=CONFIG.n_mels)
    return librosa.power_to_db(mel, ref=np.max)


def librosa_loop(paths: list[Path], per_clip: Callable[[Path], object] = librosa_features) -> None:
    for p in paths:
        per_clip(p)


def subset(root: Path, limit: int | None, into: Path) -> Path:
    """The first ``limit`` clips of a genre-folder dataset, taken round-robin over genres, as symlinks."""
    by_genre = [sorted(p for p in d.iterdir() if p.suffix in (".ogg", ".wav", ".au")) for d in sorted(root.iterdir()) if d.is_dir()]
    picked = [clips[i] for i in range(max(map(len, by_genre))) for clips in by_genre if i < len(clips)]
    for p in picked[:limit]:
        (into / p.parent.name).mkdir(parents=True, exist_ok=True)
        (into / p.parent.name / p.name).symlink_to(p.resolve())
    return into


def max_db_difference(store_path: Path, n_check: int) -> tuple[float, int]:
    """Max |genrekit - librosa| dB over bins librosa puts above -60 dB, full segments of the first clips."""
    store = open_store(store_path)
    worst, checked = 0.0, 0
    for track in store.tracks[:n_check]:
        rows = np.flatnonzero(store.track_ids == track.track_id)
        for row, ref in zip(rows, librosa_features(track.path)):
            if ref.shape[1] != store.features.shape[2]:
                continue  # a short final segment: librosa frames it differently, genrekit zero-pads it
            mask = ref > -60
            worst = max(worst, float(np.abs(store.features[row].astype(np.float32) - ref)[mask].max()))
        checked += 1
    return worst, checked


def run(name: str, root: Path, n_clips: int, repeats: int, jobs: int, n_check: int, work: Path, record: bool) -> None:
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    stores = work / f"stores-{name}"

    def genrekit() -> None:
        shutil.rmtree(stores, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "genrekit", "prepare", str(root), "--out", str(stores), "--jobs", str(jobs)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert open_store(stores).meta["n_tracks"] == n_clips

    librosa_features(paths[0])  # imports and numba compilation are not per-clip work
    librosa_whole_clip(paths[0])
    times = interleaved(
        {"librosa": lambda: librosa_loop(paths), "librosa whole clip": lambda: librosa_loop(paths, librosa_whole_clip), "genrekit": genrekit},
        repeats,
    )
    lib, whole, gk = median(times["librosa"]), median(times["librosa whole clip"]), median(times["genrekit"])
    diff, checked = max_db_difference(stores, n_check)
    print(
        f"{name}: {n_clips} clips, {repeats} repeats: librosa loop {lib:.1f} s, genrekit prepare (jobs={jobs}) {gk:.1f} s "
        f"({n_clips / gk:.1f} clips/s): {lib / gk:.2f}x faster (target >= 4x); max |dB diff| above -60 dB {diff:.4f} "
        f"over {checked} clips (target <= 0.05)"
    )
    print(f"  vs one melspectrogram per whole clip (not the stored per-segment features): librosa {whole:.1f} s, {whole / gk:.2f}x")
    print("  all runs, s: " + ", ".join(f"{k} {[round(t, 1) for t in v]}" for k, v in times.items()))
    if record:
        append_row(SECTION, COLUMNS, (now(), machine(), name, n_clips, repeats, f"{lib:.1f} (whole clip {whole:.1f})", f"{gk:.1f}",
                                      f"{n_clips / gk:.1f}", f"**{lib / gk:.2f}x** ({whole / gk:.2f}x)", f"{diff:.4f} ({checked} clips)", jobs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="synthetic 30 s clips")
    parser.add_argument("--dev-limit", type=int, default=None, help="gtzan-dev clips (default: all 348; 0 skips them)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--check", type=int, default=30, help="clips compared with librosa")
    parser.add_argument("--quick", action="store_true", help="--n 300 --dev-limit 100 (what make bench runs)")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.n, args.dev_limit = 300, 100
    clips = Path(tempfile.gettempdir()) / "genrekit-bench-clips"
    synth_dataset(clips, args.n)
    with tempfile.TemporaryDirectory(prefix="genrekit-bench-features-") as tmp:
        work = Path(tmp)
        synthetic = subset(clips, args.n, work / "synthetic")
        run("synthetic 30 s WAV", synthetic, args.n, args.repeats, args.jobs, args.check, work, not args.no_record)
        dev = shared_data() / "gtzan-dev"
        if args.dev_limit == 0:
            print("--dev-limit 0: skipped the real-data run")
        elif dev.is_dir():
            picked = subset(dev, args.dev_limit, work / "gtzan-dev")
            n_dev = sum(1 for p in picked.rglob("*") if p.is_symlink())
            run("gtzan-dev OGG", picked, n_dev, args.repeats, args.jobs, args.check, work, not args.no_record)
        else:
            print(f"{dev} not found: skipped the real-data run")


if __name__ == "__main__":
    main()
