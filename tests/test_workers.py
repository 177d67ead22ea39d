"""The bounded pool that feeds per-file work to workers, and worker processes that end with their command:
on SIGTERM like on Ctrl-C, and when the command is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrekit.engines.local import IN_FLIGHT_PER_JOB, BoundedPool


class _Threads:
    """Opens thread pools for BoundedPool and keeps them, so a test can see what was started and cancelled."""

    def __init__(self) -> None:
        self.pools: list[ThreadPoolExecutor] = []

    def __call__(self, jobs: int) -> Executor:
        self.pools.append(ThreadPoolExecutor(max_workers=jobs))
        return self.pools[-1]


def _sleep_then(value: int, seconds: float) -> int:
    time.sleep(seconds)
    return value


@settings(max_examples=20, deadline=None)
@given(delays=st.lists(st.sampled_from([0.0, 0.001, 0.005]), max_size=12), jobs=st.integers(1, 3), ordered=st.booleans())
def test_bounded_pool_returns_every_result_once_in_the_order_asked(delays: list[float], jobs: int, ordered: bool) -> None:
    results: list[int] = []
    with BoundedPool[int](jobs, ordered=ordered, start=_Threads()) as pool:
        for i, delay in enumerate(delays):
            results += pool.submit(_sleep_then, i, delay)
        results += pool.drain()
    assert (results if ordered else sorted(results)) == list(range(len(delays)))


def test_unordered_results_come_as_they_complete() -> None:
    """A slow first file holds up no other: the store caches each file as soon as it is done."""
    release = threading.Event()
    with BoundedPool[str](2, ordered=False, start=_Threads()) as pool:
        assert pool.submit(lambda: "slow" if release.wait(10) else "timed out") == []
        assert pool.submit(lambda: "fast") == []
        drained = pool.drain()
        assert next(drained) == "fast"
        release.set()
        assert list(drained) == ["slow"]


def test_ordered_results_keep_input_order_behind_a_slow_first_task() -> None:
    with BoundedPool[int](2, ordered=True, start=_Threads()) as pool:
        results = pool.submit(_sleep_then, 0, 0.2)
        for i in range(1, 20):
            results += pool.submit(_sleep_then, i, 0.0)
        results += pool.drain()
    assert results == list(range(20))


@pytest.mark.parametrize("ordered", [True, False])
def test_at_most_four_tasks_per_job_are_in_flight(ordered: bool) -> None:
    jobs, submitted, received, peak = 2, 0, 0, 0
    with BoundedPool[int](jobs, ordered=ordered, start=_Threads()) as pool:
        for i in range(40):
            submitted += 1
            peak = max(peak, submitted - received)  # the task just submitted counts while submit waits
            received += len(pool.submit(_sleep_then, i, 0.01))
        received += len(list(pool.drain()))
    assert received == 40
    assert peak == IN_FLIGHT_PER_JOB * jobs  # the window fills (every worker kept busy), and no further


def test_one_job_runs_in_this_process_and_opens_no_pool() -> None:
    threads = _Threads()
    with BoundedPool[int](1, ordered=False, start=threads) as pool:
        assert pool.submit(threading.get_ident) == [threading.get_ident()]
        assert not pool.in_processes and list(pool.drain()) == []
    assert threads.pools == []


def test_the_pool_starts_on_the_first_submission_only() -> None:
    """A prepare whose files are all cached submits nothing, and starts no workers."""
    threads = _Threads()
    with BoundedPool[int](4, ordered=False, start=threads) as pool:
        assert list(pool.drain()) == []
    assert threads.pools == []
    with BoundedPool[int](4, ordered=False, start=threads) as pool:
        pool.submit(_sleep_then, 1, 0.0)
        assert not pool.in_processes  # threads here
    assert len(threads.pools) == 1


def _fail() -> int:
    raise ValueError("a bug in per-file code")


@pytest.mark.parametrize("ordered", [True, False])
def test_a_failing_task_stops_the_pool_without_finishing_its_queue(ordered: bool) -> None:
    threads, ran = _Threads(), []

    def slow(i: int) -> int:
        time.sleep(0.05)
        ran.append(i)
        return i

    with pytest.raises(ValueError, match="a bug in per-file code"):
        with BoundedPool[int](2, ordered=ordered, start=threads) as pool:
            pool.submit(_fail)
            for i in range(50):
                pool.submit(slow, i)
    assert len(ran) < 10  # the queued tasks were cancelled, not run
    assert threads.pools[0]._shutdown  # type: ignore[attr-defined]  # no public "is shut down" on executors


def test_a_caller_that_stops_early_stops_the_pool() -> None:
    """predict_many is a generator: leaving its loop early (GeneratorExit) must not run the rest of the queue."""
    ran: list[int] = []

    def task(i: int) -> int:
        time.sleep(0.02)
        ran.append(i)
        return i

    def results() -> Iterator[int]:
        with BoundedPool[int](2, ordered=True, start=_Threads()) as pool:
            for i in range(100):
                yield from pool.submit(task, i)
            yield from pool.drain()

    stream = results()
    assert next(stream) == 0
    stream.close()
    time.sleep(0.1)
    assert len(ran) <= 2 * IN_FLIGHT_PER_JOB + 2


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
