"""Quantization transforms (tfmot) and the calibration data for post-training quantization.

    qat = apply_qat(model)                         # tfmot.quantization.keras.quantize_model
    calibrate_ranges(qat, model, images)           # activation ranges from the float model
    images = representative_images(src, 500)      # class-balanced uint8 images for PTQ/int8

The QAT fine-tune that uses them is a training phase (:func:`cnnedge.train.fine_tune_qat`).
QAT models are saved as HDF5 (``qat.h5``): tfmot 0.8.1 cannot reload its wrappers from the
``.keras`` format ("quantize_layer expected 5 variables"); :func:`cnnedge.models.load_model`
reloads them under ``quantize_scope``. The QAT input quantizer is pinned to [0, 255] so that the
int8 model's input has scale 1 and zero point -128: a uint8 pixel p becomes p - 128, exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.files import atomic_path, check_writable

PIXEL_MIN, PIXEL_MAX = 0.0, 255.0


def apply_qat(model):
    """Wrap a float tf_keras model for QAT; a clear error for layers tfmot cannot quantize."""
    from cnnedge.backend import get_tfmot, keras

    if not isinstance(model, keras.Model):
        raise CnnedgeError(
            "QAT needs a tf_keras (Keras 2) model; Keras 3 models are not "
            "supported by tfmot -- build it with cnnedge.models"
        )
    tfmot = get_tfmot()
    try:
        qat = tfmot.quantization.keras.quantize_model(model)
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise CnnedgeError(
            f"tfmot cannot quantize model '{model.name}': {first} -- use "
            f"Conv2D/DepthwiseConv2D/BatchNormalization/ReLU/Dense layers, or "
            f"export int8 with post-training quantization (no QAT)"
        ) from e
    pin_input_range(qat)
    return qat


def pin_input_range(qat_model, lo: float = PIXEL_MIN, hi: float = PIXEL_MAX) -> None:
    """Set the QAT input quantizer's range to the pixel range (scale 1, zero point -128)."""
    found = False
    for layer in qat_model.layers:
        if type(layer).__name__ != "QuantizeLayer":
            continue
        for v in layer.weights:
            if v.name.split("/")[-1].startswith("input_min") or v.name.endswith("min:0"):
                v.assign(lo)
                found = True
            elif v.name.split("/")[-1].startswith("input_max") or v.name.endswith("max:0"):
                v.assign(hi)
    if not found:
        raise CnnedgeError("QAT model has no input quantizer to pin (unexpected tfmot graph)")


