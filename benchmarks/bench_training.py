"""Training: one cnn2 epoch over 8,000 cached segments at batch 64, genrekit's training step vs the naive one.

The naive step is the obvious PyTorch port of the original: eager fp32, NCHW, Keras "same" pooling as an
explicit -inf pad followed by a pool, ``nn.Dropout``, for-loop AdamW, glibc's default allocation. genrekit's
step is what :mod:`genrekit.training.fit` runs: channels_last weights, the pool's own padding + ceil_mode
(:class:`genrekit.models.cnn.KerasMaxPool2d`), dropout masks from random bits
(:func:`genrekit.speedups.bit_dropout`), fused AdamW, inside ``genrekit.speedups.keep_freed_memory`` (freed activations
stay in glibc's heap instead of being page-faulted back in every step). Every variant trains on batches
read from a memory-mapped float16 store of 8,000 segments (as training reads its store), in a fresh
process per block of ``--steps`` steps (a run is one process, and the allocator's state outlives a
step), after one untimed step; blocks run in turns, ``--rounds`` times. A variant's speedup is the median
over rounds of its ratio to the naive step of the same round; the epoch figure is 125 x the median step
plus the median batch read. Then both loops train from the same seed, to show that what is learned does
not change: on a real store with ``--store`` (the naive loop vs ``genrekit.training.fit.train`` itself), else
on a small learnable synthetic set.

Prediction vs outcome (2 cores shared with two other agents' jobs, load average 2-3 for the figures
below: naive 1,387 ms/step vs the issue's idle 1,190; ``--ablate --rounds 3``, each change measured by
removing it from genrekit's step; per-round medians):

=================================  ====================================  ============================================
change (each measured alone)       predicted                             measured
=================================  ====================================  ============================================
channels_last                      ~1.5x (issue: 1190 -> 770 ms)         1.30x on the naive step (1387 -> 1032 ms)
pool via padding and ceil_mode     ~1.1x: no copy of the 130 MB          1.19x (earlier row; kept)
                                   first-block activation and gradient
keep freed memory (glibc mallopt)  not predicted: found in a profile     1.87x (762 -> 408 ms): the largest single gain
                                   whose "fill_" and ReLU took 3x their
                                   bandwidth time; 310k minor faults and
                                   0.6 s of kernel time per step
dropout masks from random bits     ~1.1x: bernoulli_ was ~90 of ~850 ms  1.23x (501 -> 408 ms)
fused AdamW                        ~1.05x: ~10 passes over 1.9 M params  1.01x (412 -> 408 ms), within noise; kept
                                   -> 1 (optimizer 15-65 ms of a step)
bf16 autocast (``precision=bf16``)  ~2x on top (AVX512-BF16 oneDNN      1.71x on top (408 -> 238 ms), 5.41x vs naive
                                   kernels, half the bytes of the
                                   memory-bound passes)
1 torch thread instead of 2        slower idle, faster when contended    0.63x at load 2-3 (649 ms); 1.4x faster at
                                                                         load 4+ (06:47 run): left to ``--threads``
torch.compile (inductor, gcc)      1.3x: fuse ReLU/BN/dropout passes     slower: fp32 589 vs 388 ms, bf16 967 vs 230
                                                                         (``--compile --rounds 3``); compiling took
                                                                         19 s (fp32) / 33 s (bf16) cold, 2.4 s from
                                                                         inductor's cache; never pays back: not used
interop threads                    nothing: eager autograd runs one op   not measured
                                   at a time; interop threads serve
                                   only torch.jit fork/wait
per-step host syncs (.item())      nothing: the loop keeps the loss sum  none to remove
                                   as a tensor; a CPU has no device
                                   queue to drain
prefetching batches in a thread    < 1%: a batch read is ~2 ms           2.1 ms = 0.5% of a step: not worth a thread
BatchNorm before ReLU              would fuse, but changes the model     not done: not the original's (Conv, ReLU, BN)
=================================  ====================================  ============================================

What is learned (``--store runs/store-gtzan-dev``: 3,480 real segments, random 80/20 track split,
validation segment accuracy after 3 epochs, seeds 0/1): naive 0.539/0.500, genrekit fp32 0.541/0.510,
genrekit bf16 0.539/0.501. Between loops with the same seed the gap is at most 0.010; between seeds of
one loop it is 0.031-0.039: what is learned does not change, in fp32 or bf16.

Where genrekit's fp32 step goes now (torch.profiler over 3 steps): the 32 -> 64 convolution, backward 21%
and forward 8%; the first block's 33 M-element activation: BatchNorm 15%, ReLU 13%, pooling ~8% with
its gradient's zero fill; the first convolution (1 input channel) 5%; dropout's random bits 2%. Before
the memory change the same ops carried the page faults (the first convolution's forward: 95 -> 9 ms). Headline (``--rounds 5 --steps 4``, load 2):
naive 1,280 ms, genrekit fp32 366 ms (3.38x, 46 s/epoch), bf16 246 ms (4.93x, 31 s/epoch).

    .venv/bin/python benchmarks/bench_training.py                     # what `make bench` runs
    .venv/bin/python benchmarks/bench_training.py --ablate --rounds 3 --epochs 0
    .venv/bin/python benchmarks/bench_training.py --compile --rounds 2 --epochs 0
    .venv/bin/python benchmarks/bench_training.py --store runs/store-gtzan-dev --epochs 3 --seeds 0 1 --segments 640 --steps 1 --rounds 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from _common import append_row, machine, median, now
from genrekit.models import build_model
from genrekit.models.cnn import CNN2, KerasMaxPool2d, _same_pad
from genrekit.speedups import keep_freed_memory

SECTION = "## Training (`benchmarks/bench_training.py`)"
COLUMNS = (
    "date (UTC)", "machine", "segments × batch", "steps timed", "naive ms/step", "genrekit ms/step", "batch read ms",
    "naive s/epoch", "genrekit s/epoch", "speedup", "bf16 s/epoch (speedup)", "other variants (ms/step)", "val acc naive vs genrekit",
)
SHAPE = (128, 130)
N_CLASSES = 10
BATCH = 64


class PadPool(KerasMaxPool2d):
    """Keras "same" max-pooling the obvious way: an explicit -inf pad, then the pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_pad(x.shape[-2], self.kernel, self.stride)
        left, right = _same_pad(x.shape[-1], self.kernel, self.stride)
        return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), self.kernel, self.stride)


