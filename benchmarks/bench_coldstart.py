"""Cold start: wall time of ``genrekit predict one.wav`` in a fresh process (interpreter, imports, model load,
one 30 s prediction), for a cnn2 model and for the shipped default model (musicnn-linear, run by --backend auto), median of
``--repeats``, against the floor measured in the same run: a fresh interpreter that only imports torch, numpy
and soundfile (what any torch-based predictor must load).

Startup is timed apart from compute, interleaved with the rest: ``genrekit predict`` on an undecodable file
does everything but the compute (interpreter, imports, CLI parsing, model load; it exits 1 at decoding), and
compute = predict - startup. A probe, a fresh process that imports genrekit, loads the model and times its
first and a second ``predict`` of the clip, shows first-call costs, with one thread (as the CLI runs it) and
with torch's default 2 threads (the CLI's setting before). Also runs ``python -X importtime`` on the cnn2
command and lists the heavy modules that must stay off the predict path (matplotlib, sklearn, fastapi,
uvicorn, librosa, scipy, numba, pandas). Rows before 2026-11-24 06:40 (section "Cold start") timed cnn2
only, without the breakdown. The floor without shutdown GC is the same import ending in ``gc.freeze()``,
as the CLI now ends.

Prediction vs outcome:

- Before: the predict path imported librosa (mel filterbank: scipy.signal, numba): 1.5 s of 6.2 s busy.
  The filterbank is computed in numpy now: predict imports none of the heavy modules. Outcome (load ~4):
  2.57 s vs a 1.51 s floor; the ~1 CPU s over it was not broken down.
- Broken down (-X importtime, cProfile, per-stage probes, load ~5): genrekit's own modules beyond torch
  ~20 ms; typer + rich + the pydantic TypeAdapters typer 0.29 builds for predict's options ~160 ms;
  model load ~30 ms; the first predict ~80 ms (oneDNN JIT, first FFT, fresh pages) vs ~40 ms warm. The
  big item was threads: with torch's default 2 threads on a busy 2-core machine every op's second thread
  waits for a core, and the first predict took 0.45-0.65 s instead of ~80 ms. Predicted: one model
  thread in the CLI saves ~0.4 s. Outcome (load ~3, 7 runs): the CLI 2.02 s vs a 1.54 s floor (before:
  library probe 2.38 s with 2 threads vs 1.95 s with 1). In this script's probe (load ~5): first
  predict 88 ms with 1 thread vs 465 ms with 2 (cnn2); 1.87 vs 2.94 s for the default model.
- Then the garbage collector (gc.callbacks timing, exit timestamps): a process that imported torch took
  0.48-0.63 s to exit, 0.11 s after ``gc.freeze()`` (0.02 s with ``os._exit``): Python's shutdown
  collections walk torch's ~170,000 objects. And the full collections while importing torch cost 60-200 ms
  each (204 ms in all in one CLI run). Predicted: freezing on the way out saves ~0.4 s; importing torch
  and loading the model with the collector off, then freezing, another ~0.2 s. Outcome (bench rows):
  with one thread, 3.03 s vs a 2.31 s floor (1.31x, load 4.5); adding the freeze on exit, 2.54 vs
  2.50 s (1.02x, load 4.7); adding the collector off during the load, 1.38 s wall, 1.32 CPU s vs a
  1.47 s floor (0.94x, load 3.6): the target holds, with the CLI 0.06 s over a floor that also skips the
  shutdown collections (1.25 s). Startup 1.30 s, compute 0.08 s. The default model: startup 1.35 s,
  then 1.27 s of musicnn compute (worked on in musicnn.py, see bench_musicnn.py): 2.62 s.
- Not done, measured too small or too risky: lazy imports inside genrekit.classifier (soxr,
  concurrent.futures: ~3 ms); building the model on the meta device to skip random init (~9 ms, but
  unsafe for modules holding non-persistent tensors); replacing typer on the predict path (~0.15 s,
  and a second parser to keep in sync with the typer one); ``os._exit`` after flushing (~0.1 s more
  than the freeze, but it skips atexit handlers and the flushing of files a command left open).

    .venv/bin/python benchmarks/bench_coldstart.py [--repeats 5] [--no-default]
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

import soundfile as sf

from _common import append_row, machine, median, now, random_model, synth_clip

SECTION = "## Cold start per model (`benchmarks/bench_coldstart.py`)"
COLUMNS = (
    "date (UTC)", "machine", "runs", "model", "genrekit predict s (CPU s)", "import torch floor s (CPU s)", "over floor",
    "floor without shutdown GC s (CPU s)",
    "startup s (CPU s): interpreter, imports, CLI, load", "compute s", "probe first / warm predict ms, 1 thread", "probe first predict ms, 2 threads", "target", "heavy modules imported",
)
HEAVY = ("matplotlib", "sklearn", "fastapi", "uvicorn", "librosa", "scipy", "numba", "pandas")
FLOOR = "import torch, numpy, soundfile"
FLOOR_FROZEN = FLOOR + "; import gc; gc.freeze()"  # what the CLI does on exit: shutdown skips the GC walk
PROBE = """
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[3]))
from genrekit import load_model
t1 = time.perf_counter()
model = load_model(sys.argv[1])
t2 = time.perf_counter()
model.predict(sys.argv[2])
t3 = time.perf_counter()
model.predict(sys.argv[2])
t4 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "first": t3 - t2, "warm": t4 - t3}))
"""


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, its stdout) of one fresh process; exit code 1 is expected of a failing predict."""
    before = os.times()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if done.returncode not in (0, 1):
        raise subprocess.CalledProcessError(done.returncode, cmd)
    out = done.stdout
    wall = time.perf_counter() - t0
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system), out


