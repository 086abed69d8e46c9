"""Fixed-size baselines (Flatten heads) the GMP family is compared with."""

from __future__ import annotations

from cnnedge.backend import keras
from cnnedge.models._registry import register_model
from cnnedge.models.gmp import _input


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
