"""CPU cost of musicnn embeddings (MSD + MTT, :func:`genrekit.musicnn.extract_embeddings`) per 30 s clip.

Times the ten 3 s segments of a real 30 s clip (decoded once, outside the timing), with one torch
thread and with torch's default thread count, and prints CPU seconds (process time, all threads) and
wall seconds per clip, the median of ``--repeats`` runs after one warm-up (weights loaded, caches hot).

    .venv/bin/python benchmarks/bench_musicnn.py [CLIP] [--repeats 5]

The default clip is ``../shared/data/gtzan-dev/rock/`` 's first file (``$GENREKIT_SHARED_DATA`` moves
``../shared/data``), falling back to a shipped sample.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from genrekit import musicnn
from genrekit.audio import load_segments

REPO = Path(__file__).resolve().parents[1]


def _default_clip() -> Path:
    shared = Path(os.environ.get("GENREKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
    clips = sorted((shared / "gtzan-dev" / "rock").glob("rock.*"))
    return clips[0] if clips else REPO / "src" / "genrekit" / "samples" / "hedgewars_rock.ogg"


def _time(segments: np.ndarray, repeats: int) -> tuple[float, float]:
    config = musicnn.default_feature_config()
    musicnn.extract_embeddings(segments, config)  # warm-up
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        musicnn.extract_embeddings(segments, config)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    clip = args.clip or _default_clip()
    segments, _ = load_segments(clip, musicnn.default_feature_config().audio)
    per_clip = 30.0 / (len(segments) * musicnn.SEGMENT_SECONDS)
    default_threads = torch.get_num_threads()
    print(f"clip: {clip} ({len(segments)} segments of 3 s), embedding dim {musicnn.EMBEDDING_DIM}, torch {torch.__version__}")
    for threads in (1, default_threads):
        torch.set_num_threads(threads)
        cpu, wall = _time(segments, args.repeats)
        print(f"threads={threads}: {cpu * per_clip:.2f} CPU s and {wall * per_clip:.2f} wall s per 30 s clip (MSD + MTT)")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