def import_profile(cmd: list[str]) -> tuple[list[tuple[float, str]], list[str]]:
    """(top-level imports by cumulative seconds, heavy modules imported) from ``-X importtime``."""
    result = subprocess.run([sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True, check=True)
    top: list[tuple[float, str]] = []
    names = set()
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        names.add(name.strip())
        if not name.startswith("  "):  # a top-level import
            top.append((int(cumulative) / 1e6, name.strip()))
    heavy = sorted({n.split(".")[0] for n in names if n.split(".")[0] in HEAVY})
    return sorted(top, reverse=True), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-default", action="store_true", help="time the cnn2 model only (the default model's compute is seconds)")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    from genrekit.classifier import available_models

    with tempfile.TemporaryDirectory(prefix="genrekit-bench-coldstart-") as tmp:
        clip = Path(tmp) / "one.wav"
        sf.write(clip, synth_clip(3), 22050, subtype="PCM_16")
        broken = Path(tmp) / "broken.wav"
        broken.write_bytes(b"not audio")
        models = {"cnn2 (random weights)": str(random_model(Path(tmp) / "cnn2.pt"))}
        if not args.no_default and "default" in available_models():
            models["default (musicnn-linear, auto)"] = "default"
        commands = {"floor": [sys.executable, "-c", FLOOR], "floor frozen": [sys.executable, "-c", FLOOR_FROZEN]}
        for name, model in models.items():
            commands[f"cli {name}"] = [sys.executable, "-m", "genrekit", "predict", str(clip), "--model", model]
            commands[f"startup {name}"] = [sys.executable, "-m", "genrekit", "predict", str(broken), "--model", model]
            for threads in (1, 2):
                commands[f"probe{threads} {name}"] = [sys.executable, "-c", PROBE, model, str(clip), str(threads)]
        run(commands[f"cli {next(iter(models))}"])  # warm the page cache
        wall: dict[str, list[float]] = {k: [] for k in commands}
        cpu: dict[str, list[float]] = {k: [] for k in commands}
        probes: dict[str, list[dict[str, float]]] = {k: [] for k in commands if k.startswith("probe")}
        for _ in range(args.repeats):
            for key, cmd in commands.items():
                w, c, out = run(cmd)
                wall[key].append(w)
                cpu[key].append(c)
                if key in probes:
                    probes[key].append(json.loads(out.strip().splitlines()[-1]))
        top, heavy = import_profile(commands[f"cli {next(iter(models))}"][1:])
    f, fc = median(wall["floor"]), median(cpu["floor"])
    ff, ffc = median(wall["floor frozen"]), median(cpu["floor frozen"])
    print(f"floor ({FLOOR}): {f:.2f} s wall, {fc:.2f} s CPU (median of {args.repeats}); "
          f"without the shutdown GC walk (gc.freeze, as the CLI exits): {ff:.2f} s wall, {ffc:.2f} s CPU")
    for name in models:
        p, pc = median(wall[f"cli {name}"]), median(cpu[f"cli {name}"])
        stage = {t: {k: median([r[k] for r in probes[f"probe{t} {name}"]]) for k in ("imports", "load", "first", "warm")} for t in (1, 2)}
        s, sc = median(wall[f"startup {name}"]), median(cpu[f"startup {name}"])
        print(f"{name}: genrekit predict one.wav {p:.2f} s wall, {pc:.2f} s CPU (target <= 2 s); {p / f:.2f}x the floor, +{p - f:.2f} s")
        print(f"  startup (interpreter, imports, CLI, model load) {s:.2f} s wall, {sc:.2f} s CPU: {s - f:+.2f} s over the floor, "
              f"{s - ff:+.2f} s over the floor without the shutdown GC walk; compute {p - s:.2f} s")
        print(f"  probe: imports {stage[1]['imports']:.2f} s, load {stage[1]['load'] * 1000:.0f} ms, first predict {stage[1]['first'] * 1000:.0f} ms, "
              f"warm {stage[1]['warm'] * 1000:.0f} ms (1 thread); with 2 threads first {stage[2]['first'] * 1000:.0f} ms, warm {stage[2]['warm'] * 1000:.0f} ms")
        if not args.no_record:
            append_row(SECTION, COLUMNS, (
                now(), machine(), args.repeats, name, f"{p:.2f} ({pc:.2f})", f"{f:.2f} ({fc:.2f})", f"**{p / f:.2f}x** (+{p - f:.2f} s)",
                f"{ff:.2f} ({ffc:.2f})",
                f"{s:.2f} ({sc:.2f}); {s - f:+.2f} over floor, {s - ff:+.2f} over the one without GC", f"{p - s:.2f}", f"{stage[1]['first'] * 1000:.0f} / {stage[1]['warm'] * 1000:.0f}",
                f"{stage[2]['first'] * 1000:.0f}", "≤ 2 s", ", ".join(heavy) or "none",
            ))
    print("costliest top-level imports (cnn2 command): " + ", ".join(f"{name} {s:.2f} s" for s, name in top[:8]))
    print(f"heavy modules imported by predict: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
