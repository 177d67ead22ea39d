"""Start-up of the lean runtime (issue 20): what a cold ``genrekit predict one.wav`` spends beyond the work
itself, against the import floor, pair by pair in one run; ``serve`` ready time, request p50 and CPU use
at idle; "before" is the same commands run from the commit before the torch-free runtime (``--before``,
checked out into a temporary worktree and run with this venv, which has torch).

- floor: ``python -c "import onnxruntime, numpy, soundfile, soxr"`` (what any onnxruntime classifier loads);
- cold: ``genrekit predict one.wav`` (the shipped default model, a 30 s WAV), wall time and peak RSS;
- warm: ``predict`` of the same file in a process that has the model loaded (median of the repeats);
- start-up = cold - warm; the target is start-up <= 2x the floor, peak <= 150 MB.
- serve: seconds from start to the first 200 of ``/healthz``; p50 of ``POST /v1/predict`` with a 30 s
  clip; the server's CPU seconds over ``--idle`` seconds with no requests, after a burst.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--before 175bd6d]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, append_row, machine, now, peak_rss, synth_clip

PYTHON = sys.executable
FLOOR = "import onnxruntime, numpy, soundfile, soxr"
WARM = """
import json, sys, time
from genrekit import load_model
model = load_model()
model.predict(sys.argv[1])
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); model.predict(sys.argv[1]); times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def _env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serve(src: Path, clip: Path, requests: int, idle: float) -> dict[str, float]:
    """Ready time, request p50 and idle CPU of ``genrekit serve`` from ``src``."""
    port = _free_port()
    t0 = time.perf_counter()
    server = subprocess.Popen([PYTHON, "-m", "genrekit", "serve", "--port", str(port)], env=_env(src), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        ready = time.perf_counter() - t0
        body, boundary = clip.read_bytes(), "genrekitbench"
        payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{clip.name}\"\r\n"
                   "Content-Type: application/octet-stream\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
        latencies = []
        for _ in range(requests):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", data=payload, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            t = time.perf_counter()
            urllib.request.urlopen(request, timeout=60).close()
            latencies.append(time.perf_counter() - t)
        before = _cpu_seconds(server.pid)
        time.sleep(idle)
        idle_cpu = _cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"ready": ready, "p50": statistics.median(latencies), "idle_cpu": idle_cpu}


def _measure(label: str, src: Path, clip: Path, repeats: int) -> dict[str, float]:
    env = _env(src)
    cold, floor, peaks = [], [], []
    for _ in range(repeats):  # pairs: floor, then cold, in turns
        floor.append(_wall([PYTHON, "-c", FLOOR], env))
        cold.append(_wall([PYTHON, "-m", "genrekit", "predict", str(clip)], env))
    for _ in range(max(1, repeats // 2)):
        peaks.append(_peak(src, clip)[1])
    warm = json.loads(subprocess.run([PYTHON, "-c", WARM, str(clip), str(repeats)], check=True, capture_output=True, text=True, env=env).stdout)
    row = {"floor": statistics.median(floor), "cold": statistics.median(cold), "warm": statistics.median(warm), "peak_mb": max(peaks)}
    row["startup"] = row["cold"] - row["warm"]
    row["ratio"] = row["startup"] / row["floor"]
    print(f"{label}: floor {row['floor']:.3f} s, cold predict {row['cold']:.3f} s, warm predict {row['warm']:.3f} s, "
          f"start-up {row['startup']:.3f} s = {row['ratio']:.2f}x the floor (target <= 2x), peak RSS {row['peak_mb']:.0f} MB (target <= 150)")
    return row


def _peak(src: Path, clip: Path) -> tuple[float, float, int]:
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src)
    try:
        return peak_rss([PYTHON, "-m", "genrekit", "predict", str(clip)], timeout=120)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", default=None, help="a commit to measure side by side (e.g. 175bd6d, before the torch-free runtime)")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "one.wav"
        sf.write(clip, synth_clip(0), 22050, subtype="PCM_16")
        sources = {"now": REPO / "src"}
        if args.before:
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", f"{tmp}/before", args.before], check=True)
            sources = {f"before ({args.before})": Path(tmp) / "before" / "src", **sources}
        try:
            rows = {label: _measure(label, src, clip, args.repeats) for label, src in sources.items()}
            serves = {label: _serve(src, clip, args.requests, args.idle) for label, src in sources.items()}
        finally:
            if args.before:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", f"{tmp}/before"], check=False)
    for label, s in serves.items():
        print(f"{label}: serve ready {s['ready']:.2f} s (target <= 1 s), POST /v1/predict p50 {s['p50'] * 1000:.0f} ms, {s['idle_cpu']:.2f} CPU s over {args.idle:g} s idle")
    for label, r in rows.items():
        s = serves[label]
        append_row(
            "## Start-up of the lean runtime (`benchmarks/bench_startup.py`)",
            ["date (UTC)", "machine", "code", "runs", "floor s", "cold predict s", "warm predict s", "start-up / floor", "peak MB", "serve ready s", "serve p50 ms", f"idle CPU s / {args.idle:g} s"],
            [now(), machine(), label, args.repeats, f"{r['floor']:.3f}", f"{r['cold']:.3f}", f"{r['warm']:.3f}", f"**{r['ratio']:.2f}x**",
             f"{r['peak_mb']:.0f}", f"{s['ready']:.2f}", f"{s['p50'] * 1000:.0f}", f"{s['idle_cpu']:.2f}"],
        )


if __name__ == "__main__":
    main()
