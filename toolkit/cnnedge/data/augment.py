"""Batch-level, vectorized, seeded augmentation for ``Source.pipeline(augment=...)``.

Every helper returns a callable ``fn(images, labels, seed=None) -> (images, labels)`` working on
a whole uint8 batch ``[B, H, W, C]`` (dtype and shape are kept). The pipeline passes ``seed``, a
per-batch int64 drawn from ``tf.data.Dataset.random(seed)``: results are reproducible for a given
pipeline seed yet differ from epoch to epoch. Called without ``seed`` they use a random one.
"""

from __future__ import annotations

from cnnedge.backend import tf
from cnnedge.errors import CnnedgeError
from cnnedge.utils import unknown

VALID = (
    "flip",
    "crop[:PAD] (= pad_crop:PAD, cropPAD; default 4)",
    "translate[:PX] (default 2)",
    "jitter[:PCT] (brightness/contrast/saturation ±PCT %, default 20)",
)


def _seed_pair(seed, salt: int):
    if seed is None:
        seed = tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64)
    return tf.stack([tf.cast(seed, tf.int64), tf.constant(salt, tf.int64)])


def _augmenter(fn, name: str, salt: int):
    def call(images, labels, seed=None):
        return fn(images, _seed_pair(seed, salt)), labels

    call.cnnedge_seeded = True
    call.__name__ = call.__qualname__ = name
    return call


def random_flip(seed: int = 0):
    """Flip each image left-right with probability 1/2."""

    def fn(images, s):
        flip = tf.random.stateless_uniform(tf.shape(images)[:1], s) < 0.5
        return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)

    return _augmenter(fn, "random_flip", 0x1F11 + 7919 * int(seed))


def _reflect(i, n):
    period = tf.maximum(2 * (n - 1), 1)
    i = tf.math.floormod(i, period)
    return tf.where(i >= n, period - i, i)


def _shift(images, s, max_px: int, mode: str):
    """Move every image by its own random (dy, dx) in [-max_px, max_px]."""
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    d = tf.random.stateless_uniform([2, b], s, minval=-max_px, maxval=max_px + 1, dtype=tf.int32)
    ys = tf.range(h)[None, :] - d[0][:, None]  # [B, H] source rows
    xs = tf.range(w)[None, :] - d[1][:, None]
    if mode == "reflect":
        out = tf.gather(images, _reflect(ys, h), axis=1, batch_dims=1)
        return tf.gather(out, _reflect(xs, w), axis=2, batch_dims=1)
    vy = (ys >= 0) & (ys < h)
    vx = (xs >= 0) & (xs < w)
    out = tf.gather(images, tf.clip_by_value(ys, 0, h - 1), axis=1, batch_dims=1)
    out = tf.gather(out, tf.clip_by_value(xs, 0, w - 1), axis=2, batch_dims=1)
    keep = vy[:, :, None, None] & vx[:, None, :, None]
    return tf.where(keep, out, tf.zeros_like(out))


def pad_and_crop(pad: int = 4, mode: str = "reflect", seed: int = 0):
    """Pad by ``pad`` pixels (reflect or zero) and crop back at a random per-image offset."""
    pad = int(pad)
    if pad < 0 or mode not in ("reflect", "constant"):
        raise CnnedgeError(f"pad_and_crop needs pad >= 0 and mode reflect|constant, got {pad}, {mode!r}")
    return _augmenter(
        lambda images, s: _shift(images, s, pad, mode), f"pad_crop{pad}", 0x2C20 + 31 * pad + 7919 * int(seed)
    )


def random_translate(max_px: int = 2, seed: int = 0):
    """Shift each image by up to ``max_px`` pixels in x and y, filling with zeros."""
    max_px = int(max_px)
    if max_px < 0:
        raise CnnedgeError(f"random_translate needs max_px >= 0, got {max_px}")
    return _augmenter(
        lambda images, s: _shift(images, s, max_px, "constant"),
        f"translate{max_px}",
        0x3A30 + 31 * max_px + 7919 * int(seed),
    )


def color_jitter(strength: float = 0.2, seed: int = 0):
    """Scale each image's brightness, contrast and (RGB) saturation by its own random factor in
    [1 - strength, 1 + strength]: photos of the same class under other light."""
    strength = float(strength)
    if not 0.0 <= strength < 1.0:
        raise CnnedgeError(f"jitter strength must be in [0, 1), got {strength}")

    def fn(images, s):
        x = tf.cast(images, tf.float32)
        b = tf.shape(x)[0]
        f = tf.random.stateless_uniform([3, b, 1, 1, 1], s, 1 - strength, 1 + strength)
        x = x * f[0]  # brightness
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * f[1] + mean  # contrast
        if images.shape[-1] == 3:
            gray = tf.reduce_mean(x, axis=3, keepdims=True)
            x = (x - gray) * f[2] + gray  # saturation
        return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), images.dtype)

    return _augmenter(fn, f"jitter{round(strength * 100)}", 0x4B40 + round(strength * 100) + 7919 * int(seed))


def compose(*fns):
    """Apply augmenters in order; each gets its own seed stream."""

    def call(images, labels, seed=None):
        if seed is None:
            seed = tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64)
        for k, fn in enumerate(fns):
            sub = tf.cast(seed, tf.int64) * 1_000_003 + k
            if getattr(fn, "cnnedge_seeded", False):
                images, labels = fn(images, labels, seed=sub)
            else:
                images, labels = fn(images, labels)
        return images, labels

    call.cnnedge_seeded = True
    return call


def build_augment(names, seed: int = 0):
    """``["flip", "crop4", "translate:2"]`` (or ``"flip,crop4"``) -> one callable, or None."""
    if names is None:
        return None
    if isinstance(names, str):
        names = [n for n in names.replace(" ", "").split(",") if n]
    fns = []
    for i, raw in enumerate(names):
        fns.append(_parse(str(raw).strip().lower(), int(seed) * 101 + i))
    if not fns:
        return None
    return fns[0] if len(fns) == 1 else compose(*fns)


def _parse(name: str, seed: int):
    base, _, arg = name.partition(":")
    if not arg:  # crop4, translate2
        stripped = base.rstrip("0123456789")
        if stripped != base:
            base, arg = stripped, base[len(stripped) :]
    base = base.replace("-", "_")
    try:
        if base in ("flip", "hflip", "random_flip") and not arg:
            return random_flip(seed)
        if base in ("crop", "pad_crop", "padcrop", "pad_and_crop"):
            return pad_and_crop(int(arg) if arg else 4, seed=seed)
        if base in ("translate", "shift", "random_translate"):
            return random_translate(int(arg) if arg else 2, seed=seed)
        if base in ("jitter", "color_jitter", "colour_jitter"):
            return color_jitter(int(arg) / 100 if arg else 0.2, seed=seed)
    except ValueError:
        pass
    raise unknown("augmentation", name, VALID, hints=[v.split("[")[0] for v in VALID])


__all__ = ["build_augment", "color_jitter", "compose", "pad_and_crop", "random_flip", "random_translate"]
