"""The GMP model family: compact strided-conv CNNs with a global-max-pooling head (timm style).

    m = create_model("gmp_s", num_classes=10, channels=1)   # any H×W >= min_input_size(m)
    list_models(); model_help("gmp_s"); summary_dict(m, (28, 28, 1))

Every model takes float32 images holding **raw pixels 0..255** (input "image", shape
(None, None, C) -- or a fixed (H, W, C) for the baselines) and returns **logits** (layer "logits").

Rescaling under QAT: ``keras.layers.Rescaling`` is rejected by tfmot's ``quantize_model``, and a
custom layer would need a QuantizeConfig, annotation and a scope everywhere. Instead the first
layer is a frozen 1×1 ``DepthwiseConv2D`` ("rescale") whose kernel is 1/255 -- a plain layer that
tfmot quantizes out of the box. In the int8 TFLite model the input then gets scale 1.0 /
zero point -128 (int8 = pixel - 128, lossless) and 1/255 is exact as an int8 weight (127 with
scale 1/(255·127)), so the rescale costs one tiny op and no accuracy. The cost: C parameters and
H·W·C MACs per image, both counted below. The kernel is frozen in float training; tfmot's
QuantizeWrapper re-adds wrapped kernels as trainable, so during QAT it may drift slightly from
1/255 -- harmless (a per-channel input scale, BN or the next conv absorbs it, int8 stays exact).
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Sequence

import numpy as np

from cnnedge.backend import keras
from cnnedge.errors import CnnedgeError

_REGISTRY: dict[str, Callable] = {}


# ---------------------------------------------------------------------------------------- registry
def register_model(fn: Callable) -> Callable:
    """Decorator: register a builder ``fn(num_classes, channels, **options)`` under its name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise CnnedgeError(f"model '{name}' is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def _builder(name: str) -> Callable:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise CnnedgeError(f"unknown model '{name}'; {hint}available: {', '.join(list_models())}")
    return _REGISTRY[name]


def model_help(name: str) -> str:
    """First line of the builder's docstring."""
    doc = inspect.getdoc(_builder(name)) or ""
    return doc.splitlines()[0] if doc else ""


def create_model(name: str, *, num_classes: int, channels: int, **kwargs):
    """Build registered model ``name``; ``kwargs`` must be options of its builder."""
    fn = _builder(name)
    valid = [p for p in inspect.signature(fn).parameters if p not in ("num_classes", "channels")]
    bad = sorted(set(kwargs) - set(valid))
    if bad:
        raise CnnedgeError(f"model '{name}' has no option(s) {', '.join(bad)}; "
                           f"valid: {', '.join(valid) or '(none)'}")
    if int(num_classes) < 2:
        raise CnnedgeError(f"num_classes must be >= 2, got {num_classes}")
    if int(channels) not in (1, 3):
        raise CnnedgeError(f"channels must be 1 or 3, got {channels}")
    return fn(int(num_classes), int(channels), **kwargs)


# ------------------------------------------------------------------------------------ building
def _input(channels: int, size: tuple[int, int] | None = None):
    h, w = (None, None) if size is None else (int(size[0]), int(size[1]))
    x_in = keras.Input(shape=(h, w, channels), dtype="float32", name="image")
    # Frozen 1×1 depthwise conv = x/255, a layer tfmot's quantize_model accepts (module doc).
    x = keras.layers.DepthwiseConv2D(
        1, use_bias=False, depthwise_initializer=keras.initializers.Constant(1.0 / 255.0),
        trainable=False, name="rescale")(x_in)
    return x_in, x


def _conv_bn_relu(x, filters: int, stride: int, name: str, residual: bool = False):
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    y = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(y)
    if residual:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def _check_head(pool: str, dropout: float) -> None:
    if pool not in ("max", "avg"):
        raise CnnedgeError(f"pool must be 'max' or 'avg', got {pool!r}")
    if not 0.0 <= dropout < 1.0:
        raise CnnedgeError(f"dropout must be in [0, 1), got {dropout}")


def _head(x, num_classes: int, pool: str, dropout: float, hidden: int):
    """Global max (or average) pool -> [Dropout] -> [Dense+ReLU] -> Dense "logits"."""
    pooling = keras.layers.GlobalMaxPooling2D if pool == "max" else keras.layers.GlobalAvgPool2D
    x = pooling(name=f"global_{pool}_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    if hidden:
        x = keras.layers.Dense(hidden, name="hidden")(x)
        x = keras.layers.ReLU(name="hidden_relu")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def gmp_cnn(num_classes: int, channels: int, widths: Sequence[int] = (32, 64, 128),
            extra: Sequence[int] = (0, 0, 0), stem: int = 0, pool: str = "max",
            dropout: float = 0.0, hidden: int = 0, residual: bool = False,
            name: str = "gmp_cnn"):
    """Generic GMP CNN: [stem] -> per stage (3×3 s2 conv-BN-ReLU + `extra` s1 blocks) -> head.

    widths: filters per stage (each stage halves H and W); extra: stride-1 conv-BN-ReLU blocks
    per stage (identity-residual if ``residual``); stem: filters of a stride-1 conv before the
    first stage (0 = none); pool: "max" (GlobalMaxPooling2D) or "avg"; dropout before the
    classifier; hidden: units of an optional Dense+ReLU before the "logits" Dense.
    """
    widths, extra = tuple(int(w) for w in widths), tuple(int(e) for e in extra)
    if not widths or len(extra) != len(widths):
        raise CnnedgeError(f"widths {widths} and extra {extra} must be non-empty, same length")
    _check_head(pool, dropout)
    x_in, x = _input(channels)
    if stem:
        x = _conv_bn_relu(x, stem, 1, "stem")
    for i, (w, n) in enumerate(zip(widths, extra), start=1):
        x = _conv_bn_relu(x, w, 2, f"s{i}")
        for j in range(1, n + 1):
            x = _conv_bn_relu(x, w, 1, f"s{i}_x{j}", residual=residual)
    return keras.Model(x_in, _head(x, num_classes, pool, dropout, hidden), name=name)


def _basic_block(x, filters: int, stride: int, name: str):
    """ResNet basic block: 3×3 (stride) conv-BN-ReLU -> 3×3 conv-BN, + shortcut, ReLU.

    The shortcut is the identity, or a 1×1 strided conv-BN when the shape changes (the strided
    conv still does the downsampling: no pooling anywhere)."""
    y = _conv_bn_relu(x, filters, stride, f"{name}a")
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}b_conv")(y)
    y = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}b_bn")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                name=f"{name}_proj_conv")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(x)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def gmp_resnet(num_classes: int, channels: int, widths: Sequence[int] = (16, 32, 64),
               blocks: Sequence[int] = (1, 1, 1), stem: int = 0, pool: str = "max",
               dropout: float = 0.0, hidden: int = 0, name: str = "gmp_resnet"):
    """Generic residual GMP CNN: stride-1 stem conv -> stages of basic blocks -> head.

    Stage 1 keeps the input resolution; every later stage starts with a stride-2 block, so the
    total stride is 2**(len(widths)-1). widths: filters per stage; blocks: basic blocks (two 3×3
    convs each) per stage; stem: stem filters (0 = widths[0]); pool/dropout/hidden as gmp_cnn.
    """
    widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
    if not widths or len(blocks) != len(widths) or min(blocks) < 1:
        raise CnnedgeError(f"widths {widths} and blocks {blocks} must be non-empty, same length, "
                           "blocks >= 1")
    _check_head(pool, dropout)
    x_in, x = _input(channels)
    x = _conv_bn_relu(x, int(stem) or widths[0], 1, "stem")
    for i, (w, n) in enumerate(zip(widths, blocks), start=1):
        for j in range(1, n + 1):
            x = _basic_block(x, w, 2 if i > 1 and j == 1 else 1, f"s{i}b{j}")
    return keras.Model(x_in, _head(x, num_classes, pool, dropout, hidden), name=name)


