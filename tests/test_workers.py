"""Worker processes end with their command: on SIGTERM like on Ctrl-C, and when the command is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def _session(sid: int) -> list[int]:
    """Pids of the live (not zombie) processes of session ``sid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
@pytest.mark.parametrize(
    ("command", "sig"),
    [("prepare", signal.SIGKILL), ("prepare", signal.SIGTERM), ("predict", signal.SIGKILL), ("predict", signal.SIGTERM)],
)
def test_workers_exit_with_their_command(make_dataset: Callable[..., Path], tmp_path: Path, command: str, sig: int) -> None:
    data = make_dataset(labels=("a", "b"), per_label=20, seconds=30.0)
    args = ["prepare", str(data), "--out", str(tmp_path / "store")] if command == "prepare" else ["predict", str(data), "--format", "csv"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "genrekit", *args, "--jobs", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, text=True,
    )
    try:
        # The command, the fork server and two workers (and the resource tracker) are up.
        assert _wait(lambda: len(_session(proc.pid)) >= 4, 60), "workers never started"
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=30)
        assert _wait(lambda: not _session(proc.pid), 15), f"left running: {_session(proc.pid)}"
        if sig == signal.SIGTERM:
            assert code == 128 + signal.SIGTERM
            assert proc.stderr is not None and "terminated" in proc.stderr.read()
    finally:
        for pid in _session(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
