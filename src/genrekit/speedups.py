"""genrekit's speed tricks, in one place, with their measured gains and one off switch.

Each trick changes how fast genrekit runs, never what it computes (or, for bit dropout, only which
random mask a seed gives). Set ``GENREKIT_SPEEDUPS=0`` in the environment to turn all of them off, e.g.
to rule them out when something looks wrong or to measure what they are worth:

- :func:`keep_freed_memory` (training): glibc keeps freed activations for the next step instead of
  unmapping them; ~0.6 s of kernel page-fault time saved per cnn2 step of ~1.4 s at batch 64 (2 cores,
  ``benchmarks/bench_training.py``). Skipped when the user set any ``MALLOC_*`` variable: their
  allocator settings win.
- :func:`frozen_collector` (``genrekit predict``): torch's ~170,000 objects are frozen out of the
  garbage collector, whose full collections otherwise walk them, ~60-200 ms each
  (``benchmarks/bench_coldstart.py``).
- :func:`bit_dropout` (training cnn2): dropout masks from 16 random bits per element, ~8 ms instead of
  torch's ~90 ms Bernoulli draw for the first block of a ~1 s step.
- Conv folding (inference of cnn1/cnn2): :mod:`genrekit.models.folding`, next to the models it
  rewrites; 0.8x the time on an idle core, under half on a busy one (``benchmarks/bench_inference.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["ENV_VAR", "enabled", "keep_freed_memory", "frozen_collector", "bit_dropout"]

ENV_VAR = "GENREKIT_SPEEDUPS"
# glibc mallopt parameters and the values keep_freed_memory restores (mmap at most 65,536 blocks, at or
# above the 32 MiB that glibc's dynamic threshold reaches, and trim at twice that, as glibc then does).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_MMAP_MAX, _MMAP_THRESHOLD = 65536, 32 * 2**20


def enabled() -> bool:
    """False when ``GENREKIT_SPEEDUPS`` is ``0`` (or ``false``, ``no``, ``off``); read at each use."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[None]:
    """Let glibc reuse freed activations instead of returning them to the kernel (no-op without glibc).

    glibc serves every block over 32 MiB with its own mmap and unmaps it on free, so each cnn2 step at
    batch 64 page-faults its ~1.2 GB of activations and gradients in again: ~310,000 faults, ~0.6 s of
    kernel time a step (measured on 2 cores; the step takes ~1.4 s without them). With mmap off and a 2 GiB
    trim threshold, freed blocks stay in the heap for the next step (no faults after the first). On exit
    mmap is turned back on and the heap trimmed. Nothing is changed when speed-ups are off or the user
    set a ``MALLOC_*`` variable (glibc's own tunables: theirs to choose).
    """
    if not enabled() or platform.libc_ver()[0] != "glibc" or any(name.startswith("MALLOC_") for name in os.environ):
        yield
        return
    libc = ctypes.CDLL(None)
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, _MMAP_MAX)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD)
        libc.malloc_trim(0)


@contextlib.contextmanager
def frozen_collector() -> Iterator[Callable[[], None]]:
    """Pause the garbage collector while a command imports and loads, then freeze what is alive.

    Yields ``loaded``: call it once the long-lived objects (torch, the model) exist; they are frozen out of
    the collector (``gc.freeze``) and collection resumes for what the command allocates after. On exit the
    collector is as it was. Does nothing when speed-ups are off.
    """
    if not enabled():
        yield lambda: None
        return
    collecting = gc.isenabled()
    gc.disable()

    def loaded() -> None:
        gc.freeze()
        if collecting:
            gc.enable()

    try:
        yield loaded
    finally:
        gc.unfreeze()
        if collecting:
            gc.enable()


def bit_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout whose mask compares 16 random bits per element with ``p``.

    torch's CPU dropout draws one Bernoulli variate per element (``bernoulli_``), ~90 ms of a ~1 s cnn2
    step for the first block's 8 M elements; four 16-bit lanes of each 64-bit random integer cost ~8 ms.
    The drop probability is ``p`` rounded to a multiple of 1/65536 (0.2 -> 0.199997); the mask is laid
    out like ``x`` (channels_last included) and comes from torch's default generator, so seeding is as
    reproducible as with ``nn.Dropout``.
    """
    import torch  # here: the CLI imports this module before it needs torch

    n = x.numel()
    bits = torch.randint(-(2**63), 2**63 - 1, (-(-n // 4),), dtype=torch.int64).view(torch.int16)[:n]
    keep = bits.as_strided(x.shape, x.stride()) >= round(p * 65536) - 32768
    return x * keep.to(x.dtype).mul_(1 / (1 - p))
