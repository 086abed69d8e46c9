"""The int8 ONNX graph rewrite: tf2onnx's conversion of the int8 TFLite model -> a QDQ graph
onnxruntime fuses into real integer kernels (QLinearConv / QGemm), with the same values.

* activations int8 -> uint8 (zero point +128, same scale: bit-identical values);
* the ReLU that tf2onnx splits off each fused conv becomes ``Clip(min=zero point)`` on the
  quantized tensor (exact: quantization is monotonic);
* input "image" takes uint8 pixels (scale 1, zero point 0), output "logits" is float32;
* weights (``weights``): ``"int8"`` (default) keeps TFLite's int8 weights symmetric, zero point
  0 made explicit -- standard QDQ (TensorRT, OpenVINO) and onnxruntime's fast U8S8 kernels on
  VNNI CPUs and ARM. ``"uint8"`` stores them as uint8 + 128 with zero point 128 (same values)
  for onnxruntime's U8U8 kernels, exact on x86 CPUs without VNNI too, where the U8S8 kernels
  add u8*s8 pairs into saturating int16 sums.
"""

from __future__ import annotations

import collections

import numpy as np

from cnnedge.artifacts import INPUT_NAME, OUTPUT_NAME
from cnnedge.errors import CnnedgeError
from cnnedge.utils import unknown


def rename_io(proto, new_in: str, new_out: str) -> None:
    g = proto.graph
    for value, new in ((g.input[0], new_in), (g.output[0], new_out)):
        old = value.name
        if old == new:
            continue
        for n in g.node:
            for k, name in enumerate(n.input):
                if name == old:
                    n.input[k] = new
            for k, name in enumerate(n.output):
                if name == old:
                    n.output[k] = new
        value.name = new


# int8 ONNX weight layouts, default first (module doc): int8 is what TensorRT and OpenVINO expect
# and the fast one on VNNI and ARM; uint8 is the exact one for x86 CPUs without VNNI
WEIGHTS = ("int8", "uint8")


def requantize(proto, weights: str = "int8"):
    """Rewrite tf2onnx's int8 QDQ graph so onnxruntime's QDQ fusion applies (module doc)."""
    if weights not in WEIGHTS:
        raise unknown("ONNX weights", weights, WEIGHTS)
    from onnx import TensorProto

    g = proto.graph
    rename_io(proto, INPUT_NAME, g.output[0].name)
    if g.input[0].type.tensor_type.elem_type != TensorProto.INT8:
        raise CnnedgeError("int8 TFLite -> ONNX: expected an int8 input tensor")
    g.input[0].type.tensor_type.elem_type = TensorProto.UINT8
    _shift_to_uint8(g, weights)
    nodes = _clip_relus(g)
    _float_output(g, nodes)
    used = {name for n in g.node for name in n.input}  # tf2onnx's int8 zero points go
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return proto


def _shift_to_uint8(g, weights: str) -> None:
    """Every int8 activation Q/DQ -> uint8 (+128): zero points z -> z + 128, so the uint8
    input and the QDQ pairs onnxruntime fuses agree. Weights (int8, zero point 0 in TFLite's
    quantization spec): kept as int8 with an explicit int8 zero point 0, or with "uint8"
    w + 128 with zero point 128 -- the U8U8 layout for AVX2 CPUs without VNNI, where U8S8
    drifted from TFLite (measured on an AVX2 EPYC: 94.4 % top-1 agreement, |Δlogit| up to 3.1;
    U8U8: identical). int32 biases stay."""
    from onnx import numpy_helper

    inits = {t.name: t for t in g.initializer}

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def add(name, arr):
        t = numpy_helper.from_array(arr, name)
        g.initializer.append(t)
        inits[name] = t
        return name

    def shifted(name, arr):  # int8 -> uint8 + 128: the same quantized values
        return add(name, (arr.astype(np.int16) + 128).astype(np.uint8))

    for i, n in enumerate(g.node):
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        weight = n.op_type == "DequantizeLinear" and n.input[0] in inits
        if weight:
            w = const(n.input[0])
            if w.dtype != np.int8:
                continue  # int32 biases
            zero = np.zeros(np.shape(const(n.input[1])), np.int8)  # shaped like the scale
            if weights == "int8":
                if len(n.input) < 3:  # explicit: some consumers want the zero point's type
                    n.input.append(add(f"{n.name}__zp_{i}", zero))
                continue
            n.input[0] = shifted(f"{n.input[0]}__u8_{i}", w)
            if len(n.input) < 3:
                n.input.append(shifted(f"{n.name}__zp_u8_{i}", zero))
                continue
        elif len(n.input) < 3:
            continue
        zp = const(n.input[2])
        if zp is None or zp.dtype != np.int8:
            raise CnnedgeError(f"int8 TFLite -> ONNX: unexpected zero point on {n.name}")
        n.input[2] = shifted(f"{n.input[2]}__u8_{i}", zp)


def _clip_relus(g) -> list:
    """Relu -> QuantizeLinear  ==>  QuantizeLinear -> Clip(min = zero point): the new node
    list (the graph is not changed yet)."""
    from onnx import helper

    consumers = collections.defaultdict(list)
    for n in g.node:
        for name in n.input:
            consumers[name].append(n)
    relu_q = {}
    for n in g.node:
        c = consumers[n.output[0]] if n.op_type == "Relu" else []
        if len(c) == 1 and c[0].op_type == "QuantizeLinear":
            relu_q[id(c[0])] = n
    nodes = []
    for n in g.node:
        if n.op_type == "Relu" and any(r is n for r in relu_q.values()):
            continue
        nodes.append(n)
        if id(n) in relu_q:
            n.input[0] = relu_q[id(n)].input[0]
            y = n.output[0]
            n.output[0] = f"{y}__prerelu"
            nodes.append(helper.make_node("Clip", [n.output[0], n.input[2]], [y], name=f"{y}__relu_q"))
    return nodes


def _float_output(g, nodes: list) -> None:
    """The graph becomes ``nodes`` + a DequantizeLinear: uint8 output -> float32 "logits"."""
    from onnx import TensorProto, helper

    old_out = g.output[0].name
    q_out = next(n for n in nodes if old_out in n.output)
    if q_out.op_type != "QuantizeLinear":
        raise CnnedgeError("int8 TFLite -> ONNX: expected a quantized output")
    nodes.append(
        helper.make_node(
            "DequantizeLinear",
            [old_out, q_out.input[1], q_out.input[2]],
            [OUTPUT_NAME],
            name="logits_dequantize",
        )
    )
    del g.node[:]
    g.node.extend(nodes)
    g.output[0].name = OUTPUT_NAME
    g.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
