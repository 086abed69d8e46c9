"""Graph utilities: minimum input size and the too-small-input check, params and MACs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from cnnedge.backend import keras
from cnnedge.errors import CnnedgeError


def _unwrap(layer):
    """The layer inside a tfmot QuantizeWrapper (or the layer itself)."""
    inner = getattr(layer, "layer", None)
    return inner if isinstance(inner, keras.layers.Layer) else layer


def _graph(model):
    """[(layer, [parent layer names])] in topological order (functional or Sequential)."""
    cfg = model.get_config() if not isinstance(model, keras.Sequential) else None
    if not cfg or "layers" not in cfg or not all("inbound_nodes" in c for c in cfg["layers"]):
        prev, out = [], []
        for layer in model.layers:
            out.append((layer, prev))
            prev = [layer.name]
        return out
    out = []
    for c in cfg["layers"]:
        nodes = c["inbound_nodes"]
        parents = [t[0] for t in nodes[0]] if nodes else []
        out.append((model.get_layer(c["name"]), parents))
    return out


_SPATIAL = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D")


def _axis_out(layer, size: int, axis: int) -> tuple[bool, int]:
    """(fits, size) of a spatial layer along one axis; 'same' layers count full strides only,
    so a chain of 'same' stride-2 stages needs exactly its total stride."""
    layer = _unwrap(layer)
    if type(layer).__name__ not in _SPATIAL:
        return True, size
    k = getattr(layer, "kernel_size", None) or layer.pool_size
    d = getattr(layer, "dilation_rate", (1, 1))
    s = layer.strides[axis]
    if layer.padding == "valid":
        eff = (k[axis] - 1) * d[axis] + 1
        return size >= eff, max((size - eff) // s + 1, 0)
    return size >= s, size // s


def _propagate(model, size: int, axis: int) -> tuple[bool, int]:
    """Push a spatial size through the graph; (every layer fits, smallest final size)."""
    sizes, ok = {}, True
    for layer, parents in _graph(model):
        n = min((sizes[p] for p in parents if p in sizes), default=size)
        fits, sizes[layer.name] = _axis_out(layer, n, axis)
        ok = ok and fits and sizes[layer.name] >= 1
    return ok, min(sizes.values())


def _fixed_size(model) -> tuple[int, int] | None:
    h, w = model.input_shape[1:3]
    return (int(h), int(w)) if h is not None and w is not None else None


def _min_hw(model) -> tuple[int, int]:
    mins = []
    for axis in (0, 1):
        n = 1
        while not _propagate(model, n, axis)[0]:
            n += 1
            if n > 1 << 16:
                raise CnnedgeError(f"cannot find a minimum input size for model {model.name}")
        mins.append(n)
    return mins[0], mins[1]


def total_stride(model) -> int:
    """Product of the strides (and pooling) between the input and the global pool."""
    big = 1 << 20
    return round(big / max(_propagate(model, big, 0)[1], 1))


def min_input_size(model) -> int:
    """Smallest square H=W the model accepts (its fixed size for fixed-input models).

    For 'same'-padded strided layers each stage needs at least ``stride`` pixels, so a family
    model's minimum is its total stride; 'valid' layers need their (dilated) kernel size.
    """
    fixed = _fixed_size(model)
    return max(fixed) if fixed else max(_min_hw(model))


def check_input_size(model, shape) -> None:
    """Raise CnnedgeError unless images of ``shape`` ((H, W), (H, W, C) or (N, H, W, C)) fit."""
    shape = tuple(shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) not in (2, 3):
        raise CnnedgeError(f"expected an image shape (H, W[, C]) or (N, H, W, C), got {shape}")
    h, w = shape[0], shape[1]
    want_c = model.input_shape[-1]
    if len(shape) == 3 and shape[2] is not None and want_c is not None and shape[2] != want_c:
        raise CnnedgeError(f"input has {shape[2]} channel(s) but model {model.name} expects {want_c}")
    fixed = _fixed_size(model)
    if fixed:
        if (h, w) != fixed and None not in (h, w):
            raise CnnedgeError(
                f"input {h}×{w} does not match model {model.name}'s fixed input "
                f"size {fixed[0]}×{fixed[1]}; resize images to {fixed[0]}×"
                f"{fixed[1]} (or rebuild it with input_size=({h}, {w}))"
            )
        return
    mh, mw = _min_hw(model)
    if (h is not None and h < mh) or (w is not None and w < mw):
        raise CnnedgeError(
            f"input {h}×{w} is smaller than this model's minimum {mh}×{mw} "
            f"(total stride {total_stride(model)}); resize images to at least "
            f"{mh}×{mw}"
        )


# ------------------------------------------------------------------------------- size metrics
def count_params(model) -> int:
    """All weights (trainable + BN statistics + the frozen rescale kernel)."""
    return int(model.count_params())


def _shapes(model, input_shape: tuple):
    """(layer, [input shapes], output shape) of every layer but the input, batch 1, in order."""
    shapes: dict[str, tuple] = {}
    for layer, parents in _graph(model):
        ins = [shapes[p] for p in parents if p in shapes] or [(1, *input_shape)]
        inner = _unwrap(layer)
        if isinstance(inner, keras.layers.InputLayer):
            shapes[layer.name] = (1, *input_shape)
            continue
        try:
            arg = ins if len(ins) > 1 else ins[0]
            out = tuple(inner.compute_output_shape(arg))
        except Exception:  # noqa: BLE001 - layers without shape inference pass shapes through
            out = tuple(ins[0])
        shapes[layer.name] = out
        yield inner, ins, out


_FOLDED = ("BatchNormalization", "ReLU", "Activation", "Dropout", "InputLayer")


def activation_sizes(model, input_shape: Sequence[int]) -> tuple[int, int]:
    """(peak, total) values at ``input_shape`` (H, W, C) for one image: ``peak`` the largest
    inputs + output of one layer that stays an op once batch norm and activations are folded
    (the least a tensor arena holds at once), ``total`` the sum of every layer's output."""
    peak = total = 0
    for inner, ins, out in _shapes(model, tuple(int(v) for v in input_shape)):
        n = math.prod(v for v in out[1:] if v)
        total += n
        if type(inner).__name__ not in _FOLDED:
            peak = max(peak, n + sum(math.prod(v for v in i[1:] if v) for i in ins))
    return peak, total


