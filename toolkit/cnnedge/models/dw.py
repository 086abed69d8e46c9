"""Depthwise-separable members of the GMP family: cheap, wide depthwise residual blocks.

Blocks are depthwise k×k + pointwise 1×1 convolutions (BN after each, ReLU) with identity
residual adds -- MobileNet / ConvMixer style -- so width and depth cost far fewer parameters than
the 3×3 convs of :mod:`cnnedge.models.gmp`. Optionally the first stages (large, narrow feature
maps, where dense 3×3 convs train faster on CPUs) are gmp_resnet basic blocks. Every downsampling
is a strided conv (depthwise 3×3 + pointwise, or a stride-2 basic block), never pooling. Only
Conv2D / DepthwiseConv2D / BatchNormalization / ReLU / Add layers (plus the head), so tfmot QAT
and int8 export work unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnedge.backend import keras
from cnnedge.errors import CnnedgeError
from cnnedge.models._registry import register_model
from cnnedge.models.gmp import _basic_block, _check_head, _head, _input, scaled


def _bn(x, name: str):
    return keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)


def _pw(x, filters: int, name: str, relu: bool = True):
    """1×1 conv-BN[-ReLU]."""
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_conv")(x)
    x = _bn(x, name)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _dw(x, kernel: int, stride: int, name: str, relu: bool = True):
    """Depthwise k×k conv-BN[-ReLU]."""
    x = keras.layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = _bn(x, name)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _dw_block(x, kernel: int, expand: int, name: str):
    """Residual block on a C-channel stream.

    expand 1: depthwise k×k-BN-ReLU -> pointwise C->C -BN, + x, ReLU.
    expand e > 1 (inverted bottleneck): pointwise C->eC -BN-ReLU -> depthwise k×k-BN-ReLU ->
    pointwise eC->C -BN, + x, ReLU.
    """
    c = int(x.shape[-1])
    y = x
    if expand > 1:
        y = _pw(y, c * expand, f"{name}_exp")
    y = _dw(y, kernel, 1, f"{name}_dw")
    y = _pw(y, c, f"{name}_pw", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def gmp_dwnet(
    num_classes: int,
    channels: int,
    widths: Sequence[int] = (64, 128),
    blocks: Sequence[int] = (3, 3),
    stem: int = 0,
    kernel: int = 3,
    expand: int = 1,
    conv_stages: int = 0,
    pool: str = "max",
    dropout: float = 0.0,
    hidden: int = 0,
    name: str = "gmp_dwnet",
):
    """Generic depthwise GMP CNN: 3×3 stem conv -> stages of depthwise residual blocks -> head.

    Stage 1 keeps the input resolution; every later stage starts with a stride-2 depthwise 3×3
    conv-BN and a pointwise conv-BN-ReLU to its width, so the total stride is
    2**(len(widths)-1).

    Args:
        num_classes: Classes of the "logits" Dense.
        channels: Input channels (1 grey, 3 RGB).
        widths: Channels per stage.
        blocks: Residual blocks per stage (0 allowed).
        stem: Stem filters (0 = widths[0], else a pointwise conv widens it to widths[0]).
        kernel: Depthwise kernel size.
        expand: Inverted-bottleneck expansion (1 = plain depthwise-pointwise block).
        conv_stages: The first stages use gmp_resnet's 3×3 basic blocks instead (dense 3×3
            convs are cheaper to train on CPUs where the feature maps are large and narrow; a
            later one starts with a stride-2 basic block).
        pool: ``max``, ``avg`` or ``concat`` (max and average side by side).
        dropout: Dropout before the classifier.
        hidden: Units of an optional Dense+ReLU before the classifier (0: none).
        name: The model's name.
    """
    widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
    if not widths or len(blocks) != len(widths) or min(blocks) < 0:
        raise CnnedgeError(f"widths {widths} and blocks {blocks} must be non-empty, same length, blocks >= 0")
    if kernel < 1 or expand < 1 or not 0 <= conv_stages <= len(widths):
        raise CnnedgeError(
            f"kernel, expand must be >= 1 and conv_stages in 0..{len(widths)}, "
            f"got {kernel}, {expand}, {conv_stages}"
        )
    if pool not in ("max", "avg", "concat"):
        raise CnnedgeError(f"pool must be 'max', 'avg' or 'concat', got {pool!r}")
    _check_head("max" if pool == "concat" else pool, dropout)
    x_in, x = _input(channels)
    stem = int(stem) or widths[0]
    x = keras.layers.Conv2D(stem, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.ReLU(name="stem_relu")(_bn(x, "stem"))
    if stem != widths[0] and not conv_stages:
        x = _pw(x, widths[0], "s1_proj")
    for i, (w, n) in enumerate(zip(widths, blocks), start=1):
        if i <= conv_stages:
            for j in range(1, max(n, 1) + 1):
                x = _basic_block(x, w, 2 if i > 1 and j == 1 else 1, f"s{i}b{j}")
            continue
        if i > 1:  # the downsampling: strided depthwise 3×3, then pointwise to the new width
            x = _dw(x, 3, 2, f"s{i}_down_dw", relu=False)
            x = _pw(x, w, f"s{i}_down_pw")
        for j in range(1, n + 1):
            x = _dw_block(x, kernel, expand, f"s{i}b{j}")
    return keras.Model(x_in, _head(x, num_classes, pool, dropout, hidden), name=name)


# Params are for 10 classes: "1-ch" = 28×28×1, "3-ch" = 32×32×3 (params do not depend on H×W).
@register_model
def gmp_dw_a(num_classes, channels, pool="max", dropout=0.1, hidden=0, width=1.0, kernel=3):
    """CIFAR-10 hybrid: 3×3 basic blocks ×2 at 16 (full res), depthwise blocks 96×3 then 128×2.

    1-ch: 96,811 params, 15.96M MACs at 28×28. 3-ch: 97,101 params, 21.14M MACs at 32×32.
    Two downsamplings (strided depthwise + pointwise), total stride 4 (min input 4×4).
    """
    return gmp_dwnet(
        num_classes,
        channels,
        scaled((16, 96, 128), width),
        (2, 3, 2),
        scaled(16, width),
        kernel,
        1,
        1,
        pool,
        dropout,
        hidden,
        name="gmp_dw_a",
    )


@register_model
def gmp_dw_b(num_classes, channels, pool="max", dropout=0.1, hidden=0, width=1.0, kernel=3):
    """CIFAR-10 hybrid, cheap to train: gmp_res10-like 3×3 stages 16-32, depthwise 120×4 at 1/4.

    1-ch: 96,107 params, 13.39M MACs at 28×28. 3-ch: 96,397 params, 17.78M MACs at 32×32.
    Basic blocks (2, 1) at 16-32, then four depthwise blocks at width 120; total stride 4.
    """
    return gmp_dwnet(
        num_classes,
        channels,
        scaled((16, 32, 120), width),
        (2, 1, 4),
        scaled(16, width),
        kernel,
        1,
        2,
        pool,
        dropout,
        hidden,
        name="gmp_dw_b",
    )


@register_model
def gmp_dw_c(num_classes, channels, pool="max", dropout=0.1, hidden=0, width=1.0, kernel=3):
    """All-depthwise CIFAR-10 member: stem 32, depthwise residual blocks 32×2, 64×3, 128×3.

    1-ch: 88,331 params, 8.50M MACs at 28×28. 3-ch: 88,909 params, 11.69M MACs at 32×32.
    Every block is depthwise 3×3 + pointwise 1×1; total stride 4 (min input 4×4).
    """
    return gmp_dwnet(
        num_classes,
        channels,
        scaled((32, 64, 128), width),
        (2, 3, 3),
        scaled(32, width),
        kernel,
        1,
        0,
        pool,
        dropout,
        hidden,
        name="gmp_dw_c",
    )
