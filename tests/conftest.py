"""Shared fixtures: seeded RNG, synthesized labeled audio, and the path to ../shared/data."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Exported graphs (genrekit.runtime.onnx.cache_dir) go to a temporary folder, not the user's cache."""
    os.environ.setdefault("GENREKIT_CACHE_DIR", str(tmp_path_factory.mktemp("genrekit-cache")))


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository, or ``$GENREKIT_SHARED_DATA``."""
    return Path(os.environ.get("GENREKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """Real audio for tests marked ``shared_data``; CI always has it, so its absence is a failure, not a skip."""
    path = shared_data_dir()
    assert path.is_dir(), f"{path} is missing: tests marked shared_data need ../shared/data (or GENREKIT_SHARED_DATA)"
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that reads real audio says so in its marker and its name (``-m shared_data`` and a glance at a
    failure both find it); everything else synthesizes its own. Enforced here, so a new test cannot drift."""
    wrong = [
        item.nodeid
        for item in items
        if len({"shared_data" in getattr(item, "fixturenames", ()), item.get_closest_marker("shared_data") is not None,
                getattr(item, "originalname", item.name).startswith("test_shared_data")}) > 1
    ]
    if wrong:
        raise pytest.UsageError("tests that use ../shared/data must request the shared_data fixture, carry @pytest.mark.shared_data "
                                f"and be named test_shared_data_*; these do not all three: {', '.join(wrong)}")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def assert_onnx_matches_torch(model: "torch.nn.Module", x: "torch.Tensor") -> None:
    """Export ``model`` (eval mode) with a dynamic batch, check the graph, and compare onnx's reference
    evaluator with PyTorch on ``x`` (the TorchScript exporter: it needs only the `onnx` package)."""
    import io
    import warnings

    import onnx
    import torch
    from onnx.reference import ReferenceEvaluator

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["features"], output_names=["logits"],
                          dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}})
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(graph)
    (logits,) = ReferenceEvaluator(graph).run(None, {"features": x.numpy()})
    with torch.inference_mode():
        torch.testing.assert_close(torch.from_numpy(logits), model(x), rtol=1e-3, atol=1e-4)


def write_random_model(path: Path, architecture: str = "cnn1", labels: list[str] | None = None, *, seed: int = 0, metadata: dict | None = None) -> Path:
    """Save a log-mel model with random (seeded) weights to ``path``: inference costs and behaves as a trained one's."""
    import torch

    from genrekit.checkpoint import Checkpoint, save_checkpoint
    from genrekit.config import FeatureConfig
    from genrekit.datasets.discover import GTZAN_GENRES
    from genrekit.features import feature_shape
    from genrekit.models import build_model

    labels = list(GTZAN_GENRES) if labels is None else labels
    config = FeatureConfig()
    torch.manual_seed(seed)
    net = build_model(architecture, feature_shape(config), len(labels))
    save_checkpoint(Checkpoint(architecture, {}, net.state_dict(), labels, config, metadata=metadata or {}), path)
    return path


def synth_tone(label_index: int, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A label-dependent signal (harmonic tone at a label-specific pitch plus noise) that a small model can learn."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 110.0 * 2 ** (label_index * 5 / 12)
    y = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3))
    y = y + 0.05 * rng.standard_normal(len(t))
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture
def make_dataset(tmp_path: Path, rng: np.random.Generator) -> Callable[..., Path]:
    """Write a ``<label>/<label>.NNNNN.wav`` tree of synthesized clips and return its root."""

    def make(
        labels: tuple[str, ...] = ("blues", "classical", "rock"),
        per_label: int = 4,
        seconds: float = 6.0,
        sample_rate: int = 22050,
        root: Path | None = None,
        ext: str = "wav",
    ) -> Path:
        root = root or tmp_path / "data"
        for i, label in enumerate(labels):
            (root / label).mkdir(parents=True, exist_ok=True)
            for k in range(per_label):
                sf.write(root / label / f"{label}.{k:05d}.{ext}", synth_tone(i, seconds, sample_rate, rng), sample_rate)
        return root

    return make


def write_open_length_flac(path: Path, y: np.ndarray, sample_rate: int) -> Path:
    """A FLAC whose STREAMINFO says "total samples unknown" (0, legal; streamed encoders write it), and no MD5."""
    sf.write(path, y, sample_rate, format="FLAC")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # the first metadata block is STREAMINFO
    data[21] &= 0xF0  # the 36-bit total-samples field: low 4 bits of byte 21, then bytes 22-25
    data[22:26] = bytes(4)
    data[26:42] = bytes(16)  # MD5 0: "not computed"
    path.write_bytes(bytes(data))
    return path


def rows_close(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], *, atol: float = 1e-5) -> bool:
    """Whether two results tables hold the same files with the same values, floats within ``atol``: two
    engines or runtimes agree to float precision, not bit for bit."""
    if len(a) != len(b):
        return False
    for x, y in zip(sorted(a, key=lambda r: r["path"]), sorted(b, key=lambda r: r["path"])):
        if x.keys() != y.keys():
            return False
        for key, value in x.items():
            other = y[key]
            if isinstance(value, float) and isinstance(other, float):
                if not math.isclose(value, other, rel_tol=0.0, abs_tol=atol):
                    return False
            elif value != other:
                return False
    return True