# Params are for 10 classes: "1-ch" = 28×28×1, "3-ch" = 32×32×3 (params do not depend on H×W).
@register_model
def gmp_xs(num_classes, channels, pool="max", dropout=0.0, hidden=0):
    """Tiny 3-stage GMP CNN, widths 16-32-64, no extra convs: 24k params, stride 8.

    1-ch: 24,283 params, 0.55M MACs at 28×28. 3-ch: 24,573 params, 0.70M MACs at 32×32.
    For quick experiments and micro-controllers; min input 8×8.
    """
    return gmp_cnn(num_classes, channels, (16, 32, 64), (0, 0, 0), 0, pool, dropout, hidden,
                   name="gmp_xs")


@register_model
def gmp_s(num_classes, channels, pool="max", dropout=0.1, hidden=0):
    """Fashion-MNIST flagship: stem 16 + widths 32-48-96, one extra conv in stages 1-2 (<100k).

    1-ch: 92,059 params, 5.18M MACs at 28×28. 3-ch: 92,349 params, 6.86M MACs at 32×32.
    7 conv layers, total stride 8 (min input 8×8); meant to reach ~93% on Fashion-MNIST.
    """
    return gmp_cnn(num_classes, channels, (32, 48, 96), (1, 1, 0), 16, pool, dropout, hidden,
                   name="gmp_s")


