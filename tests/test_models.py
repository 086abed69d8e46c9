"""Model family: every registered model builds, is tf_keras, passes tfmot QAT, sizes, registry."""

import re

import numpy as np
import pytest

from cnnedge import models
from cnnedge.backend import get_tfmot, keras, tf
from cnnedge.errors import CnnedgeError

ALL = models.list_models()
FAMILY = [n for n in ALL if not n.startswith("baseline")]
BASELINES = [n for n in ALL if n.startswith("baseline")]


def pixels(*shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)


def test_registry_contents():
    assert ALL == sorted(ALL) and FAMILY
    for name in FAMILY:  # every family member is a GMP model that takes any H×W
        m = models.create_model(name, num_classes=3, channels=1)
        assert m.input_shape[1:3] == (None, None), name
        assert any(isinstance(la, keras.layers.GlobalMaxPooling2D) for la in m.layers), name
    assert set(BASELINES) == {"baseline_flatten", "baseline_pool"}
    assert "gmp_s" in ALL  # the recipe default
    for name in ALL:
        assert models.model_help(name)


@pytest.mark.parametrize("name", ALL)
def test_builds_is_tf_keras_and_quantizes(name):
    import tf_keras

    quantize_model = get_tfmot().quantization.keras.quantize_model
    for ch in (1, 3):
        m = models.create_model(name, num_classes=7, channels=ch)
        assert isinstance(m, tf_keras.Model)
        assert type(m).__module__.startswith("tf_keras")  # not a Keras-3 object
        assert m.input.dtype == tf.float32 and m.layers[-1].name == "logits"
        assert m.layers[-1].get_config()["activation"] == "linear"  # logits, no softmax
        assert m.output_shape == (None, 7)
        assert not any("rescale" in w.name for w in m.trainable_weights)  # frozen 1/255
        q = quantize_model(m)
        x = pixels(2, 28, 28, ch)
        assert q(x, training=False).shape == (2, 7)
        assert m(x).shape == (2, 7)


@pytest.mark.parametrize("name", FAMILY)
def test_family_takes_any_size(name):
    m = models.create_model(name, num_classes=5, channels=1)
    assert m.input_shape == (None, None, None, 1)
    for h, w in ((28, 28), (32, 32), (56, 56), (40, 24)):
        models.check_input_size(m, (h, w, 1))
        assert m(pixels(2, h, w, 1)).shape == (2, 5)
    m3 = models.create_model(name, num_classes=5, channels=3)
    models.check_input_size(m3, (1, 40, 24, 3))
    assert m3(pixels(1, 40, 24, 3)).shape == (1, 5)


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_are_fixed_size(name):
    m = models.create_model(name, num_classes=10, channels=1)
    assert m.input_shape == (None, 28, 28, 1)
    models.check_input_size(m, (28, 28, 1))
    assert m(pixels(3, 28, 28, 1)).shape == (3, 10)
    assert models.min_input_size(m) == 28
    for bad in ((32, 32, 1), (56, 56, 1), (40, 24, 1)):
        with pytest.raises(CnnedgeError, match="fixed input size 28×28"):
            models.check_input_size(m, bad)
    with pytest.raises(CnnedgeError, match="fixed input size"):
        models.check_input_size(m, (1, 32, 32, 1))
    m32 = models.create_model(name, num_classes=10, channels=3, input_size=(32, 32))
    models.check_input_size(m32, (1, 32, 32, 3))
    with pytest.raises(CnnedgeError, match="1 channel.*expects 3"):
        models.check_input_size(m32, (32, 32, 1))


def test_too_small_input_is_a_clear_error():
    m = models.create_model("gmp_4stage", num_classes=10, channels=1)
    assert models.min_input_size(m) == 16 and models.total_stride(m) == 16
    msg = (
        "input 2×2 is smaller than this model's minimum 16×16 (total stride 16); "
        "resize images to at least 16×16"
    )
    with pytest.raises(CnnedgeError, match=re.escape(msg)):
        models.check_input_size(m, (2, 2, 1))
    with pytest.raises(CnnedgeError, match=re.escape(msg)):
        models.check_input_size(m, (1, 2, 2, 1))
    with pytest.raises(CnnedgeError, match="input 15×40 is smaller"):
        models.check_input_size(m, (15, 40))
    models.check_input_size(m, (1, 16, 16, 1))
    assert m(pixels(1, 16, 16, 1)).shape == (1, 10)