def count_macs(model, input_shape: Sequence[int] | None = None) -> int:
    """Multiply-accumulates per image at ``input_shape`` (H, W, C) for Conv2D, DepthwiseConv2D,
    SeparableConv2D and Dense layers (batch norm, pooling, adds and activations not counted)."""
    if input_shape is None:
        fixed = _fixed_size(model)
        if fixed is None:
            raise CnnedgeError(f"model {model.name} takes any H×W: give input_shape=(H, W, C)")
        input_shape = (*fixed, model.input_shape[-1])
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) == 2:
        input_shape = (*input_shape, model.input_shape[-1])
    check_input_size(model, input_shape)
    macs = 0
    for inner, ins, out in _shapes(model, input_shape):
        kind = type(inner).__name__
        if kind == "Conv2D":
            kh, kw = inner.kernel_size
            cin = ins[0][-1]
            macs += out[1] * out[2] * kh * kw * (cin // inner.groups) * inner.filters
        elif kind == "DepthwiseConv2D":
            kh, kw = inner.kernel_size
            macs += out[1] * out[2] * kh * kw * out[-1]
        elif kind == "SeparableConv2D":
            kh, kw = inner.kernel_size
            cin = ins[0][-1]
            macs += (
                out[1]
                * out[2]
                * (kh * kw * cin * inner.depth_multiplier + cin * inner.depth_multiplier * inner.filters)
            )
        elif kind == "Dense":
            positions = math.prod(out[1:-1]) if len(out) > 2 else 1
            macs += positions * ins[0][-1] * inner.units
    return int(macs)


def summary_dict(model, input_shape: Sequence[int] | None = None) -> dict:
    """{"params", "macs" (per image at input_shape), "min_input_size"}."""
    return {
        "params": count_params(model),
        "macs": count_macs(model, input_shape),
        "min_input_size": min_input_size(model),
    }
