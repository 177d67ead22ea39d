"""Library runs: tracks/s of the local and the Ray engine at 1 and 2 CPUs on the same files, and Ray's cost.

Workload: ``--tracks`` synthetic 30 s WAVs classified into a fresh Parquet results file by
:func:`genrekit.library.run.classify_library` (what ``genrekit predict DIR --out results.parquet`` runs), with
cnn2 (random weights: inference costs the same as trained) or ``--model``.

Each configuration runs in its own process pinned to its CPUs (``sched_setaffinity``, inherited by the
worker processes and by the Ray instance it starts), in turns (local 1, local 2, Ray 1, Ray 2, local 1, ...)
so load changes on this shared machine hit all alike; figures are medians over ``--repeats``.

- local, N CPUs: ``jobs=N`` decoding processes, the model on one thread in the driver (as the CLI runs it).
- Ray, N CPUs: ``ray.init(num_cpus=N)``: decode tasks + one model actor (on one CPU, each takes half).
- Each process runs a 2-file warm-up, then a quarter of the tracks, then all of them (fresh results files).
  tracks/s is the marginal rate between the last two, (n - n/4) / (t_n - t_n/4): what a long run sustains,
  with every per-run fixed cost cancelled. That fixed cost (worker pool start; for Ray also the model
  actors, started anew by every Ray Data job, and the job's planning) is reported as "per-run s", and
  ``ray.init`` (once per cluster) apart.
- CPU s a track = CPUs / tracks/s of Ray at 2 CPUs: the per-track cost the README's cluster estimate scales.

Prediction vs outcome: Ray's tasks and actor add serialization of features (~0.2 MB a 30 s track as
pickled float32 through the object store) and scheduling per block of 4 files, but run the model in its
own process instead of beside the decoders: predicted ~0.8-1x the local engine's tracks/s at 2 CPUs, and
a fixed start-up of ~5-10 s. Outcome: see RESULTS.md.

    .venv/bin/python benchmarks/bench_library.py [--tracks 200] [--repeats 3] [--model default]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import append_row, machine, median, now, random_model, synth_dataset

SECTION = "## Library runs: local vs Ray engine (`benchmarks/bench_library.py`)"
COLUMNS = (
    "date (UTC)", "machine", "model", "tracks", "runs", "local tracks/s 1 CPU", "Ray tracks/s 1 CPU", "local tracks/s 2 CPUs",
    "Ray tracks/s 2 CPUs", "Ray / local, 2 CPUs", "Ray start-up s: init + per run (local per run)", "Ray CPU s a track", "1M such tracks, 10 nodes x 16 CPUs",
)
CONFIGS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))


def run_one(engine: str, cpus: int, data: Path, model: str, out_dir: Path) -> dict[str, float]:
    """One configuration, in this process pinned to ``cpus`` CPUs: ``ray.init`` and run seconds."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cpus]))
    import torch

    from genrekit.classifier import load_model
    from genrekit.engines.ray import RayEngine
    from genrekit.library.formats import read_results
    from genrekit.library.run import classify_library

    torch.set_num_threads(1)  # the driver's model thread, as `genrekit predict` sets it
    classifier = load_model(model)
    runner: str | RayEngine = "local"
    init_s = 0.0
    if engine == "ray":
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        init_s = time.perf_counter() - t0
        runner = RayEngine()
    files = sorted(data.rglob("*.wav"))
    seconds = []
    for run, subset in enumerate((files[:2], files[: len(files) // 4], files)):
        out = out_dir / f"{engine}{cpus}-{run}.parquet"
        t0 = time.perf_counter()
        report = classify_library(subset, out, classifier, engine=runner, jobs=cpus)
        seconds.append(time.perf_counter() - t0)
        assert report.n_computed == report.n_files == len(read_results(out)) == len(subset) and not report.errors, report
    return {"init_s": init_s, "small_s": seconds[1], "full_s": seconds[2], "n_small": len(files) // 4, "n_full": len(files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--tracks", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="", help="a model name or file (default: cnn2 with random weights)")
    parser.add_argument("--one", nargs=4, metavar=("ENGINE", "CPUS", "DATA", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        engine, cpus, data, model = args.one
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_one(engine, int(cpus), Path(data), model, Path(tmp))))
        return
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("bench_library needs 2 CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synth_dataset(root / "data", args.tracks)
        model = args.model or str(random_model(root / "cnn2.pt"))
        label = args.model or "cnn2 (random weights)"
        runs: dict[tuple[str, int], list[dict[str, float]]] = {c: [] for c in CONFIGS}
        for _ in range(args.repeats):
            for engine, cpus in CONFIGS:
                cmd = [sys.executable, __file__, "--one", engine, str(cpus), str(root / "data"), model]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"{engine} at {cpus} CPU(s) failed:\n{done.stderr[-3000:]}")
                runs[(engine, cpus)].append(json.loads(done.stdout.strip().splitlines()[-1]))
    rate = {c: median([(r["n_full"] - r["n_small"]) / (r["full_s"] - r["small_s"]) for r in rs]) for c, rs in runs.items()}
    fixed = {c: median([r["small_s"] - r["n_small"] / rate[c] for r in rs]) for c, rs in runs.items()}
    init = median([r["init_s"] for r in runs[("ray", 2)]])
    cpu_per_track = 2 / rate[("ray", 2)]
    million_min = 1e6 * cpu_per_track / (10 * 16) / 60
    for (engine, cpus), value in rate.items():
        print(f"{engine} engine, {cpus} CPU(s): {value:.1f} tracks/s, {fixed[(engine, cpus)]:.1f} s per run "
              f"({args.tracks} 30 s WAVs, {label}, median of {args.repeats})")
    ratio = rate[("ray", 2)] / rate[("local", 2)]
    print(f"Ray / local at 2 CPUs: {ratio:.2f}x tracks/s; ray.init {init:.1f} s once, then {fixed[('ray', 2)]:.1f} s per run "
          f"(local {fixed[('local', 2)]:.1f} s)")
    print(f"Ray CPU s a 30 s track: {cpu_per_track:.3f}; 1M such tracks on 10 nodes x 16 CPUs at that cost: {million_min:.0f} min")
    append_row(SECTION, COLUMNS, [
        now(), machine(), label, args.tracks, args.repeats, *(f"{rate[c]:.1f}" for c in (("local", 1), ("ray", 1), ("local", 2), ("ray", 2))),
        f"**{ratio:.2f}x**", f"{init:.1f} + {fixed[('ray', 2)]:.1f} (local {fixed[('local', 2)]:.1f})", f"{cpu_per_track:.3f}", f"{million_min:.0f} min",
    ])


if __name__ == "__main__":
    main()