class PlainCNN2(nn.Module):
    """cnn2 run as its plain layer stack: ``nn.Dropout``'s own masks instead of genrekit's bit dropout."""

    def __init__(self, model: CNN2) -> None:
        super().__init__()
        self.features = model.features
        self.classifier = model.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.unsqueeze(1)))


def naive_model(seed: int) -> nn.Module:
    """The obvious port: NCHW, pad + pool, nn.Dropout."""
    torch.manual_seed(seed)
    model = build_model("cnn2", SHAPE, N_CLASSES)
    for block in model.modules():
        for name, child in block.named_children():
            if isinstance(child, KerasMaxPool2d):
                setattr(block, name, PadPool(child.kernel, child.stride))
    return PlainCNN2(model)


def genrekit_model(seed: int) -> nn.Module:
    """As genrekit.training.fit builds it."""
    torch.manual_seed(seed)
    return build_model("cnn2", SHAPE, N_CLASSES).to(memory_format=torch.channels_last)


class Step:
    """One training step of a model/optimizer pair.

    ``naive`` is the obvious loop's optimizer (for-loop AdamW) and glibc's default allocation; otherwise
    the step is genrekit's: fused AdamW, run inside :func:`genrekit.speedups.keep_freed_memory`.
    """

    def __init__(self, model: nn.Module, *, naive: bool = False, fused: bool | None = None, keep_memory: bool | None = None,
                 bf16: bool = False, compiled: bool = False, threads: int | None = None) -> None:
        self.model = model
        self.forward = torch.compile(model) if compiled else model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, fused=not naive if fused is None else fused)
        self.keep_memory = not naive if keep_memory is None else keep_memory
        self.bf16 = bf16
        self.threads = threads

    def memory(self) -> contextlib.AbstractContextManager[None]:
        """What the step runs in; training enters it once per run, so benchmarks enter it once per block of steps."""
        return keep_freed_memory() if self.keep_memory else contextlib.nullcontext()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        default = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        self.model.train()
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        seconds = time.perf_counter() - t0
        torch.set_num_threads(default)
        return seconds


