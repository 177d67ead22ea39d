"""Run every ``benchmarks/bench_*.py`` in turn (never two at once: they would time each other), each
with a time bound, then print every script's figures again in one summary.

By default the scripts run in their quick form (smaller N, fewer repeats; each prints the N it used and
writes it into its RESULTS.md row); ``--full`` runs the issue's full workloads (about an hour on 2 cores).

    .venv/bin/python benchmarks/run_all.py [--full] [--only features,training]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Quick arguments and time bound (s) per script; scripts not listed run with their defaults.
QUICK: dict[str, tuple[list[str], int]] = {
    "bench_features.py": (["--quick"], 900),
    "bench_training.py": (["--steps", "3", "--rounds", "2", "--epochs", "3"], 1200),
    "bench_inference.py": (["--repeats", "15", "--tracks", "200"], 900),
    "bench_coldstart.py": (["--repeats", "5"], 300),
    "bench_memory.py": (["--small", "100", "--large", "300", "--minutes", "10"], 900),
    "bench_serve_load.py": (["--seconds", "30", "--max-requests", "100"], 400),
    "bench_musicnn.py": (["--repeats", "3"], 300),
    "bench_onnx.py": (["--repeats", "7", "--tracks", "40"], 900),
    "bench_tags.py": (["--repeats", "7"], 300),
    "bench_library.py": (["--tracks", "120", "--repeats", "2"], 600),
}
FULL: dict[str, tuple[list[str], int]] = {
    "bench_features.py": ([], 3600),
    "bench_training.py": (["--steps", "8", "--rounds", "3", "--epochs", "5", "--compile"], 3600),
    "bench_memory.py": (["--small", "100", "--large", "1000"], 1800),
    "bench_library.py": (["--tracks", "400", "--repeats", "3"], 1800),
}
FIGURE = re.compile(r"\d(\.\d+)?x\b|target|tracks/s|peak RSS|CPU s|wall s|req/s|p50", re.IGNORECASE)


def _echo(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line.rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the issue's full workloads instead of the quick ones")
    parser.add_argument("--only", default="", help="comma-separated names, e.g. features,training")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {f"bench_{name.strip()}.py" for name in args.only.split(",")}
        scripts = [s for s in scripts if s.name in wanted]
    summary: list[tuple[str, str, float, list[str]]] = []
    for script in scripts:
        extra, limit = (FULL.get(script.name) or QUICK.get(script.name, ([], 600))) if args.full else QUICK.get(script.name, ([], 600))
        print(f"\n=== {script.name} {' '.join(extra)} (at most {limit} s)", flush=True)
        t0 = time.perf_counter()
        lines: list[str] = []
        try:
            proc = subprocess.Popen([sys.executable, str(script), *extra], cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            reader = threading.Thread(target=_echo, args=(proc, lines), daemon=True)
            reader.start()
            try:
                proc.wait(timeout=limit)
                status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                status = f"stopped at the {limit} s bound"
            reader.join(timeout=5)
        except OSError as e:
            status = f"could not start: {e}"
        summary.append((script.name, status, time.perf_counter() - t0, [line for line in lines if FIGURE.search(line)]))
    print("\n=== summary" + (" (full workloads)" if args.full else " (quick workloads; N in each line)"))
    for name, status, seconds, figures in summary:
        print(f"{name}: {status}, {seconds:.0f} s")
        for line in figures:
            print(f"    {line.strip()}")
    if any(status != "ok" for _, status, _, _ in summary):
        sys.exit(1)


if __name__ == "__main__":
    main()
