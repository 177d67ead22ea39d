"""int8 musicnn front end: the exported graph with its timbral convolutions in 8-bit integers.

The timbral convolutions (7 x 38 and 7 x 67 filters, 204 each, in both networks) are ~75 % of the shipped
model's work and float32 already runs them near this CPU's peak, so the work must get cheaper: onnxruntime
runs them as ``QLinearConv`` (integer products, int32 sums), 2-2.5x faster (benchmarks/bench_onnx.py).
Each one becomes ``Clip -> QuantizeLinear -> QLinearConv -> ReduceMax -> DequantizeLinear -> Mul``:

- **Input**: musicnn's log-mel cannot exceed :func:`log_mel_bound` for audio within full scale, so its
  range (after the network's input batch norm) is known without calibration and loud input is never
  clipped. It is quantized to 7 bits (0-127) and the weights to 8 (per channel, symmetric): then no
  pair of products overflows the int16 sums of onnxruntime's AVX2 kernel (2 x 128 x 127 < 32767), so the
  integer sums are exact and the same on every CPU; only the float32 parts vary, as PyTorch's do.
- **Output**: ``QLinearConv`` writes uint8 with one scale for all 204 channels, which would leave channels
  with small outputs a few levels. Each channel's weight scale is therefore declared ``1 / R_c`` times its
  own, so every channel fills the uint8 range, and the dequantized maxima are multiplied back by ``R_c``,
  where ``R_c`` is ``margin`` times the largest magnitude of that channel's frequency maxima over
  calibration patches (:func:`quantize_timbral`).
- The maximum over frequency is taken on the uint8 map (max commutes with the positive scales) and only
  the 187 maxima per channel are dequantized.

Which convolutions, how many bits and how it was checked (top-1 agreement with float32 on clips held out of
calibration and on every excerpt) are in ``scripts/quantize_default_model.py`` and ``reports/quantization.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

__all__ = ["TimbralConv", "log_mel_bound", "timbral_convs", "calibrate", "quantize_timbral"]

_INPUT_LEVELS = 127  # 7-bit activations: see the module's note on int16 sums
_WEIGHT_LEVELS = 127  # 8-bit symmetric weights
_OUTPUT_SCALE, _OUTPUT_ZERO = 2.0 / 255.0, 128  # uint8 output in [-1, 1] after the per-channel equalization


def log_mel_bound() -> float:
    """The largest value musicnn's log-mel can take for a signal within [-1, 1].

    An STFT bin's magnitude is at most the window's sum (n_fft / 2 for the periodic Hann window), so a mel
    band's power is at most that squared times the band's filter sum: log10(10000 * that + 1) = 7.35.
    """
    from ..features.logmel import mel_filterbank
    from ..features.musicnn import N_FFT, default_feature_config

    band_sum = float(np.asarray(mel_filterbank(default_feature_config())).sum(axis=1).max())
    return float(np.log10(10000.0 * (N_FFT / 2) ** 2 * band_sum + 1.0))


@dataclass(frozen=True)
class TimbralConv:
    """One timbral convolution of an exported musicnn graph and what quantizing it needs.

    Attributes
    ----------
    conv, pool : str
        Names of the ``Conv`` node and of the ``ReduceMax`` over frequency that reads it.
    weight : ndarray of shape (204, 1, 7, width)
        Its filters (sign-flipped where the channel's batch norm decreases, see :class:`~genrekit.models.musicnn.MusiCNN`).
    input_range : (float, float)
        The range of its padded input: the input batch norm of ``[0, log_mel_bound()]``, and the zero of the padding.
    """

    conv: str
    pool: str
    weight: np.ndarray
    input_range: tuple[float, float]


def _constant(model: Any, name: str) -> np.ndarray:
    """The value of ``name`` in ``model``'s graph when it depends on initializers and constants only."""
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    producer = next(n for n in graph.node if name in n.output)
    if producer.op_type == "Constant":
        return numpy_helper.to_array(producer.attribute[0].t)
    inputs = {i: _constant(model, i) for i in producer.input if i}
    single = onnx.helper.make_model(
        onnx.helper.make_graph(
            [producer], "constant", [onnx.helper.make_tensor_value_info(i, onnx.TensorProto.FLOAT, None) for i in inputs],
            [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)],
        ),
        opset_imports=model.opset_import,
    )
    outputs = cast(list[Any], ReferenceEvaluator(single).run(None, inputs))  # a list for a list of outputs; its stub says list or dict
    return np.asarray(outputs[0])