def make_store(path: Path, n: int, seed: int = 0) -> np.ndarray:
    """A float16 store of ``n`` segments on disk, opened memory-mapped as genrekit opens its stores."""
    rng = np.random.default_rng(seed)
    features = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, *SHAPE))
    for lo in range(0, n, 500):
        features[lo : lo + 500] = rng.uniform(-80, 0, size=(min(500, n - lo), *SHAPE)).astype(np.float16)
    features.flush()
    del features
    return np.load(path, mmap_mode="r")


def read_batch(features: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    """What genrekit.training.fit does per batch: sorted indices into the memmap, float32."""
    return torch.from_numpy(np.asarray(features[np.sort(idx)], dtype=np.float32))


def make_variants(seed: int, *, ablate: bool = False, compiled: bool = False) -> dict[str, Callable[[], Step]]:
    """Variant name -> step factory: naive, genrekit fp32 and bf16, then the optional ablations and compiled steps."""
    variants: dict[str, Callable[[], Step]] = {
        "naive": lambda: Step(naive_model(seed), naive=True),
        "genrekit": lambda: Step(genrekit_model(seed)),
        "genrekit+bf16": lambda: Step(genrekit_model(seed), bf16=True),
    }
    if ablate:
        variants |= {
            "naive+channels_last": lambda: Step(naive_model(seed).to(memory_format=torch.channels_last), naive=True),
            "genrekit-keep_memory": lambda: Step(genrekit_model(seed), keep_memory=False),
            "genrekit-bit_dropout": lambda: Step(PlainCNN2(genrekit_model(seed))),  # type: ignore[arg-type]
            "genrekit-fused": lambda: Step(genrekit_model(seed), fused=False),
            "genrekit 1 thread": lambda: Step(genrekit_model(seed), threads=1),
        }
    if compiled:
        variants["genrekit+compile"] = lambda: Step(genrekit_model(seed), compiled=True)
        variants["genrekit+bf16+compile"] = lambda: Step(genrekit_model(seed), bf16=True, compiled=True)
    return variants


def worker(args: argparse.Namespace) -> None:
    """One variant's block of steps in this fresh process: prints its setup, read and step seconds as JSON.

    A training run is one process, and glibc's allocation state (which :func:`genrekit.speedups.keep_freed_memory` changes)
    outlives a step, so every block runs in a process of its own: no variant inherits another's heap.
    """
    step = make_variants(args.seed, ablate=True, compiled=True)[args.worker]()
    features = np.load(args.worker_store, mmap_mode="r")
    rng = np.random.default_rng([args.seed, args.worker_round])
    labels = torch.from_numpy(rng.integers(0, N_CLASSES, len(features)))
    order = rng.permutation(len(features))
    batches = [np.sort(order[i * BATCH : (i + 1) * BATCH]) for i in range(args.steps + 1)]
    t0 = time.perf_counter()
    reads, times = [], []
    with step.memory():
        step(read_batch(features, batches[0]), labels[batches[0]])  # warm-up: first-step page faults, compilation
        setup = time.perf_counter() - t0
        for idx in batches[1:]:
            t0 = time.perf_counter()
            x = read_batch(features, idx)
            reads.append(time.perf_counter() - t0)
            times.append(step(x, labels[idx]))
    print(json.dumps({"setup": setup, "reads": reads, "times": times}))


def time_variants(names: list[str], store: Path, steps: int, rounds: int, seed: int) -> tuple[list[dict[str, list[float]]], list[float], dict[str, float]]:
    """Per-step seconds of each variant in each round: ``steps`` at a time in a fresh process each, ``rounds``
    turns over all variants, so load changes hit all alike. Setup (build, first step, compilation) is reported apart."""
    times: list[dict[str, list[float]]] = []
    setup: dict[str, list[float]] = {name: [] for name in names}
    reads: list[float] = []
    for r in range(rounds):
        times.append({})
        for name in names:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", name, "--worker-store", str(store), "--worker-round", str(r),
                 "--steps", str(steps), "--seed", str(seed)],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{name} worker failed with exit code {proc.returncode}:\n{proc.stderr}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            times[r][name] = result["times"]
            setup[name].append(result["setup"])
            reads += result["reads"]
            print(f"  round {r + 1}, {name}: {median(result['times']) * 1000:.0f} ms/step", flush=True)
    return times, reads, {name: median(v) for name, v in setup.items()}


