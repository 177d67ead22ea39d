"""What musicnn's tags cost ``predict``: the shipped model with and without its tag scores, per runtime, in one run.

"Without" is ``predict`` as it was before tags (issue 24): for onnxruntime the same graph with its ``tags``
output removed (onnxruntime then drops the nodes only that output needs), for PyTorch the same classifier
without its tag layer. Each pair runs interleaved on the same real 30 s dev clips, one thread, so load
changes hit both alike; p50 wall and CPU seconds per track over ``--repeats`` clips (CPU: what a call costs
when it has a core to itself, the steadier figure on a shared machine).

Prediction: the tag scores are one 400 x 100 product and a sigmoid per segment over layers the graph
computes anyway, and merging them into 83 tags per segment is ~0.1 ms: within noise of a ~0.25 s predict.

    .venv/bin/python benchmarks/bench_tags.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch

from _common import append_row, machine, now, predict_p50, shared_data

BACKENDS = ("torch", "onnxruntime", "auto")


def _clips(n: int) -> list[Path]:
    clips = sorted((shared_data() / "gtzan-dev").glob("*/*.*"))
    return clips[:: max(1, len(clips) // n)][:n]


def _without_tags(model: Any) -> Any:
    """``model`` as it ran before tags: the same network, no tag scores."""
    from genrekit.classifier import GenreClassifier
    from genrekit.runtime.graph import TAGS_OUTPUT
    from genrekit.runtime.onnx import OnnxRunner

    runner = model.runner
    if not isinstance(runner, OnnxRunner):
        bare = copy.copy(model)
        bare.runner = copy.copy(runner)
        bare.runner.tag_layer = None
        return bare
    import onnx

    graph = onnx.load_from_string(runner._source if isinstance(runner._source, bytes) else Path(runner._source).read_bytes())
    kept = [o for o in graph.graph.output if o.name != TAGS_OUTPUT]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    return GenreClassifier(OnnxRunner(graph.SerializeToString(), name=model.name, checkpoint=runner.checkpoint), name=model.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from genrekit import load_model

    models = {}
    for backend in BACKENDS:
        model = load_model(backend=backend)
        if not model.has_tags:
            raise SystemExit(f"{backend}: the shipped model computes no tags here (rerun scripts/quantize_default_model.py for auto)")
        models[f"{backend} tags"], models[f"{backend} none"] = model, _without_tags(model)
    clips = _clips(args.repeats)
    p50, cpu50 = predict_p50(models, clips)
    ratio = {b: p50[f"{b} tags"] / p50[f"{b} none"] for b in BACKENDS}
    cpu_ratio = {b: cpu50[f"{b} tags"] / cpu50[f"{b} none"] for b in BACKENDS}
    for b in BACKENDS:
        print(f"{b}: predict p50 per 30 s track {p50[f'{b} tags']:.3f} s with tags vs {p50[f'{b} none']:.3f} s without ({ratio[b]:.3f}x); "
              f"CPU {cpu50[f'{b} tags']:.3f} vs {cpu50[f'{b} none']:.3f} s ({cpu_ratio[b]:.3f}x)")
    append_row(
        "Tags: predict with vs without musicnn's tag scores (bench_tags.py)",
        ["date", "machine", "clips", "p50 torch with / without s", "p50 onnxruntime with / without s", "p50 auto with / without s",
         "wall with / without: torch, onnxruntime, auto", "CPU with / without: torch, onnxruntime, auto"],
        [now(), machine(), str(len(clips)), *(f"{p50[f'{b} tags']:.3f} / {p50[f'{b} none']:.3f}" for b in BACKENDS),
         ", ".join(f"{ratio[b]:.3f}x" for b in BACKENDS), ", ".join(f"{cpu_ratio[b]:.3f}x" for b in BACKENDS)],
    )


if __name__ == "__main__":
    sys.exit(main())
