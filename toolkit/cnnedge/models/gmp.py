"""The GMP family: strided 3×3 conv-BN-ReLU stages (plain or residual) and a global-pool head.

Every builder starts with the frozen 1×1 depthwise "rescale" layer (see :mod:`cnnedge.models`)
and ends with a Dense layer named "logits".
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnedge.backend import keras
from cnnedge.errors import CnnedgeError
from cnnedge.models._registry import register_model


def scaled(widths, width: float):
    """Filters × the width multiplier ``width``, rounded to a multiple of 4, at least 4 (0, no
    stem, stays 0): CMSIS-NN's SIMD kernels take channels in fours. 1.0 keeps them as they are."""
    if not isinstance(width, (int, float)) or not 0 < width <= 4:
        raise CnnedgeError(f"width must be a multiplier in (0, 4], got {width!r}")
    if not isinstance(widths, (int, float)):
        return tuple(scaled(w, width) for w in widths)
    if width == 1.0 or not widths:
        return int(widths)
    return max(4, int(round(widths * width / 4)) * 4)


def _input(channels: int, size: tuple[int, int] | None = None):
    h, w = (None, None) if size is None else (int(size[0]), int(size[1]))
    x_in = keras.Input(shape=(h, w, channels), dtype="float32", name="image")
    # Frozen 1×1 depthwise conv = x/255, a layer tfmot's quantize_model accepts (module doc).
    x = keras.layers.DepthwiseConv2D(
        1,
        use_bias=False,
        depthwise_initializer=keras.initializers.Constant(1.0 / 255.0),
        trainable=False,
        name="rescale",
    )(x_in)
    return x_in, x


