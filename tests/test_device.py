"""Devices: names checked, "auto" resolving to what exists, a one-line error for a device that is not
there, and the CPU path unchanged (these tests run on the CPU; the GPU path is untested here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import synth_tone, write_random_model

from genrekit.runtime.device import DEVICES, autocast, check_device, onnx_providers, torch_device
from genrekit.exceptions import ParameterError
from genrekit.classifier import load_model


def test_device_names_are_checked() -> None:
    for name in DEVICES:
        check_device(name)
    with pytest.raises(ParameterError, match="'device' parameter must be one of auto, cpu, cuda or mps. Got 'gpu'"):
        check_device("gpu")


def test_auto_takes_a_gpu_when_there_is_one_and_the_cpu_otherwise() -> None:
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert torch_device("auto").type == expected
    assert torch_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="PyTorch sees no CUDA GPU here"):
            torch_device("cuda")


def test_onnxruntime_providers_follow_the_device() -> None:
    import onnxruntime as ort

    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    assert onnx_providers("auto")[0] == ("CUDAExecutionProvider" if cuda else "CPUExecutionProvider")
    if not cuda:
        with pytest.raises(ParameterError, match="pip install onnxruntime-gpu"):
            onnx_providers("cuda")
    with pytest.raises(ParameterError, match="onnxruntime cannot use"):
        onnx_providers("mps")


def test_autocast_changes_nothing_on_the_cpu() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with autocast(torch.device("cpu")):
        inside = layer(x)
    assert inside.dtype == torch.float32 and torch.equal(inside, layer(x))


def test_a_checkpoint_on_the_cpu_device_predicts_exactly_as_before(tmp_path: Path, rng: np.random.Generator) -> None:
    model = write_random_model(tmp_path / "m.pt", "cnn2")
    clip = tmp_path / "a.wav"
    sf.write(clip, synth_tone(2, 6.0, 22050, rng), 22050)
    cpu = load_model(model, device="cpu")
    assert cpu.runtime == "PyTorch, float32" and cpu.device == "cpu"
    reference = load_model(model, device="auto") if torch_device("auto").type == "cpu" else None
    if reference is not None:  # auto is the CPU here (always on CI): the same code path, the same numbers
        assert cpu.predict(clip).probabilities == reference.predict(clip).probabilities


def test_a_missing_device_is_one_line_naming_the_option(tmp_path: Path, rng: np.random.Generator) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: --device cuda is valid")  # never on CI, which has no GPU
    clip = tmp_path / "a.wav"
    sf.write(clip, synth_tone(2, 4.0, 22050, rng), 22050)
    done = subprocess.run([sys.executable, "-m", "genrekit", "predict", str(clip), "--device", "cuda"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--device" in done.stderr and "cuda" in done.stderr and len(done.stderr.strip().splitlines()) == 1
