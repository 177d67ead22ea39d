"""int8 musicnn front end: the exported graph with its four timbral convolutions in 8-bit integers.

The timbral convolutions (7 x 38 and 7 x 67 filters, 204 each, in both networks) are ~70 % of the
shipped model's work. onnxruntime runs them as ``QLinearConv`` (uint8 activations, int8 per-channel
weights, int32 accumulation) and the frequency maximum that follows on the uint8 output, dequantizing
only the 187-frame maxima: max commutes with dequantization (a positive scale). Everything else stays
float32. Activation ranges come from calibration patches (min/max); ``scripts/quantize_default_model.py``
calibrates on real dev clips and measures top-1 agreement with the float32 model on every dev clip and
excerpt (``reports/quantization.md``). Not shipped: 348/348 clips agree but 145/149 excerpts (97.3 %,
below the 99 % bar), for ~1.2x on the network.

Weights use 7 bits (``reduce_range``): then the integer products cannot saturate on CPUs without
AVX512-VNNI (onnxruntime's AVX2 u8s8 kernel sums pairs into int16), so the integer part of the result
is the same on every x86 CPU; the float32 parts vary with the SIMD width as PyTorch's do.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["timbral_convs", "quantize_timbral", "pool_before_dequantize"]


def timbral_convs(model: object) -> list[str]:
    """Names of the Conv nodes of an exported musicnn graph that read the one-channel log-mel with
    filters wider than one mel band: the timbral filters (the temporal ones are one band wide)."""
    import onnx

    # model is an onnx.ModelProto, typed object so that onnx stays an import inside; the weights are computed (weight x sign, see MusiCNN)
    inferred = onnx.shape_inference.infer_shapes(model)  # type: ignore[arg-type]
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}  # type: ignore[attr-defined]
    for info in inferred.graph.value_info:
        shapes[info.name] = tuple(d.dim_value for d in info.type.tensor_type.shape.dim)
    names = []
    for node in model.graph.node:  # type: ignore[attr-defined]
        shape = shapes.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if shape is not None and len(shape) == 4 and shape[1] == 1 and shape[3] > 1:
            names.append(node.name)
    return names


def pool_before_dequantize(model: object) -> int:
    """Rewrite ``QuantizeLinear -> DequantizeLinear -> ReduceMax`` as ``QuantizeLinear -> ReduceMax ->
    DequantizeLinear`` in place: the maximum is taken on uint8 (4x less memory traffic) and only the
    maxima are dequantized. Returns how many were rewritten."""
    graph = model.graph  # type: ignore[attr-defined]
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[object]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    moved = 0
    for dq in list(graph.node):
        if dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        users = consumers.get(dq.output[0], [])
        if q is None or q.op_type != "QuantizeLinear" or len(users) != 1 or users[0].op_type != "ReduceMax":  # type: ignore[attr-defined]
            continue
        pool = users[0]
        pooled = pool.output[0]  # type: ignore[attr-defined]
        pool.input[0] = q.output[0]  # type: ignore[attr-defined]
        pool.output[0] = pooled + "_quantized"  # type: ignore[attr-defined]
        dq.input[0] = pool.output[0]  # type: ignore[attr-defined]
        dq.output[0] = pooled
        moved += 1
    _sort_topologically(graph)
    return moved


def _sort_topologically(graph: object) -> None:
    known = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {""}  # type: ignore[attr-defined]
    ordered, pending = [], list(graph.node)  # type: ignore[attr-defined]
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise ValueError("the graph has a cycle")
        for n in ready:
            ordered.append(n)
            known.update(n.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]  # type: ignore[attr-defined]
    graph.node.extend(ordered)  # type: ignore[attr-defined]


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over batches of patches."""

    def __init__(self, batches: Iterable[np.ndarray], input_name: str) -> None:
        self._it: Iterator[np.ndarray] = iter(batches)
        self._name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self._name: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_timbral(model_bytes: bytes, calibration: Iterable[np.ndarray], *, source: str = "") -> bytes:
    """The exported musicnn graph ``model_bytes`` with its timbral convolutions in int8, calibrated on
    ``calibration`` (batches of log-mel patches, shape (n, 187, 96)); metadata_props are kept, plus
    ``genrekit.quantization`` and ``genrekit.source`` (``source``: the digest of the checkpoint it came from)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load_from_string(model_bytes)
    nodes = timbral_convs(model)
    if not nodes:
        raise ValueError("no timbral convolutions in this graph: not an exported musicnn model")
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        fp32_path.write_bytes(model_bytes)
        quantize_static(
            str(fp32_path), str(int8_path), _Batches(calibration, model.graph.input[0].name), quant_format=QuantFormat.QDQ, per_channel=True,
            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
            calibrate_method=CalibrationMethod.MinMax,
        )
        quantized = onnx.load(str(int8_path))
    pool_before_dequantize(quantized)
    props = {p.key: p.value for p in model.metadata_props}
    props["genrekit.quantization"] = json.dumps("int8 timbral convolutions (7-bit per-channel weights, uint8 activations, min/max calibration)")
    props["genrekit.source"] = json.dumps(source)
    onnx.helper.set_model_props(quantized, props)
    return quantized.SerializeToString()
