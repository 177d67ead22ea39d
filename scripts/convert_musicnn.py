"""Convert the MSD_musicnn and MTT_musicnn TensorFlow-1 checkpoints of ``musicnn==0.1.0`` to safetensors.

Run once, outside genrekit's environment, in a venv that has TensorFlow and the musicnn wheel::

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu tf-keras librosa
    /tmp/tfvenv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfvenv/bin/python scripts/convert_musicnn.py

It writes ``src/genrekit/weights/musicnn_{msd,mtt}.safetensors`` (tensors already in PyTorch layout and
named like :class:`genrekit.features.musicnn.MusiCNN`'s state dict; the tag list and the source travel in the
file's metadata) and ``src/genrekit/weights/LICENSE-musicnn.txt`` (the wheel's ISC notice). Only the
inference variables are kept; the Adam slots are dropped.

TensorFlow-1 ``tf.layers`` names variables by creation order; ``models.build_musicnn`` creates them as
input BN, timbral conv/BN x2, temporal conv/BN x3, mid-end conv/BN x3, pooled-feature BN, dense,
dense BN, output dense, which gives the table in :data:`_LAYERS`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "src" / "genrekit" / "weights"
MODELS = {"MSD_musicnn": "musicnn_msd.safetensors", "MTT_musicnn": "musicnn_mtt.safetensors"}

# (torch module prefix, TF conv name or None, TF batch-norm name or None, kind)
_LAYERS = [
    ("input_bn", None, "batch_normalization", "bn"),
    ("timbral.0", "conv2d", "batch_normalization_1", "conv2d"),
    ("timbral.1", "conv2d_1", "batch_normalization_2", "conv2d"),
    ("temporal.0", "conv2d_2", "batch_normalization_3", "conv2d"),
    ("temporal.1", "conv2d_3", "batch_normalization_4", "conv2d"),
    ("temporal.2", "conv2d_4", "batch_normalization_5", "conv2d"),
    ("midend.0", "conv2d_5", "batch_normalization_6", "conv1d"),
    ("midend.1", "conv2d_6", "batch_normalization_7", "conv1d"),
    ("midend.2", "conv2d_7", "batch_normalization_8", "conv1d"),
    ("pool_bn", None, "batch_normalization_9", "bn"),
    ("dense", "dense", "batch_normalization_10", "dense"),
    ("output", "dense_1", None, "dense"),
]


def _convert(reader, model_name: str) -> dict[str, np.ndarray]:
    def get(name: str) -> np.ndarray:
        return np.ascontiguousarray(reader.get_tensor(name), dtype=np.float32)

    out: dict[str, np.ndarray] = {}
    for prefix, weight_name, bn_name, kind in _LAYERS:
        if weight_name is not None:
            kernel = get(f"{weight_name}/kernel")
            if kind == "conv2d":  # (kh, kw, in, out) -> (out, in, kh, kw)
                kernel = kernel.transpose(3, 2, 0, 1)
            elif kind == "conv1d":  # (7, in, 1, out): a full-width 2-D conv is a 1-D conv -> (out, in, 7)
                kernel = kernel[:, :, 0, :].transpose(2, 1, 0)
            else:  # dense (in, out) -> (out, in)
                kernel = kernel.T
            conv_prefix = prefix if kind == "dense" or bn_name is None else f"{prefix}.conv"
            out[f"{conv_prefix}.weight"] = np.ascontiguousarray(kernel)
            out[f"{conv_prefix}.bias"] = get(f"{weight_name}/bias")
        if bn_name is not None:
            bn_prefix = prefix if kind == "bn" else (f"{prefix}_bn" if kind == "dense" else f"{prefix}.bn")
            out[f"{bn_prefix}.weight"] = get(f"{bn_name}/gamma")
            out[f"{bn_prefix}.bias"] = get(f"{bn_name}/beta")
            out[f"{bn_prefix}.running_mean"] = get(f"{bn_name}/moving_mean")
            out[f"{bn_prefix}.running_var"] = get(f"{bn_name}/moving_variance")
    used = {name for _, w, b, _ in _LAYERS for name in (w, b) if name}
    leftover = {
        k for k in reader.get_variable_to_shape_map() if "Adam" not in k and "power" not in k and k.split("/")[0] not in used
    }
    if leftover:
        raise SystemExit(f"{model_name}: unconverted checkpoint variables {sorted(leftover)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import musicnn
    import tensorflow as tf
    from musicnn import configuration
    from safetensors.numpy import save_file

    package = Path(musicnn.__file__).parent
    labels = {"MSD_musicnn": configuration.MSD_LABELS, "MTT_musicnn": configuration.MTT_LABELS}
    args.out.mkdir(parents=True, exist_ok=True)
    for model_name, filename in MODELS.items():
        # The checkpoint prefix is the folder itself: its files are named ".index", ".data-00000-of-00001".
        reader = tf.compat.v1.train.NewCheckpointReader(str(package / model_name) + "/")
        tensors = _convert(reader, model_name)
        metadata = {
            "model": model_name,
            "tags": json.dumps(labels[model_name]),
            "source": "musicnn==0.1.0 (https://github.com/jordipons/musicnn), ISC license, see LICENSE-musicnn.txt",
        }
        save_file(tensors, str(args.out / filename), metadata=metadata)
        (args.out / filename).chmod(0o644)  # safetensors writes 0600; the file ships in the package
        n_params = sum(t.size for t in tensors.values())
        print(f"{model_name}: {len(tensors)} tensors, {n_params:,} values -> {args.out / filename}")

    license_files = sorted(package.parent.glob("musicnn-0.1.0.dist-info/LICENSE*"))
    if not license_files:
        raise SystemExit("LICENSE not found in the musicnn wheel's dist-info")
    notice = (
        "The files musicnn_msd.safetensors and musicnn_mtt.safetensors are the MSD_musicnn and MTT_musicnn\n"
        "weights of musicnn 0.1.0 (https://github.com/jordipons/musicnn, https://pypi.org/project/musicnn/),\n"
        "converted from TensorFlow to PyTorch layout by scripts/convert_musicnn.py. Their license (ISC):\n\n"
    )
    (args.out / "LICENSE-musicnn.txt").write_text(notice + license_files[0].read_text().strip() + "\n")
    print(f"license -> {args.out / 'LICENSE-musicnn.txt'}")


if __name__ == "__main__":
    main()
