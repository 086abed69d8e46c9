"""Microcontroller estimate of a .tflite file: flash bytes and a TFLM-style tensor arena.

flash = the model file's bytes (weights + graph), also split into weight bytes (constant
buffers) and the rest; arena = the peak of a greedy first-fit offset plan of the activation
tensors (non-constant, batch 1, at the training image size) over their lifetimes in operator
order, largest tensor first, offsets aligned to 16 bytes, like TFLM's GreedyMemoryPlanner (no
scratch buffers, no per-tensor structs, no in-place reshapes: a floor, not TFLM's exact arena).
The graph comes from the flatbuffer (``schema_py_generated``); tensor shapes at the training
size are propagated by LiteRT's ``allocate_tensors`` (no TensorFlow), or taken from the file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError

_DTYPE_BYTES = {
    "FLOAT32": 4,
    "FLOAT16": 2,
    "BFLOAT16": 2,
    "INT32": 4,
    "UINT8": 1,
    "INT64": 8,
    "BOOL": 1,
    "INT16": 2,
    "INT8": 1,
    "FLOAT64": 8,
    "UINT32": 4,
    "UINT16": 2,
    "UINT64": 8,
    "COMPLEX64": 8,
    "COMPLEX128": 16,
    "INT4": 0.5,
    "UINT4": 0.5,
    "INT2": 0.25,
    "FLOAT8_E4M3FN": 1,
    "FLOAT8_E5M2": 1,
}


def _propagated_shapes(buf: bytes, input_shape) -> dict[int, list[int]]:
    """Tensor index -> shape after resizing subgraph 0's input to ``input_shape`` (LiteRT)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=buf,
        num_threads=1,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.resize_tensor_input(it.get_input_details()[0]["index"], list(input_shape), strict=False)
    it.allocate_tensors()
    return {int(d["index"]): [int(v) for v in d["shape"]] for d in it.get_tensor_details()}


def greedy_plan(tensors: list[tuple[int, int, int]], alignment: int = 16) -> tuple[int, list]:
    """Greedy first-fit offset plan of (bytes, first_op, last_op) buffers, largest first.

    Each buffer goes at the lowest offset that does not overlap (in address) a buffer already
    placed whose lifetime [first, last] intersects its own. Returns (peak bytes, offsets).
    """
    order = sorted(range(len(tensors)), key=lambda i: (-tensors[i][0], tensors[i][1], i))
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    offsets = [0] * len(tensors)
    peak = 0
    for i in order:
        size, first, last = tensors[i]
        size = int(math.ceil(size / alignment) * alignment) if alignment > 1 else int(size)
        live = sorted((o, s) for o, s, f, la in placed if f <= last and first <= la)
        offset = 0
        for o, s in live:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, first, last))
        offsets[i] = offset
        peak = max(peak, offset + size)
    return peak, offsets


def tflite_memory_estimate(path, image_size=None, alignment: int = 16) -> dict:
    """Arena (peak activation memory) and flash estimate of a .tflite file for a microcontroller.

    Parses the flatbuffer (subgraph 0, operators in execution order); activation tensors are
    the non-constant ones, sized at batch 1 and ``image_size`` (default: the metadata's
    training size). See the module docstring for the method and its limits.
    """
    from cnnedge.artifacts import tflite_metadata, tflite_model

    path = Path(path)
    if not path.is_file():
        raise CnnedgeError(f"no model file at {path}")
    buf = path.read_bytes()
    schema, model = tflite_model(buf, path)
    names = {getattr(schema.TensorType, k): k for k in dir(schema.TensorType) if k.isupper()}
    try:
        meta = tflite_metadata(buf, path) or {}
        sg = model.Subgraphs(0)
        n_ops = sg.OperatorsLength()
        inputs = [int(i) for i in sg.InputsAsNumpy()]
        outputs = [int(i) for i in sg.OutputsAsNumpy()]
        constant, weight_bytes = _constants(model, sg)
        if image_size is None:
            image_size = meta.get("image_size")
        channels = int(meta.get("channels") or sg.Tensors(inputs[0]).ShapeAsNumpy()[-1])
        approximate = False
        shapes: dict[int, list[int]] = {}
        if image_size:
            try:
                shapes = _propagated_shapes(buf, [1, int(image_size[0]), int(image_size[1]), channels])
            except Exception:  # noqa: BLE001 - no LiteRT or a graph it cannot resize: file shapes
                approximate = True
        first, last = _lifetimes(sg, constant, inputs, outputs)
        tensors, sizes = [], []
        for i in sorted(first):
            t = sg.Tensors(i)
            shape = shapes.get(i)
            if shape is None:
                shape = [int(v) for v in (t.ShapeAsNumpy() if t.ShapeLength() else [])]
                if t.ShapeSignatureLength():
                    sig = [int(v) for v in t.ShapeSignatureAsNumpy()]
                    if any(v < 0 for v in sig):
                        approximate = True
                        shape = [1 if v < 0 else v for v in sig]
            nbytes = int(
                math.ceil(int(np.prod(shape, dtype=np.int64)) * _DTYPE_BYTES.get(names.get(t.Type(), ""), 4))
            )
            tensors.append((nbytes, first[i], last[i]))
            sizes.append(nbytes)
    except CnnedgeError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt/truncated flatbuffer
        raise CnnedgeError(f"{path}: cannot read the TFLite graph: {type(e).__name__}: {e}") from e
    arena, _ = greedy_plan(tensors, alignment=alignment)
    aligned = [int(math.ceil(s / alignment) * alignment) for s in sizes]
    return {
        "arena_bytes": int(arena),
        "flash_bytes": len(buf),
        "weight_bytes": int(weight_bytes),
        "graph_bytes": len(buf) - int(weight_bytes),
        "activation_tensors": len(sizes),
        "largest_tensor_bytes": int(max(aligned, default=0)),
        "sum_tensor_bytes": int(sum(aligned)),
        "operators": int(n_ops),
        "image_size": list(image_size) if image_size else None,
        "alignment": alignment,
        "approximate_shapes": approximate,
    }


def _constants(model, sg) -> tuple[set, int]:
    """(tensors that hold data in the file, bytes of those buffers, each counted once)."""
    constant, weight_bytes, counted_buffers = set(), 0, set()
    for i in range(sg.TensorsLength()):
        b = sg.Tensors(i).Buffer()
        if 0 < b < model.BuffersLength():
            bb = model.Buffers(b)
            nbytes = bb.DataLength() or int(bb.Size() or 0)
            if nbytes > 0:
                constant.add(i)
                if b not in counted_buffers:
                    counted_buffers.add(b)
                    weight_bytes += nbytes
    return constant, weight_bytes


def _lifetimes(sg, constant: set, inputs: list, outputs: list) -> tuple[dict, dict]:
    """First and last operator index at which each activation tensor is live; the model's
    inputs from the start, its outputs to the end."""
    n_ops = sg.OperatorsLength()
    first = {i: 0 for i in inputs}
    last = {i: 0 for i in inputs}
    for k in range(n_ops):
        op = sg.Operators(k)
        for i in op.InputsAsNumpy() if op.InputsLength() else []:
            i = int(i)
            if i >= 0 and i not in constant:
                first.setdefault(i, k)
                last[i] = k
        for i in op.OutputsAsNumpy() if op.OutputsLength() else []:
            i = int(i)
            if i >= 0 and i not in constant:
                first.setdefault(i, k)
                last[i] = max(last.get(i, k), k)
    for i in outputs:
        if i in first:
            last[i] = max(n_ops - 1, 0)
    return first, last