def _input_range(model: Any, padded: str, producer: dict[str, Any]) -> tuple[float, float]:
    pad = producer[padded]
    norm = producer[pad.input[0]]
    if pad.op_type != "Pad" or norm.op_type != "BatchNormalization":
        raise ValueError(f"{padded}: a timbral convolution's input should be the padded input batch norm, not {pad.op_type} of {norm.op_type}")
    gamma, beta, mean, var = (float(_constant(model, i).reshape(-1)[0]) for i in norm.input[1:5])
    eps = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)
    a = gamma / np.sqrt(var + eps)
    ends = (beta - mean * a, a * log_mel_bound() + beta - mean * a)
    return min(*ends, 0.0), max(*ends, 0.0)


def timbral_convs(model: Any) -> list[TimbralConv]:
    """The timbral convolutions of an exported musicnn graph (an ``onnx.ModelProto``): ``Conv`` nodes over the
    one-channel padded log-mel with filters wider than one mel band (the temporal ones are one band wide),
    each read only by a ``ReduceMax``."""
    producer = {out: n for n in model.graph.node for out in n.output}
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    found = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) != 2:
            continue
        weight = _constant(model, node.input[1])
        users = readers.get(node.output[0], [])
        if weight.ndim == 4 and weight.shape[1] == 1 and weight.shape[3] > 1 and len(users) == 1 and users[0].op_type == "ReduceMax":
            found.append(TimbralConv(node.name, users[0].name, weight, _input_range(model, node.input[0], producer)))
    return found


def calibrate(model_bytes: bytes, convs: list[TimbralConv], batches: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Per channel, the largest magnitude of each convolution's frequency maxima over ``batches`` of
    log-mel patches (shape (n, frames, 96)), keyed by the ``ReduceMax`` node's name."""
    import onnx
    import onnxruntime as ort

    model = onnx.load_from_string(model_bytes)
    pools = {n.name: n.output[0] for n in model.graph.node if n.name in {c.pool for c in convs}}
    for output in pools.values():
        model.graph.output.append(onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    largest: dict[str, np.ndarray] = {}
    for batch in batches:
        values = session.run(list(pools.values()), {name: np.ascontiguousarray(batch, dtype=np.float32)})
        for pool, value in zip(pools, values):
            magnitude = np.abs(value).max(axis=(0, 2))
            largest[pool] = np.maximum(largest[pool], magnitude) if pool in largest else magnitude
    if len(largest) != len(convs):
        raise ValueError("no calibration batches")
    return largest


def _rewrite(model: Any, conv: TimbralConv, largest: np.ndarray, margin: float, inputs: dict[str, tuple[str, str, str]]) -> None:
    """Replace ``conv`` and its ``ReduceMax`` in ``model`` by the int8 chain of the module's note; ``inputs``
    maps a float input already quantized (the two timbral convolutions of a network share theirs) to its
    (quantized, scale, zero point) names."""
    from onnx import helper, numpy_helper

    graph = model.graph
    node = next(n for n in graph.node if n.name == conv.conv)
    pool = next(n for n in graph.node if n.name == conv.pool)
    x, base = node.input[0], node.name.strip("/").replace("/", "_")

    def constant(suffix: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, f"{base}_{suffix}"))
        return f"{base}_{suffix}"

    new = []
    if x not in inputs:
        lo, hi = conv.input_range
        x_scale = (hi - lo) / _INPUT_LEVELS
        names = (f"{base}_input_q", constant("x_scale", np.array(x_scale, np.float32)), constant("x_zero", np.array(round(-lo / x_scale), np.uint8)))
        clip = [constant("lo", np.array(lo, np.float32)), constant("hi", np.array(hi, np.float32))]
        new += [helper.make_node("Clip", [x, *clip], [f"{base}_input_clipped"]), helper.make_node("QuantizeLinear", [f"{base}_input_clipped", *names[1:]], [names[0]])]
        inputs[x] = names
    channels = len(conv.weight)
    w_scale = np.abs(conv.weight).reshape(channels, -1).max(axis=1) / _WEIGHT_LEVELS
    w_scale = np.where(w_scale > 0, w_scale, 1.0)
    w_int8 = np.clip(np.round(conv.weight / w_scale[:, None, None, None]), -_WEIGHT_LEVELS, _WEIGHT_LEVELS).astype(np.int8)
    r = margin * np.maximum(largest, 1e-6)
    weights = [constant("w", w_int8), constant("w_scale", (w_scale / r).astype(np.float32)), constant("w_zero", np.zeros(channels, np.int8))]
    y = [constant("y_scale", np.array(_OUTPUT_SCALE, np.float32)), constant("y_zero", np.array(_OUTPUT_ZERO, np.uint8))]
    conv_attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in ("kernel_shape", "strides", "pads", "dilations")}
    pool_attrs = {a.name: helper.get_attribute_value(a) for a in pool.attribute}
    new += [
        helper.make_node("QLinearConv", [*inputs[x], *weights, *y], [f"{base}_q"], **conv_attrs),
        helper.make_node("ReduceMax", [f"{base}_q", *pool.input[1:]], [f"{base}_max_q"], **pool_attrs),
        helper.make_node("DequantizeLinear", [f"{base}_max_q", *y], [f"{base}_max"]),
        helper.make_node("Mul", [f"{base}_max", constant("range", r.astype(np.float32).reshape(-1, 1))], [pool.output[0]]),
    ]
    graph.node.remove(node)
    graph.node.remove(pool)
    graph.node.extend(new)