@register_model
def gmp_32_64_128(num_classes, channels, pool="max", dropout=0.0, hidden=0):
    """The plain 3-stage strided GMP CNN, widths 32-64-128, no stem, no extras (<100k).

    1-ch: 94,635 params, 2.14M MACs at 28×28. 3-ch: 95,213 params, 2.58M MACs at 32×32.
    Three conv layers only, stride 8 (min input 8×8): the cheapest ~95k-param member.
    """
    return gmp_cnn(num_classes, channels, (32, 64, 128), (0, 0, 0), 0, pool, dropout, hidden,
                   name="gmp_32_64_128")


@register_model
def gmp_4stage(num_classes, channels, pool="max", dropout=0.0, hidden=0):
    """4-stage GMP CNN, widths 16-32-64-128, for larger images (56×56 and up; <100k).

    1-ch: 99,163 params, 0.85M MACs at 28×28. 3-ch: 99,453 params, 1.00M MACs at 32×32.
    Total stride 16 (min input 16×16).
    """
    return gmp_cnn(num_classes, channels, (16, 32, 64, 128), (0, 0, 0, 0), 0, pool, dropout,
                   hidden, name="gmp_4stage")


@register_model
def gmp_res8(num_classes, channels, pool="max", dropout=0.1, hidden=0):
    """CIFAR-10 residual member (ResNet-8-like budget): stem 16, widths 32-48-88, residual extras.

    Stage 1 has two identity-residual 3×3 blocks, stage 2 one, stage 3 none (<100k).
    1-ch: 97,835 params, 6.93M MACs at 28×28. 3-ch: 98,125 params, 9.16M MACs at 32×32.
    Total stride 8 (min input 8×8).
    """
    return gmp_cnn(num_classes, channels, (32, 48, 88), (2, 1, 0), 16, pool, dropout, hidden,
                   residual=True, name="gmp_res8")


@register_model
def gmp_res10(num_classes, channels, pool="max", dropout=0.1, hidden=0):
    """CIFAR-10 ResNet-10-like member: stem 16, basic blocks (2,1,1) at widths 16-32-72.

    Two residual blocks at full resolution, then one stride-2 block per stage (<100k).
    1-ch: 95,691 params, 13.56M MACs at 28×28. 3-ch: 95,981 params, 18.01M MACs at 32×32.
    Total stride 4 (min input 4×4).
    """
    return gmp_resnet(num_classes, channels, (16, 32, 72), (2, 1, 1), 16, pool, dropout, hidden,
                      name="gmp_res10")


@register_model
def gmp_res12(num_classes, channels, pool="max", dropout=0.0, hidden=0):
    """CIFAR-10 ResNet-12-like member: stem 16, basic blocks (2,2,1) at widths 16-32-60.

    Two residual blocks at full resolution and two at half, then one stride-2 block (<100k).
    1-ch: 96,019 params, 16.29M MACs at 28×28. 3-ch: 96,309 params, 21.57M MACs at 32×32.
    Total stride 4 (min input 4×4).
    """
    return gmp_resnet(num_classes, channels, (16, 32, 60), (2, 2, 1), 16, pool, dropout, hidden,
                      name="gmp_res12")