def test_min_input_size_values():
    assert {n: models.min_input_size(models.create_model(n, num_classes=3, channels=1)) for n in FAMILY} == {
        "gmp_xs": 8,
        "gmp_s": 8,
        "gmp_32_64_128": 8,
        "gmp_4stage": 16,
        "gmp_res8": 8,
        "gmp_res10": 4,
        "gmp_res12": 4,
        "gmp_dw_a": 4,
        "gmp_dw_b": 4,
        "gmp_dw_c": 4,
    }
    # 'valid' layers: conv3 -> pool2 -> conv3 needs 8 (8→6→3→1); at 7 (7→5→2→?) CPU TF
    # silently returns a bogus 2×2 map instead of failing -- why the explicit check exists.
    x_in = keras.Input((None, None, 1))
    y = keras.layers.Conv2D(2, 3)(x_in)
    y = keras.layers.MaxPooling2D(2)(y)
    m = keras.Model(x_in, keras.layers.Conv2D(2, 3)(y))
    assert models.min_input_size(m) == 8
    assert m(pixels(1, 8, 8, 1)).shape[1:3] == (1, 1)
    with pytest.raises(CnnedgeError, match="minimum 8×8"):
        models.check_input_size(m, (7, 9))


def test_params_budgets():
    for name in FAMILY:
        for ch in (1, 3):
            m = models.create_model(name, num_classes=10, channels=ch)
            assert models.count_params(m) <= 100_000, (name, ch)
    flat = models.create_model("baseline_flatten", num_classes=10, channels=1)
    assert models.count_params(flat) == 360_459  # the classic "360k" (+1 frozen rescale weight)


def test_docstring_numbers_match():
    for name in ALL:
        from cnnedge.models._registry import _REGISTRY

        doc = _REGISTRY[name].__doc__.replace("\n    ", " ")
        for ch, hw in ((1, 28), (3, 32)):
            m = models.create_model(
                name, num_classes=10, channels=ch, **({"input_size": (hw, hw)} if name in BASELINES else {})
            )
            s = models.summary_dict(m, (hw, hw, ch))
            assert f"{s['params']:,} params, {s['macs'] / 1e6:.2f}M MACs" in doc, (name, ch)


def test_count_macs_by_hand():
    x_in = keras.Input((None, None, 2))
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x_in)  # 4·4·9·2·4 = 1152
    y = keras.layers.DepthwiseConv2D(3, padding="same")(y)  # 4·4·9·4 = 576
    y = keras.layers.Conv2D(6, 1, groups=2)(y)  # 4·4·1·2·6 = 192
    y = keras.layers.GlobalMaxPooling2D()(y)
    y = keras.layers.Dense(3)(y)  # 6·3 = 18
    m = keras.Model(x_in, y)
    assert models.count_macs(m, (8, 8, 2)) == 1152 + 576 + 192 + 18
    # gmp_xs at 28×28: rescale 784 + 14²·9·16 + 7²·9·16·32 + 4²·9·32·64 + 64·10
    xs = models.create_model("gmp_xs", num_classes=10, channels=1)
    want = 784 + 196 * 9 * 16 + 49 * 9 * 16 * 32 + 16 * 9 * 32 * 64 + 640
    assert models.count_macs(xs, (28, 28, 1)) == want
    q = get_tfmot().quantization.keras.quantize_model(xs)
    assert models.summary_dict(q, (28, 28, 1)) == {
        "params": models.count_params(q),
        "macs": want,
        "min_input_size": 8,
    }
    flat = models.create_model("baseline_flatten", num_classes=10, channels=1)
    assert models.count_macs(flat) == models.count_macs(flat, (28, 28, 1))


def test_registry_errors(monkeypatch):
    with pytest.raises(
        CnnedgeError,
        match=r"unknown model 'gmpnet_s'; did you mean 'gmp_s'\? "
        r"available: .*gmp_xs",
    ):
        models.create_model("gmpnet_s", num_classes=10, channels=1)
    with pytest.raises(CnnedgeError, match="no option.*widht.*valid: pool, dropout, hidden"):
        models.create_model("gmp_s", num_classes=10, channels=1, widht=3)
    from cnnedge.models import _registry

    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))

    def gmp_s(num_classes, channels):
        """A clash."""

    with pytest.raises(CnnedgeError, match="already registered"):
        models.register_model(gmp_s)

    @models.register_model
    def my_net(num_classes, channels, width=8):
        """My net: one conv."""
        return models.gmp_cnn(num_classes, channels, (width,), (0,))

    assert "my_net" in models.list_models() and models.model_help("my_net") == "My net: one conv."
    assert models.count_params(models.create_model("my_net", num_classes=2, channels=1, width=4)) > 0