def _conv_bn_relu(x, filters: int, stride: int, name: str, residual: bool = False):
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(
        x
    )
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
    """Global max, average, or both side by side ("concat") -> [Dropout] -> [Dense+ReLU] ->
    Dense "logits". Builders check ``pool`` (``_check_head``: max and avg for this module)."""
    pools = {
        "max": keras.layers.GlobalMaxPooling2D(name="global_max_pool"),
        "avg": keras.layers.GlobalAvgPool2D(name="global_avg_pool"),
    }
    if pool == "concat":
        x = keras.layers.Concatenate(name="global_concat_pool")([pools["max"](x), pools["avg"](x)])
    else:
        x = pools[pool](x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    if hidden:
        x = keras.layers.Dense(hidden, name="hidden")(x)
        x = keras.layers.ReLU(name="hidden_relu")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def gmp_cnn(
    num_classes: int,
    channels: int,
    widths: Sequence[int] = (32, 64, 128),
    extra: Sequence[int] = (0, 0, 0),
    stem: int = 0,
    pool: str = "max",
    dropout: float = 0.0,
    hidden: int = 0,
    residual: bool = False,
    name: str = "gmp_cnn",
):
    """Generic GMP CNN: [stem] -> per stage (3×3 s2 conv-BN-ReLU + `extra` s1 blocks) -> head.

    Args:
        num_classes: Classes of the "logits" Dense.
        channels: Input channels (1 grey, 3 RGB).
        widths: Filters per stage (each stage halves H and W).
        extra: Stride-1 conv-BN-ReLU blocks per stage.
        stem: Filters of a stride-1 conv before the first stage (0 = none).
        pool: ``max`` (GlobalMaxPooling2D) or ``avg``.
        dropout: Dropout before the classifier.
        hidden: Units of an optional Dense+ReLU before the "logits" Dense (0: none).
        residual: Make the extra blocks identity-residual.
        name: The model's name.
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
        x = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj_conv")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(x)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def gmp_resnet(
    num_classes: int,
    channels: int,
    widths: Sequence[int] = (16, 32, 64),
    blocks: Sequence[int] = (1, 1, 1),
    stem: int = 0,
    pool: str = "max",
    dropout: float = 0.0,
    hidden: int = 0,
    name: str = "gmp_resnet",
):
    """Generic residual GMP CNN: stride-1 stem conv -> stages of basic blocks -> head.

    Stage 1 keeps the input resolution; every later stage starts with a stride-2 block, so the
    total stride is 2**(len(widths)-1).

    Args:
        num_classes: Classes of the "logits" Dense.
        channels: Input channels (1 grey, 3 RGB).
        widths: Filters per stage.
        blocks: Basic blocks (two 3×3 convs each) per stage.
        stem: Stem filters (0 = widths[0]).
        pool: ``max`` or ``avg``, as gmp_cnn.
        dropout: Dropout before the classifier.
        hidden: Units of an optional Dense+ReLU before the classifier (0: none).
        name: The model's name.
    """
    widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
    if not widths or len(blocks) != len(widths) or min(blocks) < 1:
        raise CnnedgeError(f"widths {widths} and blocks {blocks} must be non-empty, same length, blocks >= 1")
    _check_head(pool, dropout)
    x_in, x = _input(channels)
    x = _conv_bn_relu(x, int(stem) or widths[0], 1, "stem")
    for i, (w, n) in enumerate(zip(widths, blocks), start=1):
        for j in range(1, n + 1):
            x = _basic_block(x, w, 2 if i > 1 and j == 1 else 1, f"s{i}b{j}")
    return keras.Model(x_in, _head(x, num_classes, pool, dropout, hidden), name=name)


# Params are for 10 classes: "1-ch" = 28×28×1, "3-ch" = 32×32×3 (params do not depend on H×W).
@register_model
def gmp_xs(num_classes, channels, pool="max", dropout=0.0, hidden=0, width=1.0):
    """Tiny 3-stage GMP CNN, widths 16-32-64, no extra convs: 24k params, stride 8.

    1-ch: 24,283 params, 0.55M MACs at 28×28. 3-ch: 24,573 params, 0.70M MACs at 32×32.
    For quick experiments and micro-controllers; min input 8×8.
    """
    return gmp_cnn(
        num_classes,
        channels,
        scaled((16, 32, 64), width),
        (0, 0, 0),
        scaled(0, width),
        pool,
        dropout,
        hidden,
        name="gmp_xs",
    )


@register_model
def gmp_s(num_classes, channels, pool="max", dropout=0.1, hidden=0, width=1.0):
    """Fashion-MNIST flagship: stem 16 + widths 32-48-96, one extra conv in stages 1-2 (<100k).

    1-ch: 92,059 params, 5.18M MACs at 28×28. 3-ch: 92,349 params, 6.86M MACs at 32×32.
    7 conv layers, total stride 8 (min input 8×8); meant to reach ~93% on Fashion-MNIST.
    """
    return gmp_cnn(
        num_classes,
        channels,
        scaled((32, 48, 96), width),
        (1, 1, 0),
        scaled(16, width),
        pool,
        dropout,
        hidden,
        name="gmp_s",
    )


@register_model
def gmp_32_64_128(num_classes, channels, pool="max", dropout=0.0, hidden=0, width=1.0):
    """The plain 3-stage strided GMP CNN, widths 32-64-128, no stem, no extras (<100k).

    1-ch: 94,635 params, 2.14M MACs at 28×28. 3-ch: 95,213 params, 2.58M MACs at 32×32.
    Three conv layers only, stride 8 (min input 8×8): the cheapest ~95k-param member.
    """
    return gmp_cnn(
        num_classes,
        channels,
        scaled((32, 64, 128), width),
        (0, 0, 0),
        scaled(0, width),
        pool,
        dropout,
        hidden,
        name="gmp_32_64_128",
    )


@register_model
def gmp_4stage(num_classes, channels, pool="max", dropout=0.0, hidden=0, width=1.0):
    """4-stage GMP CNN, widths 16-32-64-128, for larger images (56×56 and up; <100k).

    1-ch: 99,163 params, 0.85M MACs at 28×28. 3-ch: 99,453 params, 1.00M MACs at 32×32.
    Total stride 16 (min input 16×16).
    """
    return gmp_cnn(
        num_classes,
        channels,
        scaled((16, 32, 64, 128), width),
        (0, 0, 0, 0),
        scaled(0, width),
        pool,
        dropout,
        hidden,
        name="gmp_4stage",
    )


@register_model
def gmp_res8(num_classes, channels, pool="max", dropout=0.1, hidden=0, width=1.0):
    """CIFAR-10 residual member (ResNet-8-like budget): stem 16, widths 32-48-88, residual extras.

    Stage 1 has two identity-residual 3×3 blocks, stage 2 one, stage 3 none (<100k).
    1-ch: 97,835 params, 6.93M MACs at 28×28. 3-ch: 98,125 params, 9.16M MACs at 32×32.
    Total stride 8 (min input 8×8).
    """
    return gmp_cnn(
        num_classes,
        channels,
        scaled((32, 48, 88), width),
        (2, 1, 0),
        scaled(16, width),
        pool,
        dropout,
        hidden,
        residual=True,
        name="gmp_res8",
    )


@register_model
def gmp_res10(num_classes, channels, pool="max", dropout=0.1, hidden=0, width=1.0):
    """CIFAR-10 ResNet-10-like member: stem 16, basic blocks (2,1,1) at widths 16-32-72.

    Two residual blocks at full resolution, then one stride-2 block per stage (<100k).
    1-ch: 95,691 params, 13.56M MACs at 28×28. 3-ch: 95,981 params, 18.01M MACs at 32×32.
    Total stride 4 (min input 4×4).
    """
    return gmp_resnet(
        num_classes,
        channels,
        scaled((16, 32, 72), width),
        (2, 1, 1),
        scaled(16, width),
        pool,
        dropout,
        hidden,
        name="gmp_res10",
    )


@register_model
def gmp_res12(num_classes, channels, pool="max", dropout=0.0, hidden=0, width=1.0):
    """CIFAR-10 ResNet-12-like member: stem 16, basic blocks (2,2,1) at widths 16-32-60.

    Two residual blocks at full resolution and two at half, then one stride-2 block (<100k).
    1-ch: 96,019 params, 16.29M MACs at 28×28. 3-ch: 96,309 params, 21.57M MACs at 32×32.
    Total stride 4 (min input 4×4).
    """
    return gmp_resnet(
        num_classes,
        channels,
        scaled((16, 32, 60), width),
        (2, 2, 1),
        scaled(16, width),
        pool,
        dropout,
        hidden,
        name="gmp_res12",
    )