def calibrate_ranges(qat_model, float_model, images, batch_size: int = 128) -> dict:
    """Start every activation quantizer at the float model's observed range on ``images``.

    tfmot starts activation ranges at [-6, 6] and moves them with an EMA (decay 0.999): after
    the short QAT phase ReLU outputs would still be quantized over [-5.7, 6] and the rescaled
    input ([0, 1]) over about 22 levels. Calibrating first gives QAT sensible ranges to refine.
    Returns {layer name: (min, max)} as assigned.
    """
    from cnnedge.backend import keras, tf

    targets = {}  # float layer name -> (min var, max var)
    for layer in qat_model.layers:
        if type(layer).__name__ != "QuantizeWrapperV2":
            continue
        lo = [
            v
            for v in layer.weights
            if v.name.split("/")[-1].split(":")[0] in ("post_activation_min", "output_min")
        ]
        hi = [
            v
            for v in layer.weights
            if v.name.split("/")[-1].split(":")[0] in ("post_activation_max", "output_max")
        ]
        if lo and hi:
            targets[layer.layer.name] = (lo[0], hi[0])
    if not targets:
        return {}
    names = [n for n in targets if n in {layer.name for layer in float_model.layers}]
    probe = keras.Model(float_model.inputs, [float_model.get_layer(n).output for n in names])
    lows = {n: np.inf for n in names}
    highs = {n: -np.inf for n in names}
    images = np.asarray(images)
    for i in range(0, len(images), batch_size):
        outs = probe(tf.cast(images[i : i + batch_size], tf.float32), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for n, o in zip(names, outs):
            o = o.numpy()
            lows[n] = min(lows[n], float(o.min()))
            highs[n] = max(highs[n], float(o.max()))
    assigned = {}
    for n in names:
        lo, hi = min(0.0, lows[n]), max(0.0, highs[n])  # the range must contain 0
        if hi - lo < 1e-6:
            continue
        targets[n][0].assign(lo)
        targets[n][1].assign(hi)
        assigned[n] = (lo, hi)
    return assigned


def input_range(qat_model):
    """(min, max) of the QAT input quantizer."""
    for layer in qat_model.layers:
        if type(layer).__name__ == "QuantizeLayer":
            vals = {v.name.split("/")[-1].split(":")[0]: float(v.numpy()) for v in layer.weights}
            lo = next(v for k, v in vals.items() if k.endswith("min"))
            hi = next(v for k, v in vals.items() if k.endswith("max"))
            return lo, hi
    raise CnnedgeError("model has no QuantizeLayer (is it a QAT model?)")


def save_qat(model, path) -> Path:
    """Save a QAT model as .h5 atomically."""
    path = Path(path)
    if path.suffix != ".h5":
        raise CnnedgeError(f"QAT models are saved as .h5 (tfmot cannot reload .keras): {path}")
    import warnings

    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "HDF5 is legacy": deliberate, see above
        model.save(tmp)
    return path


def check_outputs(folder, paths) -> None:
    """Before the fine-tune: the files it replaces at its end (``paths``, in ``folder``) must
    be replaceable, so that a failure there never comes after qat.h5 was replaced."""
    check_writable(folder, "QAT model")
    for path in map(Path, paths):
        if path.is_dir():
            raise CnnedgeError(f"{path} is a folder where the QAT phase writes a file; move it away first")


def load_finite(staged, target, rows, lr):
    """The fine-tuned model at ``staged`` loaded back, before it may replace ``target``: a
    fine-tune that diverged (no epoch with a finite loss, or NaN/inf weights) is an error and
    ``target`` stays as it was. ``rows``: the epochs' logs; ``lr``: named in the error."""
    from cnnedge import models

    target = Path(target)
    kept = f"{target} was kept as it was" if target.is_file() else f"{target} was not written"
    loss = rows[-1].get("loss") if rows else None
    if not Path(staged).is_file():
        raise CnnedgeError(
            f"QAT fine-tune diverged (loss {loss} with learning rate {lr:g}); "
            f"{kept}: try a lower learning rate (--lr)"
        )
    model = models.load_model(staged)
    bad = [w.name for w in model.weights if not np.isfinite(w.numpy()).all()]
    if bad:
        raise CnnedgeError(
            f"QAT fine-tune left non-finite weights ({bad[0]}, learning rate "
            f"{lr:g}); {kept}: try a lower learning rate (--lr)"
        )
    return model


# ----------------------------------------------------------------------------- calibration
def representative_images(src, n: int = 500, *, seed: int = 0, split: str = "train") -> np.ndarray:
    """``n`` uint8 images from ``split``, as class-balanced as the data allows (shuffled)."""
    k = len(src.info.class_names)
    if n < 1:
        raise CnnedgeError(f"calibration needs at least 1 image, got {n}")
    per_class = -(-n // k)
    buckets = {c: [] for c in range(k)}
    spare = []  # fills the quota of classes the split has too few images of
    ds = src.pipeline(split, batch_size=256, shuffle=True, seed=seed)
    with src.guard(split):
        for x, y in ds:
            for img, label in zip(x.numpy(), y.numpy()):
                if len(buckets[int(label)]) < per_class:
                    buckets[int(label)].append(img)
                elif len(spare) < n:
                    spare.append(img)
            if all(len(b) >= per_class for b in buckets.values()):
                break
    images = [img for c in range(k) for img in buckets[c]]
    images += spare[: max(0, n - len(images))]
    if not images:
        raise CnnedgeError(f"no calibration images in split '{split}' of {src.info.name}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))[:n]
    shapes = {images[i].shape for i in order}
    if len(shapes) > 1:  # variable-size data: calibrate per image, keep a list
        return [images[i] for i in order]
    return np.stack([images[i] for i in order])