def test_gmp_resnet_structure():
    m = models.gmp_resnet(10, 3, widths=(8, 16), blocks=(2, 1), stem=4)
    names = [layer.name for layer in m.layers]
    # stage 1 keeps the resolution (identity shortcuts, except stem 4 -> 8 needs a projection);
    # stage 2 starts with a stride-2 block whose shortcut is a strided 1×1 conv, no pooling
    assert "s1b1_proj_conv" in names and "s1b2_proj_conv" not in names
    assert m.get_layer("s2b1_proj_conv").strides == (2, 2)
    assert m.get_layer("s2b1a_conv").strides == (2, 2)
    assert not any(
        "pooling2d" in type(layer).__name__.lower() and "global" not in layer.name for layer in m.layers
    )
    assert models.total_stride(m) == 2 and models.min_input_size(m) == 2
    assert m(pixels(1, 9, 5, 3)).shape == (1, 10)  # odd sizes: 'same' padding rounds up
    # params by hand: stem 27·4, s1b1 (9·4·8 + 9·8·8 + 4·8), s1b2 2·9·8·8, s2b1 (9·8·16 + 9·16·16
    # + 8·16), BN 4 per channel, dense 16·10+10, rescale 3
    convs = 27 * 4 + (288 + 576 + 32) + 2 * 576 + (1152 + 2304 + 128)
    bn = 4 * (4 + 8 + 8 + 8 + 8 + 8 + 16 + 16 + 16)
    assert models.count_params(m) == convs + bn + 170 + 3
    for bad in (
        dict(widths=(8,), blocks=(0,)),
        dict(widths=(8, 16), blocks=(1,)),
        dict(pool="sum"),
        dict(dropout=1.0),
    ):
        with pytest.raises(CnnedgeError):
            models.gmp_resnet(10, 3, **bad)


def test_options_change_the_head():
    m = models.create_model("gmp_s", num_classes=4, channels=1, pool="avg", dropout=0.3, hidden=32)
    names = [layer.name for layer in m.layers]
    assert "global_avg_pool" in names and "hidden_relu" in names and "dropout" in names
    with pytest.raises(CnnedgeError, match="pool must be"):
        models.create_model("gmp_s", num_classes=4, channels=1, pool="min")


def test_save_and_load(tmp_path):
    m = models.create_model("gmp_xs", num_classes=3, channels=1)
    q = get_tfmot().quantization.keras.quantize_model(m)
    x = pixels(2, 28, 28, 1)
    m.save(tmp_path / "f.keras")
    q.save(tmp_path / "q.h5")
    np.testing.assert_allclose(models.load_model(tmp_path / "f.keras")(x), m(x), atol=1e-5)
    np.testing.assert_allclose(models.load_model(tmp_path / "q.h5")(x), q(x), atol=1e-5)
    with pytest.raises(CnnedgeError, match="no model file"):
        models.load_model(tmp_path / "missing.keras")


def test_qat_to_int8_tflite_end_to_end():
    from ai_edge_litert.interpreter import Interpreter

    m = models.create_model("gmp_xs", num_classes=4, channels=1)
    q = get_tfmot().quantization.keras.quantize_model(m)
    x = pixels(8, 28, 28, 1)
    for _ in range(3):  # let the fake-quant ranges see 0..255 data
        q(x, training=True)
    conv = tf.lite.TFLiteConverter.from_keras_model(q)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    it = Interpreter(model_content=conv.convert())
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert list(inp["shape_signature"]) == [-1, -1, -1, 1]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    scale, zero = inp["quantization"]
    assert abs(scale - 1.0) < 1e-6 and zero == -128  # int8 = pixel - 128: lossless input
    it.resize_tensor_input(inp["index"], [1, 28, 28, 1])
    it.allocate_tensors()
    it.set_tensor(inp["index"], (x[:1] - 128).astype(np.int8))
    it.invoke()
    oscale, ozero = out["quantization"]
    got = (it.get_tensor(out["index"]).astype(np.float32) - ozero) * oscale
    assert got.shape == (1, 4)
    np.testing.assert_allclose(got, q(x[:1]).numpy(), atol=3 * oscale)
