"""What the ``bench_*.py`` scripts share: synthetic clips, a random-weights model, timing, RSS sampling
and the dated rows of ``benchmarks/RESULTS.md``.

The machines these run on are shared and noisy, so every figure is a ratio to a baseline measured in
the same run, from medians of repeated runs interleaved with the baseline's.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def shared_data() -> Path:
    """``../shared/data`` next to the repository, or ``$GENREKIT_SHARED_DATA``."""
    return Path(os.environ.get("GENREKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def machine() -> str:
    """One line for the results table: architecture, cores, and the 1-minute load when the run started."""
    return f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")


def synth_clip(seed: int, seconds: float = 30.0, sample_rate: int = 22050) -> np.ndarray:
    """A music-like signal: a few decaying harmonic notes over noise, distinct for every seed (the store
    deduplicates byte-identical files, so identical clips would not measure anything)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n, dtype=np.float32) / sample_rate
    y = 0.02 * rng.standard_normal(n).astype(np.float32)
    beat = float(rng.uniform(0.3, 0.8))
    for _ in range(4):
        f0 = float(rng.uniform(80, 800))
        env = np.exp(-((t % beat) / float(rng.uniform(0.05, 0.4)))).astype(np.float32)
        for h in (1, 2, 3):
            y += (0.1 / h) * env * np.sin(2 * np.pi * f0 * h * t + float(rng.uniform(0, 6.3))).astype(np.float32)
    return np.clip(y, -1, 1)


def synth_dataset(root: Path, n: int, *, seconds: float = 30.0, ext: str = "wav") -> list[Path]:
    """``n`` clips as ``root/<genre>/<genre>.NNNNN.<ext>`` (16-bit WAV by default), written once and reused."""
    import soundfile as sf

    paths = []
    for i in range(n):
        genre = GENRES[i % len(GENRES)]
        path = root / genre / f"{genre}.{i:05d}.{ext}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, synth_clip(i, seconds), 22050, subtype="PCM_16" if ext == "wav" else None)
        paths.append(path)
    return paths


def random_model(path: Path, arch: str = "cnn2") -> Path:
    """A model file with random weights: inference costs the same as with trained ones."""
    import torch

    from genrekit.checkpoint import Checkpoint, save_checkpoint
    from genrekit.config import FeatureConfig
    from genrekit.features import default_config, feature_shape
    from genrekit.models import build_model

    config = default_config("musicnn") if arch.startswith("musicnn") else FeatureConfig()
    torch.manual_seed(0)
    model = build_model(arch, feature_shape(config), len(GENRES))
    save_checkpoint(Checkpoint(arch, {}, model.state_dict(), list(GENRES), config, metadata={"description": "random weights"}), path)
    return path


def time_once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Wall seconds of each function, run in turns (a, b, a, b, ...) so load changes hit both alike.

    With ``cpu``, this process's CPU seconds of each call are collected there too: on a shared machine
    they show what a call costs when it has a core to itself (for one-thread, in-process work).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0 = time.process_time()
            times[name].append(time_once(fn))
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - c0)
    return times


def predict_p50(models: dict[str, Any], clips: Sequence[Path]) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU seconds of ``predict`` per clip for each model, the models interleaved clip by
    clip after one untimed call each (first-call costs out of the timings)."""
    for m in models.values():
        m.predict(clips[0])
    times: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {}
    for clip in clips:
        for k, v in interleaved({k: (lambda m=m, c=clip: m.predict(c)) for k, m in models.items()}, 1, cpu).items():
            times[k] += v
    return {k: median(v) for k, v in times.items()}, {k: median(v) for k, v in cpu.items()}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc), in kB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


def peak_rss(cmd: list[str], *, timeout: float, interval: float = 0.05) -> tuple[float, float, int]:
    """Run ``cmd``; return (peak MB of the whole process tree, sampled every ``interval`` s; peak MB of the
    main process as the kernel counts it; exit code, -9 when killed at ``timeout``)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_kb(proc.pid))
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(interval)
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return peak / 1024, usage.ru_maxrss / 1024, proc.returncode


def append_row(section: str, columns: Sequence[str], row: Sequence[object]) -> None:
    """Add a dated row under ``section`` of RESULTS.md (the section and its header are created if missing)."""
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if section not in text:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{header}"
    start = text.index(section)
    lines = text[start:].split("\n")
    end = 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines.insert(end, "| " + " | ".join(str(c) for c in row) + " |")
    RESULTS.write_text(text[:start] + "\n".join(lines))
    print(f"appended to {RESULTS.relative_to(REPO)}")

