"""Training steps and predict on every device PyTorch and onnxruntime can use here, against the CPU in the
same run (issue 20): a cnn2 training step at batch 64 (forward, backward, AdamW; autocast on CUDA) and a
30 s predict with the shipped model (onnxruntime, CUDA provider where ``onnxruntime-gpu`` offers it) and
with cnn2 (PyTorch). On a machine without a GPU only the CPU rows appear, and the script says so.

    .venv/bin/python benchmarks/bench_device.py [--steps 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_row, machine, now, random_model, synth_clip

def _devices() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found

def _train_step_seconds(device: str, steps: int) -> float:
    """Median seconds of a cnn2 step at batch 64 on ``device``, after one warm-up step."""
    import torch
    from torch.nn import functional as F

    from genrekit.config import FeatureConfig
    from genrekit.runtime.device import autocast, torch_device
    from genrekit.features import feature_shape
    from genrekit.models import build_model

    target = torch_device(device)
    torch.manual_seed(0)
    model = build_model("cnn2", feature_shape(FeatureConfig()), 10).to(target, memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=target.type in ("cpu", "cuda"))
    x = torch.randn(64, *feature_shape(FeatureConfig())).to(target)
    y = torch.randint(0, 10, (64,)).to(target)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        with autocast(target):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if target.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])

def _predict_seconds(model: str, device: str, clip: Path, repeats: int, backend: str) -> float:
    from genrekit import load_model

    classifier = load_model(model, backend=backend, device=device)
    classifier.predict(clip)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        classifier.predict(clip)
        times.append(time.perf_counter() - t)
    return statistics.median(times)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import onnxruntime as ort
    import torch

    torch.set_num_threads(1)
    devices = _devices()
    if devices == ["cpu"]:
        print("no GPU here (PyTorch sees no CUDA or MPS device): CPU figures only; the GPU path is untested on this machine")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.wav"
        sf.write(clip, synth_clip(0), 22050, subtype="PCM_16")
        cnn2 = random_model(Path(tmp) / "cnn2.pt", "cnn2")
        rows = {}
        for device in devices:
            onnx_device = device if device != "mps" else "cpu"
            rows[device] = (
                _train_step_seconds(device, args.steps),
                _predict_seconds(str(cnn2), device, clip, args.repeats, "torch"),
                _predict_seconds("default", onnx_device, clip, args.repeats, "auto"),
            )
    cpu = rows["cpu"]
    providers = ",".join(p.removesuffix("ExecutionProvider") for p in ort.get_available_providers())
    for device, (step, cnn, default) in rows.items():
        print(f"{device}: cnn2 train step {step * 1000:.0f} ms ({cpu[0] / step:.2f}x the CPU), cnn2 predict {cnn * 1000:.0f} ms "
              f"({cpu[1] / cnn:.2f}x), default model predict {default * 1000:.0f} ms ({cpu[2] / default:.2f}x); onnxruntime providers: {providers}")
        append_row(
            "## Devices (`benchmarks/bench_device.py`)",
            ["date (UTC)", "machine", "device", "cnn2 train step ms (batch 64)", "cnn2 predict ms (30 s)", "default predict ms (30 s)", "vs CPU (step / cnn2 / default)", "onnxruntime providers"],
            [now(), machine(), device, f"{step * 1000:.0f}", f"{cnn * 1000:.0f}", f"{default * 1000:.0f}",
             f"{cpu[0] / step:.2f}x / {cpu[1] / cnn:.2f}x / {cpu[2] / default:.2f}x", providers],
        )

if __name__ == "__main__":
    main()
