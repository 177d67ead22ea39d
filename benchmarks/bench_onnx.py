"""The shipped model on one thread: PyTorch (the float32 reference), onnxruntime float32 and ``auto``
(onnxruntime with the shipped int8 timbral convolutions), in the same run.

- **latency**: ``predict`` of real 30 s dev clips (decode, features, model, vote) in this process, one
  thread, the backends interleaved so load changes hit all alike; p50 wall and CPU over ``--repeats`` clips.
- **cold start**: wall time of a fresh ``genrekit predict one.wav`` per backend, median of ``--repeats``
  (the float32 export is cached after the first load, see ``genrekit.runtime.onnx.cache_dir``; the first is not timed).
- **throughput**: tracks/s of ``predict_many`` over ``--tracks`` dev clips with 1 job (in this process)
  and 2 (worker processes that each load the model and run it: start-up is included), ``auto``.
- **agreement** (``--agreement``, ~10 minutes with 2 jobs): top-1 of each onnxruntime path vs PyTorch
  on every dev clip and excerpt, and the largest probability difference.

Prediction vs outcome: session 3 measured float32 onnxruntime at 0.31-0.33 s a track, its network alone
~0.28 s, near this CPU's float32 peak; the timbral convolutions (~75 % of it) run 2-2.5x faster as
``QLinearConv`` in a microbenchmark, so predicted ~0.20 s for ``auto``. Outcomes: benchmarks/RESULTS.md,
section "Shipped model"; agreement of the int8 graph: reports/quantization.md.

    .venv/bin/python benchmarks/bench_onnx.py [--repeats 7] [--tracks 40] [--agreement]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _common import REPO, append_row, machine, median, now, predict_p50, shared_data

BACKENDS = ("torch", "onnxruntime", "auto")


def _clips(n: int) -> list[Path]:
    clips = sorted((shared_data() / "gtzan-dev").glob("*/*.*"))
    return clips[:: max(1, len(clips) // n)][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tracks", type=int, default=40)
    parser.add_argument("--agreement", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from genrekit import load_model

    models = {b: load_model(backend=b) for b in BACKENDS}
    clips = _clips(args.repeats)
    p50, cpu50 = predict_p50(models, clips)
    print("latency p50 per 30 s track, 1 thread (wall / CPU s): " + ", ".join(f"{k} {p50[k]:.3f} / {cpu50[k]:.3f}" for k in models)
          + f"; torch / auto {p50['torch'] / p50['auto']:.2f}x, onnxruntime / auto {p50['onnxruntime'] / p50['auto']:.2f}x")

    clip = str(clips[0])
    cold: dict[str, list[float]] = {k: [] for k in models}
    for i in range(args.repeats + 1):
        for backend in cold:
            start = time.perf_counter()
            subprocess.run([str(REPO / ".venv/bin/genrekit"), "predict", clip, "--backend", backend], check=True, capture_output=True)
            if i:  # the first run of each fills the export cache
                cold[backend].append(time.perf_counter() - start)
    print("cold start genrekit predict one.wav: " + ", ".join(f"{k} {median(v):.2f} s" for k, v in cold.items()))

    tracks = _clips(args.tracks)
    rate = {}
    for jobs in (1, 2):
        start = time.perf_counter()
        results = list(models["auto"].predict_many(tracks, jobs=jobs))
        rate[jobs] = len(results) / (time.perf_counter() - start)
    print(f"throughput, auto, {len(tracks)} tracks: {rate[1]:.2f} tracks/s with 1 job, {rate[2]:.2f} with 2 ({rate[2] / rate[1]:.2f}x)")

    agreement = "not run"
    if args.agreement:
        files = sorted((shared_data() / "gtzan-dev").glob("*/*.*")) + sorted((shared_data() / "gtzan-dev-excerpts").glob("*/*.*"))
        results = {k: list(m.predict_many(files, jobs=2)) for k, m in models.items()}
        parts = []
        for k in ("onnxruntime", "auto"):
            same = sum(a.genre == b.genre for a, b in zip(results["torch"], results[k]))
            worst = max(float(np.abs(np.subtract(list(a.probabilities.values()), list(b.probabilities.values()))).max()) for a, b in zip(results["torch"], results[k]))
            parts.append(f"{k}: {same}/{len(files)} top-1, max abs dp {worst:.1e}")
        agreement = "; ".join(parts)
        print(f"agreement vs torch: {agreement}")

    append_row(
        "Shipped model: PyTorch vs onnxruntime float32 vs auto (int8 timbral convolutions) (bench_onnx.py)",
        ["date", "machine", "p50 torch / onnxruntime / auto s", "torch / auto", "onnxruntime / auto", "CPU p50 torch / onnxruntime / auto s",
         "cold torch / onnxruntime / auto s", "tracks/s 1 job", "tracks/s 2 jobs", "agreement vs torch"],
        [now(), machine(), " / ".join(f"{p50[k]:.3f}" for k in BACKENDS),
         f"{p50['torch'] / p50['auto']:.2f}x", f"{p50['onnxruntime'] / p50['auto']:.2f}x", " / ".join(f"{cpu50[k]:.3f}" for k in BACKENDS), " / ".join(f"{median(cold[k]):.2f}" for k in BACKENDS),
         f"{rate[1]:.2f}", f"{rate[2]:.2f}", agreement],
    )


if __name__ == "__main__":
    sys.exit(main())