def _sort_topologically(graph: Any) -> None:
    known = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {""}
    ordered, pending = [], list(graph.node)
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise ValueError("the graph has a cycle")
        for n in ready:
            ordered.append(n)
            known.update(n.output)
        waiting = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in waiting]
    del graph.node[:]
    graph.node.extend(ordered)


def quantize_timbral(
    model_bytes: bytes, calibration: Iterable[np.ndarray], *, widths: tuple[int, ...] = (38, 67), margin: float = 1.25, source: str = ""
) -> bytes:
    """The exported musicnn graph ``model_bytes`` with its timbral convolutions of the given filter ``widths``
    (mel bands) in int8, their output ranges calibrated on ``calibration`` (batches of log-mel patches,
    shape (n, 187, 96)) and widened by ``margin``. The graph's outputs are kept (``probabilities`` and
    ``tags``, which then come from the int8 front end too), and metadata_props, plus ``genrekit.quantization``
    (what was quantized) and ``genrekit.source`` (``source``: the checkpoint it came from, see
    :func:`genrekit.runtime.onnx.checkpoint_digest`)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    convs = [c for c in timbral_convs(model) if c.weight.shape[3] in widths]
    if not convs:
        raise ValueError("no timbral convolutions of those widths in this graph: not an exported musicnn model")
    largest = calibrate(model_bytes, convs, calibration)
    inputs: dict[str, tuple[str, str, str]] = {}
    for conv in convs:
        _rewrite(model, conv, largest[conv.pool], margin, inputs)
    _sort_topologically(model.graph)
    props = {p.key: p.value for p in model.metadata_props}
    widths_text = " and ".join(f"7 x {w}" for w in sorted({c.weight.shape[3] for c in convs}))
    props["genrekit.quantization"] = json.dumps(
        f"int8 timbral convolutions ({widths_text}; 8-bit per-channel weights, 7-bit activations, output ranges calibrated x {margin:g})"
    )
    props["genrekit.source"] = json.dumps(source)
    onnx.helper.set_model_props(model, props)
    return model.SerializeToString()