# ---------------------------------------------------------------------------------- baselines
@register_model
def baseline_flatten(num_classes, channels, input_size=(28, 28), dropout=0.2):
    """Course baseline: 3 strided convs (32-64-128, 3×3 s2 valid) -> Flatten -> Dense 512.

    Fixed input size. 1-ch 28×28: 360,459 params, 1.28M MACs (the classic "360k").
    3-ch 32×32: 688,717 params, 2.36M MACs.
    """
    x_in, x = _input(channels, input_size)
    for i, f in enumerate((32, 64, 128), start=1):
        x = keras.layers.Conv2D(f, 3, strides=2, activation="relu", name=f"conv{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout1")(x)
    x = keras.layers.Dense(512, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(dropout, name="dropout2")(x)
    out = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(x_in, out, name="baseline_flatten")


@register_model
def baseline_pool(num_classes, channels, input_size=(28, 28), dropout=0.5):
    """Keras-example baseline: conv 32 -> maxpool -> conv 64 -> maxpool -> Flatten -> Dense.

    Fixed input size. 1-ch 28×28: 34,827 params, 2.44M MACs.
    3-ch 32×32: 42,445 params, 3.92M MACs.
    """
    x_in, x = _input(channels, input_size)
    for i, f in enumerate((32, 64), start=1):
        x = keras.layers.Conv2D(f, 3, activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    out = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(x_in, out, name="baseline_pool")


# ---------------------------------------------------------------------------- graph utilities
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
        raise CnnedgeError(f"input has {shape[2]} channel(s) but model {model.name} expects "
                           f"{want_c}")
    fixed = _fixed_size(model)
    if fixed:
        if (h, w) != fixed and None not in (h, w):
            raise CnnedgeError(f"input {h}×{w} does not match model {model.name}'s fixed input "
                               f"size {fixed[0]}×{fixed[1]}; resize images to {fixed[0]}×"
                               f"{fixed[1]} (or rebuild it with input_size=({h}, {w}))")
        return
    mh, mw = _min_hw(model)
    if (h is not None and h < mh) or (w is not None and w < mw):
        raise CnnedgeError(f"input {h}×{w} is smaller than this model's minimum {mh}×{mw} "
                           f"(total stride {total_stride(model)}); resize images to at least "
                           f"{mh}×{mw}")


def predict(model, images, batch_size: int = 256) -> np.ndarray:
    """Logits for ``images`` (N, H, W, C) or grayscale (N, H, W), pixels 0..255, size-checked."""
    x = np.asarray(images)
    if x.ndim == 3 and model.input_shape[-1] == 1:
        x = x[..., None]
    if x.ndim != 4:
        raise CnnedgeError(f"expected images of shape (N, H, W, C), got {x.shape}")
    check_input_size(model, x.shape)
    return model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0)


# ------------------------------------------------------------------------------- size metrics
def count_params(model) -> int:
    """All weights (trainable + BN statistics + the frozen rescale kernel)."""
    return int(model.count_params())


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
    shapes: dict[str, tuple] = {}
    macs = 0
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
            macs += out[1] * out[2] * (kh * kw * cin * inner.depth_multiplier
                                       + cin * inner.depth_multiplier * inner.filters)
        elif kind == "Dense":
            positions = math.prod(out[1:-1]) if len(out) > 2 else 1
            macs += positions * ins[0][-1] * inner.units
    return int(macs)


def summary_dict(model, input_shape: Sequence[int] | None = None) -> dict:
    """{"params", "macs" (per image at input_shape), "min_input_size"}."""
    return {"params": count_params(model), "macs": count_macs(model, input_shape),
            "min_input_size": min_input_size(model)}


# ------------------------------------------------------------------------------ saving/loading
def quantize_scope():
    """Context manager for loading QAT models (tfmot's scope; the family has no custom layers)."""
    from cnnedge.backend import get_tfmot

    return get_tfmot().quantization.keras.quantize_scope()


def init_weights(model, source) -> None:
    """Copy the weights of ``source`` (a run dir or a .keras file of the same architecture) into
    ``model``: the start point of a fine-tuning run (recipe ``model.weights``)."""
    from cnnedge.utils import model_file

    src = load_model(model_file(source, "model.weights"), compile=False)
    mine = [(w.name, tuple(w.shape)) for w in model.weights]
    theirs = [(w.name, tuple(w.shape)) for w in src.weights]
    if [s for _, s in mine] != [s for _, s in theirs]:
        diff = next(((a, b) for a, b in zip(mine, theirs) if a[1] != b[1]), None)
        where = (f"first difference: {diff[0][0]} {diff[0][1]} vs {diff[1][1]}" if diff else
                 f"{len(mine)} vs {len(theirs)} weight tensors")
        raise CnnedgeError(f"model.weights {source}: {src.name} does not match {model.name} "
                           f"({where})")
    model.set_weights(src.get_weights())


def load_model(path, compile: bool = False):
    """Load a model written by cnnedge: float (.keras/.h5) or QAT (.h5 or SavedModel: tfmot
    0.8.1 cannot reload its quantizer variables from the .keras format)."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise CnnedgeError(f"no model file at {path}")
    with quantize_scope():
        try:
            return keras.models.load_model(path, compile=compile)
        except ValueError as e:
            if "variables during loading" in str(e):
                raise CnnedgeError(f"cannot load {path}: QAT models must be saved as .h5 or a "
                                   f"SavedModel, not .keras ({e})") from e
            raise
