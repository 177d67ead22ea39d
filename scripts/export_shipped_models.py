"""Write the float32 ONNX graphs of the shipped models that run without PyTorch (``weights/<name>.onnx``).

``genrekit predict`` runs the shipped models in onnxruntime from graphs in the package, so a plain
``pip install genrekit`` classifies without PyTorch. Each graph is ``genrekit export`` of the shipped
checkpoint plus ``genrekit.source``, the checkpoint's :func:`~genrekit.runtime.onnx.checkpoint_digest`:
``tests/test_export.py`` fails when a checkpoint changes and its graph was not written again. The default
model's int8 graph is ``scripts/quantize_default_model.py``'s (a protocol decides whether it ships).

    .venv/bin/python scripts/export_shipped_models.py [zero-shot ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "genrekit" / "weights"


def shipped_graph(name: str) -> bytes:
    """The float32 graph of the shipped checkpoint ``name``, with its source digest in the metadata."""
    import onnx

    from genrekit.checkpoint import load_checkpoint
    from genrekit.runtime.export import onnx_bytes
    from genrekit.model_metadata import METADATA_PREFIX
    from genrekit.runtime.onnx import checkpoint_digest

    checkpoint = load_checkpoint(WEIGHTS / f"{name}.pt")
    model = onnx.load_from_string(onnx_bytes(checkpoint))
    props = {p.key: p.value for p in model.metadata_props}
    props[METADATA_PREFIX + "source"] = json.dumps(checkpoint_digest(checkpoint))
    onnx.helper.set_model_props(model, props)
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["zero-shot"], help="shipped models to export (default: zero-shot)")
    args = parser.parse_args()
    from genrekit._io import atomic_write

    for name in args.names:
        graph = shipped_graph(name)
        out = WEIGHTS / f"{name}.onnx"
        with atomic_write(out) as f:
            f.write(graph)
        print(f"wrote {out} ({len(graph) / 1e6:.1f} MB, sha256 {hashlib.sha256(graph).hexdigest()[:16]})")


if __name__ == "__main__":
    main()