def learnable_set(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments = a class template (smooth random pattern) plus noise: learnable, but not in one step."""
    rng = np.random.default_rng(seed)
    templates = rng.standard_normal((N_CLASSES, 16, 13)).repeat(8, axis=1).repeat(10, axis=2)
    y = rng.integers(0, N_CLASSES, n)
    x = 0.35 * templates[y] + rng.standard_normal((n, *SHAPE))
    return torch.tensor(x, dtype=torch.float32), torch.from_numpy(y)


def train_accuracy(make: Callable[[int], Step], n_train: int, n_val: int, epochs: int, seed: int) -> list[float]:
    """Validation accuracy after each epoch of the given step on the learnable set, all randomness from ``seed``."""
    x, y = learnable_set(n_train + n_val, seed=123)
    step = make(seed)
    accuracies = []
    with step.memory():
        for epoch in range(epochs):
            rng = np.random.default_rng([seed, epoch])
            torch.manual_seed(int(rng.integers(2**62)))
            for idx in np.array_split(rng.permutation(n_train), max(1, n_train // BATCH)):
                step(x[idx], y[idx])
            step.model.eval()
            with torch.inference_mode():
                accuracies.append(float((step.model(x[n_train:]).argmax(1) == y[n_train:]).float().mean()))
    return accuracies


def store_accuracy(store: Path, epochs: int, seeds: list[int]) -> str:
    """Validation accuracy of the naive loop and of ``genrekit.training.fit.train`` (fp32 and bf16) on a real store.

    Each arm trains cnn2 for ``epochs`` epochs per seed on the same random 80/20 track split, with the
    same initialization and batch order (the naive loop draws them as training does); only dropout masks
    and rounding differ between arms, so the spread over seeds within an arm is the noise to compare with.
    """
    from genrekit.datasets.splits import SplitConfig
    from genrekit.training.config import TrainConfig
    from genrekit.training.fit import _epoch_rng, _load_data, train

    data = _load_data(store, SplitConfig(strategy="random", seed=0))
    x_val = torch.from_numpy(np.asarray(data.store.features[data.val_idx], dtype=np.float32))
    y_all = torch.from_numpy(data.y)
    n_batches = max(1, -(-len(data.train_idx) // BATCH))
    results: dict[str, list[float]] = {"naive": [], "fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory(prefix="genrekit-bench-accuracy-") as tmp:
        for seed in seeds:
            step = Step(naive_model(seed), naive=True)
            for epoch in range(1, epochs + 1):
                rng = _epoch_rng(seed, epoch)
                torch.manual_seed(int(rng.integers(2**62)))
                for chunk in np.array_split(rng.permutation(data.train_idx), n_batches):
                    idx = np.sort(chunk)
                    step(torch.from_numpy(np.asarray(data.store.features[idx], dtype=np.float32)), y_all[idx])
            step.model.eval()
            with torch.inference_mode():
                results["naive"].append(float((step.model(x_val).argmax(1) == y_all[data.val_idx]).float().mean()))
            for precision in ("fp32", "bf16"):
                config = TrainConfig(model="cnn2", epochs=epochs, seed=seed, precision=precision, keep="last",  # type: ignore[arg-type]
                                     split=SplitConfig(strategy="random", seed=0))
                result = train(store, config, run_dir=Path(tmp) / f"{precision}-{seed}")
                results[precision].append(result.history[-1].val_accuracy)
            print(f"  seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in results.items()), flush=True)
    return ", ".join(f"{k} " + "/".join(f"{a:.3f}" for a in v) for k, v in results.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--segments", type=int, default=8000, help="segments in the memory-mapped store (an epoch)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=2, help="turns over all variants")
    parser.add_argument("--ablate", action="store_true", help="also time genrekit's step without each of its changes, one at a time")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of genrekit's step (fp32 and bf16; minutes to compile)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the accuracy check (0 skips it)")
    parser.add_argument("--train-size", type=int, default=640, help="training segments of the synthetic accuracy check")
    parser.add_argument("--val-size", type=int, default=320)
    parser.add_argument("--store", type=Path, help="run the accuracy check on this real store instead (random 80/20 track split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the real-store accuracy check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    threads = torch.get_num_threads()
    names = list(make_variants(args.seed, ablate=args.ablate, compiled=args.compile))
    print(f"cnn2, batch {BATCH}, {args.segments} segments, torch {torch.__version__}, {threads} threads, {machine()}")
    with tempfile.TemporaryDirectory(prefix="genrekit-bench-training-") as tmp:
        make_store(Path(tmp) / "features.npy", args.segments)
        times, reads, setup = time_variants(names, Path(tmp) / "features.npy", args.steps, args.rounds, args.seed)
    n_steps = -(-args.segments // BATCH)
    read = median(reads)
    step_ms = {name: median([t for block in times for t in block[name]]) * 1000 for name in names}
    epoch = {name: n_steps * (ms / 1000 + read) for name, ms in step_ms.items()}
    # The speedup of a variant: the median over rounds of its ratio to the naive step measured in the same round.
    ratio = {name: median([median(block["naive"]) / median(block[name]) for block in times]) for name in names}
    for name, ms in step_ms.items():
        print(f"{name:>22}: {ms:6.0f} ms/step -> {epoch[name]:5.0f} s/epoch, {ratio[name]:.2f}x vs naive (setup {setup[name]:.1f} s)")
    for name in ("genrekit+compile", "genrekit+bf16+compile"):
        if name in step_ms:
            base = name.removesuffix("+compile")
            saved = median([median(block[base]) - median(block[name]) for block in times]) * n_steps
            amortized = f"pays back its {setup[name]:.0f} s setup after {setup[name] / saved:.1f} epochs" if saved > 0 else "never pays back its setup"
            print(f"{name}: {saved:+.0f} s per epoch vs {base}; {amortized}")
    print(f"batch read from the memmap: {read * 1000:.1f} ms ({read * 1000 / step_ms['genrekit']:.1%} of a step: the most prefetching could save)")
    speedup, bf16 = ratio["genrekit"], ratio["genrekit+bf16"]
    print(f"genrekit's step: {epoch['genrekit']:.0f} s/epoch vs naive {epoch['naive']:.0f} s/epoch: {speedup:.2f}x (target <= 45 s, >= 3x)")
    print(f"genrekit's step with precision=bf16: {epoch['genrekit+bf16']:.0f} s/epoch: {bf16:.2f}x vs naive")
    accuracy = "not run"
    if args.epochs > 0 and args.store is not None:
        accuracy = f"{args.store.name}, {args.epochs} ep, seeds {'/'.join(map(str, args.seeds))}: " + store_accuracy(args.store, args.epochs, args.seeds)
        print(f"validation segment accuracy: {accuracy}")
    elif args.epochs > 0:
        naive_acc = train_accuracy(lambda seed: Step(naive_model(seed), naive=True), args.train_size, args.val_size, args.epochs, args.seed)
        genrekit_acc = train_accuracy(lambda seed: Step(genrekit_model(seed)), args.train_size, args.val_size, args.epochs, args.seed)
        bf16_acc = train_accuracy(lambda seed: Step(genrekit_model(seed), bf16=True), args.train_size, args.val_size, args.epochs, args.seed)
        p = statistics.mean(naive_acc[-1:] + genrekit_acc[-1:])
        noise = (p * (1 - p) / args.val_size) ** 0.5
        print(f"validation accuracy per epoch, same seed: naive {[round(a, 3) for a in naive_acc]}, genrekit {[round(a, 3) for a in genrekit_acc]}, "
              f"genrekit+bf16 {[round(a, 3) for a in bf16_acc]} (binomial std of one accuracy: {noise:.3f})")
        accuracy = (f"{naive_acc[-1]:.3f} vs {genrekit_acc[-1]:.3f} (bf16 {bf16_acc[-1]:.3f}; ±{noise:.3f}, "
                    f"{args.epochs} ep, {args.train_size}/{args.val_size})")
    others = ", ".join(f"{name} {ms:.0f} ({ratio[name]:.2f}x)" for name, ms in step_ms.items() if name not in ("naive", "genrekit", "genrekit+bf16"))
    if not args.no_record:
        append_row(SECTION, COLUMNS, (
            now(), machine(), f"{args.segments} × {BATCH}", f"{args.steps * args.rounds} each", f"{step_ms['naive']:.0f}",
            f"{step_ms['genrekit']:.0f}", f"{read * 1000:.1f}", f"{epoch['naive']:.0f}", f"{epoch['genrekit']:.0f}",
            f"**{speedup:.2f}x**", f"{epoch['genrekit+bf16']:.0f} (**{bf16:.2f}x**)", others, accuracy,
        ))


if __name__ == "__main__":
    main()
