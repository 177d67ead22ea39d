"""Load benchmark of ``genrekit serve`` on loopback: throughput and latency, then a deliberately overfilled queue.

Phase 1: ``--clients`` clients post a 30 s clip back to back for at most ``--seconds`` or
``--max-requests`` requests, whichever comes first; reports requests/s, p50/p99 latency, errors.
Phase 2: ``--overfill`` clients post at the same instant, far more than workers + queue admit;
counts 200s and 503s, checks the server still answers, and compares its RSS with the warm baseline.
Prints the figures and appends a dated row to benchmarks/RESULTS.md.

Run with ``nice``: ``nice .venv/bin/python benchmarks/bench_serve_load.py --seconds 60``.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from _common import append_row, machine, now, shared_data

SECTION = "## Serve load (`benchmarks/bench_serve_load.py`)"
COLUMNS = (
    "date (UTC)", "machine", "model", "workers/queue", "clients × clip", "requests", "req/s", "p50 ms", "p99 ms", "errors",
    "overfill: sent/200/503/other", "RSS MB: warm → after load → after overfill",
)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    retry_after_missing: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, seconds: float, retry_after: str | None) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200:
                self.latencies.append(seconds)
            if status == 503 and not (retry_after or "").isdigit():
                self.retry_after_missing += 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pick_clip(workdir: Path) -> tuple[Path, str]:
    """A real 30 s GTZAN clip from ../shared/data when present, else a synthesized 30 s tone."""
    real = shared_data() / "gtzan-dev" / "rock" / "rock.00000.ogg"
    if real.is_file():
        return real, real.name
    t = np.arange(30 * 22050) / 22050
    path = workdir / "tone30s.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 22050)
    return path, "synth 30 s"


def pick_model(requested: str | None, workdir: Path) -> tuple[str, str]:
    """The shipped default model when installed, else a random-weights cnn1 (same compute, meaningless genres)."""
    from genrekit.classifier import available_models

    if requested:
        return requested, requested
    if "default" in available_models():
        return "default", "default"
    import torch

    from genrekit.checkpoint import Checkpoint, save_checkpoint
    from genrekit.config import FeatureConfig
    from genrekit.datasets.discover import GTZAN_GENRES
    from genrekit.models import build_model

    torch.manual_seed(0)
    path = workdir / "random_cnn1.pt"
    save_checkpoint(Checkpoint("cnn1", {}, build_model("cnn1", (128, 130), 10).state_dict(), list(GTZAN_GENRES), FeatureConfig()), path)
    return str(path), "cnn1 (random weights)"


def post(client: httpx.Client, url: str, clip: Path, tally: Tally) -> None:
    started = time.perf_counter()
    try:
        with open(clip, "rb") as f:
            response = client.post(url, files={"file": (clip.name, f)})
        tally.add(response.status_code, time.perf_counter() - started, response.headers.get("retry-after"))
    except httpx.HTTPError:
        tally.add(0, time.perf_counter() - started, None)


def load_phase(base: str, clip: Path, clients: int, seconds: float, max_requests: int) -> tuple[Tally, float]:
    tally = Tally()
    budget = threading.Semaphore(max_requests)
    deadline = time.monotonic() + seconds

    def client_loop() -> None:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < deadline and budget.acquire(blocking=False):
                post(client, f"{base}/v1/predict", clip, tally)

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.perf_counter() - started


def overfill_phase(base: str, clip: Path, n: int) -> Tally:
    tally = Tally()
    barrier = threading.Barrier(n)

    def one() -> None:
        with httpx.Client(timeout=300) as client:
            barrier.wait()
            post(client, f"{base}/v1/predict", clip, tally)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally


def wait_idle(base: str, timeout: float = 120) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(f"{base}/healthz", timeout=5).json()
        if health["in_flight"] == 0 or time.monotonic() > deadline:
            return health
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", help="model for genrekit serve (default: shipped 'default', else random-weights cnn1)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60, help="phase 1 time bound")
    parser.add_argument("--max-requests", type=int, default=400, help="phase 1 count bound")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--overfill", type=int, default=40, help="simultaneous requests in phase 2")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="genrekit-bench-") as tmp:
        workdir = Path(tmp)
        clip, clip_name = pick_clip(workdir)
        model, model_name = pick_model(args.model, workdir)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "genrekit", "serve", "--model", model, "--port", str(port),
                   "--workers", str(args.workers), "--queue", str(args.queue), "--log-level", "warning"]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    sys.exit(f"server exited: {server.stderr.read() if server.stderr else ''}")
                try:
                    httpx.get(f"{base}/healthz", timeout=2).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        sys.exit("server did not start within 60 s")
                    time.sleep(0.2)

            warm = Tally()
            with httpx.Client(timeout=120) as client:
                for _ in range(3):
                    post(client, f"{base}/v1/predict", clip, warm)
            rss_warm = rss_mb(server.pid)

            load, elapsed = load_phase(base, clip, args.clients, args.seconds, args.max_requests)
            ok = load.statuses.get(200, 0)
            errors = sum(n for status, n in load.statuses.items() if status != 200)
            lat_ms = np.array(load.latencies) * 1000
            rps = ok / elapsed
            p50, p99 = (np.percentile(lat_ms, [50, 99]) if len(lat_ms) else (float("nan"), float("nan")))
            wait_idle(base)
            rss_load = rss_mb(server.pid)

            over = overfill_phase(base, clip, args.overfill)
            health = wait_idle(base)
            time.sleep(2)
            rss_over = rss_mb(server.pid)
            alive = server.poll() is None and health["status"] == "ok"
        finally:
            server.terminate()
            server.wait(timeout=30)

    other = sum(n for status, n in over.statuses.items() if status not in (200, 503))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; model: {model_name}; clip: {clip_name}; "
          f"workers {args.workers}, queue {args.queue}")
    print(f"load: {args.clients} clients, {ok} ok in {elapsed:.1f} s -> {rps:.2f} req/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
          f"errors {errors} {dict(load.statuses)}")
    print(f"overfill: {args.overfill} at once -> {over.statuses.get(200, 0)} ok, {over.statuses.get(503, 0)} x 503 "
          f"({over.retry_after_missing} without Retry-After), {other} other; server alive: {alive}")
    print(f"RSS: warm {rss_warm:.0f} MB, after load {rss_load:.0f} MB, after overfill {rss_over:.0f} MB "
          f"({rss_over / rss_warm:.2f} x warm)")
    if not args.no_record:
        append_row(SECTION, COLUMNS, (
            now(), machine(), model_name, f"{args.workers}/{args.queue}", f"{args.clients} × {clip_name}", f"{ok} in {elapsed:.0f} s",
            f"{rps:.2f}", f"{p50:.0f}", f"{p99:.0f}", errors,
            f"{args.overfill}/{over.statuses.get(200, 0)}/{over.statuses.get(503, 0)}/{other}",
            f"{rss_warm:.0f} → {rss_load:.0f} → {rss_over:.0f}",
        ))
    if errors or other or not alive or over.retry_after_missing:
        sys.exit(1)


if __name__ == "__main__":
    main()
