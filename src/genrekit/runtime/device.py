"""Where the networks run: ``device="auto" | "cpu" | "cuda" | "mps"`` for PyTorch and onnxruntime alike.

"auto" takes a CUDA GPU, then Apple's MPS, then the CPU, as PyTorch Lightning and Hugging Face do. On CUDA
the forward passes run under autocast (bfloat16 where the GPU has it, else float16); on the CPU nothing
changes, so CPU results stay bit for bit what they were. onnxruntime runs on CUDA when the
``onnxruntime-gpu`` package provides its CUDA provider and on the CPU otherwise. PyTorch is imported only
by the functions that need it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ..exceptions import Mention, ParameterError
from .._text import words

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "check_device", "torch_device", "autocast", "onnx_providers"]

DEVICES = ("auto", "cpu", "cuda", "mps")


def check_device(device: str) -> None:
    """Raise :class:`ParameterError` for a device name not in :data:`DEVICES`."""
    if device not in DEVICES:
        raise ParameterError.invalid("device", f"one of {words(DEVICES)}", device)


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def torch_device(device: str = "auto") -> torch.device:
    """The PyTorch device for ``device``: "auto" is CUDA, then MPS, then the CPU.

    Raises
    ------
    ParameterError
        An unknown name, or "cuda"/"mps" where PyTorch sees no such device (a CPU build of PyTorch, no GPU).
    """
    import torch

    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available(torch) else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError(Mention("device", "cuda"), ", but PyTorch sees no CUDA GPU here (no GPU, or a CPU build of PyTorch); use auto or cpu.")
    if device == "mps" and not _mps_available(torch):
        raise ParameterError(Mention("device", "mps"), ", but PyTorch sees no Apple GPU here; use auto or cpu.")
    return torch.device(device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for forward passes on ``device``: bfloat16 autocast on CUDA GPUs that support it,
    float16 on older ones; nothing elsewhere (the CPU path stays float32, unchanged)."""
    import torch

    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers for ``device``: CUDA first where ``onnxruntime-gpu`` offers it ("auto"
    falls back to the CPU without it), else the CPU.

    Raises
    ------
    ParameterError
        An unknown name; "cuda" without the CUDA provider; "mps" (onnxruntime has no MPS provider).
    """
    import onnxruntime as ort

    check_device(device)
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not cuda:
        raise ParameterError(Mention("device", "cuda"), ", but this onnxruntime has no CUDA provider: pip install onnxruntime-gpu, or use auto or cpu.")
    if device == "mps":
        raise ParameterError(Mention("device", "mps"), ", which onnxruntime cannot use; use ", Mention("backend", "torch"), " for MPS, or auto or cpu.")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda and device in ("auto", "cuda") else ["CPUExecutionProvider"]
