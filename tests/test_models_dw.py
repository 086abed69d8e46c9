"""The depthwise GMP members (cnnedge.models.dw): budgets, any input size, heads, QAT."""

import numpy as np
import pytest

from cnnedge import models
from cnnedge.backend import get_tfmot, keras
from cnnedge.errors import CnnedgeError
from cnnedge.models.dw import gmp_dwnet

DW = [n for n in models.list_models() if n.startswith("gmp_dw_")]


def pixels(*shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)


def test_members_registered():
    assert DW == ["gmp_dw_a", "gmp_dw_b", "gmp_dw_c"]


@pytest.mark.parametrize("name", DW)
def test_budgets_and_sizes(name):
    m = models.create_model(name, num_classes=10, channels=3)
    assert models.count_params(m) <= 100_000
    assert models.count_macs(m, (32, 32, 3)) <= 30_000_000
    assert m.layers[-1].name == "logits" and m.layers[1].name == "rescale"
    assert any(isinstance(la, keras.layers.GlobalMaxPooling2D) for la in m.layers)
    assert not any(
        "pooling2d" in type(la).__name__.lower() and "global" not in la.name for la in m.layers
    )  # downsampling by strided convs only
    allowed = {
        "InputLayer",
        "Conv2D",
        "DepthwiseConv2D",
        "BatchNormalization",
        "ReLU",
        "Add",
        "GlobalMaxPooling2D",
        "Dropout",
        "Dense",
    }
    assert {type(la).__name__ for la in m.layers} <= allowed
    for h, w in ((32, 32), (40, 24)):
        assert m(pixels(2, h, w, 3)).shape == (2, 10)


def test_heads_and_quantize():
    quantize_model = get_tfmot().quantization.keras.quantize_model
    for pool in ("avg", "concat"):
        m = models.create_model("gmp_dw_b", num_classes=4, channels=3, pool=pool)
        assert f"global_{pool}_pool" in [la.name for la in m.layers]
        assert m(pixels(1, 32, 32, 3)).shape == (1, 4)
    m = models.create_model("gmp_dw_c", num_classes=4, channels=3, pool="concat")
    assert m.get_layer("logits").input_shape == (None, 256)  # max and average of 128 channels
    q = quantize_model(m)
    assert q(pixels(2, 32, 32, 3), training=False).shape == (2, 4)


def test_builder_options_and_errors():
    m = gmp_dwnet(10, 3, widths=(8, 16), blocks=(1, 1), stem=4, expand=2, kernel=5)
    names = [la.name for la in m.layers]
    assert "s1_proj_conv" in names and "s2b1_exp_conv" in names
    assert m.get_layer("s2_down_dw_conv").strides == (2, 2)
    assert m.get_layer("s2b1_dw_conv").kernel_size == (5, 5)
    assert models.total_stride(m) == 2
    for bad in (
        dict(widths=(8,), blocks=(1, 1)),
        dict(blocks=(-1, 1)),
        dict(expand=0),
        dict(conv_stages=3),
        dict(pool="sum"),
        dict(dropout=1.0),
    ):
        with pytest.raises(CnnedgeError):
            gmp_dwnet(10, 3, **bad)
