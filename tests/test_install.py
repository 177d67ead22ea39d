"""The package as users get it: the sdist and wheel build, and the wheel installed into a fresh virtual
environment **without** the train extra classifies and serves with the shipped models, never importing
PyTorch. A package-data file missing from the sdist or wheel, a dependency left out of the base install or
a stray ``import torch`` on the classifying path fails here. Needs PyPI (or pip's cache) for the base
dependencies, as ``make test`` does."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(*args: str | Path, timeout: float = 600) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: rc {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built from the sdist, and everything the build printed."""
    dist = tmp_path_factory.mktemp("dist")
    # The wheel is built from the sdist (build's default), so a file the sdist leaves out is missing from both.
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"build: rc {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    wheels, sdists = list(dist.glob("genrekit-*.whl")), list(dist.glob("genrekit-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    return wheels[0], done.stdout + done.stderr


def test_the_build_prints_no_deprecation_banner_and_the_wheel_states_its_license(built: tuple[Path, str]) -> None:
    """A license table in pyproject.toml made setuptools print a deprecation banner 3 times; an SPDX string
    (setuptools >= 77) reaches users as the wheel's License-Expression."""
    wheel, log = built
    assert "deprecat" not in log.lower(), [line for line in log.splitlines() if "deprecat" in line.lower()]
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata.splitlines()


@pytest.fixture(scope="module")
def lean_venv(built: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from the sdist, base dependencies only."""
    wheel = built[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("genrekit/weights/default-int8.onnx", "genrekit/weights/zero-shot.onnx", "genrekit/samples/taiko.ogg", "genrekit/serve/static/index.html"):
        assert shipped in names, f"{shipped} is not in the wheel"
    venv = tmp_path_factory.mktemp("install") / "venv"
    _run(sys.executable, "-m", "venv", venv)
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    return venv


def test_the_base_install_has_no_pytorch_and_classifies_without_it(lean_venv: Path) -> None:
    python = lean_venv / "bin" / "python"
    missing = _run(python, "-c", "import importlib.util as u; print([m for m in ('torch', 'sklearn', 'librosa', 'onnx', 'safetensors') if u.find_spec(m)])")
    assert missing.strip() == "[]"
    script = (
        "import sys; from importlib import resources; import genrekit\n"
        "sample = resources.files('genrekit') / 'samples' / 'taiko.ogg'\n"
        "for name in ('default', 'zero-shot'):\n"
        "    r = genrekit.load_model(name).predict(str(sample))\n"
        "    assert r.genre in r.probabilities and abs(sum(r.probabilities.values()) - 1) < 1e-4, r\n"
        "print('torch' in sys.modules)\n"
    )
    assert _run(python, "-c", script).strip() == "False"
    sample = _run(python, "-c", "from importlib import resources; print(resources.files('genrekit') / 'samples' / 'los_rombos_fantasma.mp3')").strip()
    out = json.loads(_run(lean_venv / "bin" / "genrekit", "predict", sample, "--format", "json"))
    assert out["results"][0]["genre"] in out["model"]["labels"]


def test_the_base_install_prepares_log_mel_features(lean_venv: Path, make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    """`prepare --features logmel` is base-install work (README): its workers must not need PyTorch."""
    data = make_dataset(per_label=2, seconds=6.5)
    done = subprocess.run([str(lean_venv / "bin" / "genrekit"), "prepare", str(data), "--out", str(tmp_path / "store"), "--jobs", "2", "--strict"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 tracks, 12 segments" in done.stdout and "0 skipped" in done.stdout


def test_the_base_install_says_what_to_install_for_training(lean_venv: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(lean_venv / "bin" / "genrekit"), "train", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "pip install 'genrekit[train]'" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_base_install_serves(lean_venv: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([str(lean_venv / "bin" / "genrekit"), "serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline, "serve did not answer /healthz within 60 s"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
