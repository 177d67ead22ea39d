"""Memory: peak RSS of ``genrekit prepare`` on few vs many clips, and of ``genrekit predict`` on a 10-minute file.

Each command runs in a fresh process; its whole process tree (main process plus worker processes) is
sampled every 50 ms from /proc, and the main process's own peak comes from the kernel (``ru_maxrss``).
The baseline in the same run is the same command on the small input: ``prepare`` on ``--small`` clips,
``predict`` on a 30 s file. Flat means the ratio stays near 1: features stream through the per-track
cache into the memory-mapped store instead of accumulating in memory, and predict streams a file through
decoding, segmenting, features and the model a batch of segments at a time.

Prediction vs outcome: prepare holds one track per worker plus small per-segment bookkeeping in the main
process (a few hundred bytes a segment), so 3-10x the clips should add well under 10% to the peak.
Measured first: the main process grew 268 -> 333 MB from 100 to 300 clips, because the consolidated
features.npy was written through a memory map whose written pages stay resident; with plain appends it is
54 -> 53 MB (and torch-free). predict on 10 minutes should hold the decoded signal (53 MB float32), its 200
segments (53 MB) and their features (13 MB): ~+120 MB over a 30 s file. Measured first: +766 MB (1077 MB),
because the model ran 256 segments at once (~800 MB of cnn2 activations); at 32 a call: 489 MB, +177 MB.
Streamed (65,536-frame blocks through a streaming resampler, segments cut across blocks, 32 segments per
feature batch and model call) it should hold one block, one batch and its features, so within a few MB of
the 30 s file. Measured: still +67 MB (370 vs 304 MB), the cnn2 activations of a 32-segment call against
the 10 segments of a 30 s clip; with 10 segments a call (also ~2x faster per segment): 312 vs 303 MB,
1.03x, and 315 MB for 30 minutes, so flat; the few MB left are a one-time offset.

    .venv/bin/python benchmarks/bench_memory.py [--small 100 --large 1000] [--only predict] [--model default|cnn2]
    .venv/bin/python benchmarks/bench_memory.py --only train [--train-batch 16]   # cnn2 training peak, with and without --low-memory

``--model default`` (the default) measures the model shipped in the package, which is what a user's
``genrekit predict`` loads; ``--model cnn2`` the original architecture (random weights, same cost).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

import soundfile as sf

from _common import append_row, machine, now, peak_rss, random_model, synth_clip, synth_dataset

SECTION = "## Memory (`benchmarks/bench_memory.py`)"
COLUMNS = ("date (UTC)", "machine", "command", "small input", "large input", "peak RSS MB small: tree (main)", "peak RSS MB large: tree (main)", "large / small (tree)")


def subset(clips: list[Path], into: Path) -> Path:
    for p in clips:
        (into / p.parent.name).mkdir(parents=True, exist_ok=True)
        (into / p.parent.name / p.name).symlink_to(p)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--small", type=int, default=100, help="clips of the small prepare")
    parser.add_argument("--large", type=int, default=1000, help="clips of the large prepare")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long predict input")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per command")
    parser.add_argument("--only", choices=("prepare", "predict", "train"), help="run one measurement (default: prepare and predict)")
    parser.add_argument("--train-clips", type=int, default=200, help="clips of the store that --only train trains cnn2 on")
    parser.add_argument("--train-batch", type=int, default=64, help="batch size of --only train (64: the original's)")
    parser.add_argument("--model", default="default",
                        help="predict with this model: 'default' (the shipped model) or an architecture (cnn1, cnn2, musicnn-head) with random weights")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    genrekit = [sys.executable, "-m", "genrekit"]
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="genrekit-bench-memory-") as tmp:
        work = Path(tmp)
        if args.only in (None, "prepare"):
            rows.append(measure_prepare(genrekit, work, args))
        if args.only in (None, "predict"):
            rows.append(measure_predict(genrekit, work, args))
        if args.only == "train":
            rows.append(measure_train(genrekit, work, args))
    if not args.no_record:
        for row in rows:
            append_row(SECTION, COLUMNS, (now(), machine(), *row))


def measure_prepare(genrekit: list[str], work: Path, args: argparse.Namespace) -> tuple[str, ...]:
    clips = synth_dataset(Path(tempfile.gettempdir()) / "genrekit-bench-clips", args.large)
    prepared = {}
    for n in (args.small, args.large):
        data = subset(clips[:n], work / f"data-{n}")
        prepared[n] = peak_rss([*genrekit, "prepare", str(data), "--out", str(work / f"store-{n}")], timeout=args.timeout)
        shutil.rmtree(work / f"store-{n}")
        print(f"prepare {n} clips: peak RSS {prepared[n][0]:.0f} MB (process tree), {prepared[n][1]:.0f} MB (main), exit {prepared[n][2]}")
    small, large = prepared[args.small], prepared[args.large]
    print(f"prepare: {args.large} vs {args.small} clips: {large[0] / small[0]:.2f}x the peak (flat = ~1)")
    return ("genrekit prepare", f"{args.small} clips", f"{args.large} clips", f"{small[0]:.0f} ({small[1]:.0f})", f"{large[0]:.0f} ({large[1]:.0f})", f"**{large[0] / small[0]:.2f}x**")


def measure_predict(genrekit: list[str], work: Path, args: argparse.Namespace) -> tuple[str, ...]:
    model = args.model if args.model == "default" else str(random_model(work / f"{args.model}.pt", args.model))
    short, long = work / "short.wav", work / "long.wav"
    sf.write(short, synth_clip(1), 22050, subtype="PCM_16")
    with sf.SoundFile(long, "w", 22050, 1, subtype="PCM_16") as f:
        for i in range(int(args.minutes * 2)):
            f.write(synth_clip(1000 + i))
    predicted = {}
    for name, path in (("30 s", short), (f"{args.minutes:g} min", long)):
        predicted[name] = peak_rss([*genrekit, "predict", str(path), "--model", str(model), "--jobs", "1"], timeout=args.timeout)
        print(f"predict {name}: peak RSS {predicted[name][0]:.0f} MB (process tree), {predicted[name][1]:.0f} MB (main), exit {predicted[name][2]}")
    a, b = predicted["30 s"], predicted[f"{args.minutes:g} min"]
    print(f"predict: {args.minutes:g} min vs 30 s file: {b[0] / a[0]:.2f}x the peak, +{b[0] - a[0]:.0f} MB")
    return (f"genrekit predict --model {args.model}", "30 s WAV", f"{args.minutes:g} min WAV", f"{a[0]:.0f} ({a[1]:.0f})", f"{b[0]:.0f} ({b[1]:.0f})", f"**{b[0] / a[0]:.2f}x**")


def measure_train(genrekit: list[str], work: Path, args: argparse.Namespace) -> tuple[str, ...]:
    """cnn2 for 2 epochs (at the original's batch 64 unless --train-batch), as usual and with --low-memory (same weights, heap not kept)."""
    clips = synth_dataset(Path(tempfile.gettempdir()) / "genrekit-bench-clips", args.train_clips)
    data = subset(clips, work / "train-data")
    store = work / "train-store"
    peak_rss([*genrekit, "prepare", str(data), "--out", str(store)], timeout=args.timeout)
    peaks = {}
    for flag in ("", "--low-memory"):
        run = [*genrekit, "train", str(store), "--model", "cnn2", "--epochs", "2", "--batch-size", str(args.train_batch),
               "--runs-dir", str(work / "runs"), *([flag] if flag else [])]
        peaks[flag] = peak_rss(run, timeout=args.timeout)
        newest = max((work / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
        with open(newest / "metrics.csv") as f:
            epoch_seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
        print(f"train cnn2 {flag or '(default)'}: peak RSS {peaks[flag][0]:.0f} MB (process tree), {peaks[flag][1]:.0f} MB (main), "
              f"epochs {', '.join(f'{t:.0f}' for t in epoch_seconds)} s, exit {peaks[flag][2]}")
    a, b = peaks[""], peaks["--low-memory"]
    print(f"train: --low-memory {b[1] / a[1]:.2f}x the peak")
    return (f"genrekit train cnn2, batch {args.train_batch}, 2 epochs", f"{args.train_clips} clips", "same, --low-memory", f"{a[0]:.0f} ({a[1]:.0f})", f"{b[0]:.0f} ({b[1]:.0f})", f"**{b[1] / a[1]:.2f}x**")


if __name__ == "__main__":
    main()
