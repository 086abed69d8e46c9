"""Mixup and CutMix for training batches with one-hot labels, ramped in over the epochs of a run.

Each image of a batch is mixed, with probability ``p(epoch)``, with its partner (the batch read
backwards; batches are shuffled): mixup blends the two images with a weight ``lam ~ Beta(a, a)``,
CutMix pastes a box of the partner covering ``1 - lam`` of the image; the one-hot labels are
mixed by the same ``lam`` (for CutMix, the area actually kept after clipping the box). With both
on, each image picks one of them at even odds (timm's ``Mixup`` does the same per batch).
``p`` is 0 before ``ramp[0]`` of the epochs, grows linearly to ``prob`` at ``ramp[1]`` and stays
there: the model learns clean images first and meets the harder mixed targets late. The draws
are stateless functions of (seed, batch number), so the ramp and the draws of a resumed run
continue where they stopped; the batch number tells the epoch, because training batches repeat without
end and Keras takes ``steps`` of them per epoch from one iterator (tested through ``fit``).
"""

from __future__ import annotations

from cnnedge.backend import tf


def mix_probability(epoch, epochs: int, prob: float, ramp) -> float:
    """Share of images mixed in 0-based ``epoch`` of ``epochs`` (also works on tensors)."""
    start, full = float(ramp[0]), float(ramp[1])
    f = epoch / epochs
    if full > start:
        return prob * tf.clip_by_value((f - start) / (full - start), 0.0, 1.0)
    return prob * tf.cast(f >= start, tf.float32)


def _beta(alpha: float, n, seed):
    """``n`` draws of Beta(alpha, alpha) (gamma ratio; 0.5 where both draws underflow)."""
    s = tf.random.experimental.stateless_split(seed, 2)
    a = tf.random.stateless_gamma([n], s[0], alpha)
    b = tf.random.stateless_gamma([n], s[1], alpha)
    return tf.where(a + b > 0, a / tf.maximum(a + b, 1e-30), 0.5)


def _boxes(lam, h, w, seed):
    """Per-image boxes covering about ``1 - lam`` of an h×w image: (mask [B,H,W,1], kept share)."""
    n = tf.shape(lam)[0]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    cut = tf.sqrt(1.0 - lam)
    centre = tf.random.stateless_uniform([2, n], seed)
    cy, cx = centre[0] * hf, centre[1] * wf
    y0 = tf.cast(tf.round(tf.clip_by_value(cy - cut * hf / 2, 0, hf)), tf.int32)
    y1 = tf.cast(tf.round(tf.clip_by_value(cy + cut * hf / 2, 0, hf)), tf.int32)
    x0 = tf.cast(tf.round(tf.clip_by_value(cx - cut * wf / 2, 0, wf)), tf.int32)
    x1 = tf.cast(tf.round(tf.clip_by_value(cx + cut * wf / 2, 0, wf)), tf.int32)
    ys, xs = tf.range(h)[None, :], tf.range(w)[None, :]
    in_y = (ys >= y0[:, None]) & (ys < y1[:, None])
    in_x = (xs >= x0[:, None]) & (xs < x1[:, None])
    mask = in_y[:, :, None, None] & in_x[:, None, :, None]
    kept = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / (hf * wf)
    return mask, kept


def mix_batch(images, labels, p, seed, mixup: float = 0.0, cutmix: float = 0.0):
    """One batch: float images [B,H,W,C], one-hot labels [B,K], mix share ``p``, seed [2] int64."""
    images = tf.convert_to_tensor(images, tf.float32)
    labels = tf.convert_to_tensor(labels, tf.float32)
    shape = tf.shape(images)
    n = shape[0]
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)  # independent streams
    on = tf.random.stateless_uniform([n], s[0]) < p
    other, other_labels = tf.reverse(images, [0]), tf.reverse(labels, [0])
    lam = tf.ones([n])
    out = images
    use_cut = tf.zeros([n], tf.bool)
    if cutmix > 0:
        use_cut = (tf.random.stateless_uniform([n], s[1]) < 0.5) if mixup > 0 else tf.ones([n], tf.bool)
        use_cut &= on
        mask, kept = _boxes(_beta(cutmix, n, s[2]), shape[1], shape[2], s[3])
        out = tf.where(mask & use_cut[:, None, None, None], other, out)
        lam = tf.where(use_cut, kept, lam)
    if mixup > 0:
        blend = on & ~use_cut
        m = _beta(mixup, n, s[4])
        m4 = m[:, None, None, None]
        out = tf.where(blend[:, None, None, None], m4 * images + (1 - m4) * other, out)
        lam = tf.where(blend, m, lam)
    labels = lam[:, None] * labels + (1 - lam[:, None]) * other_labels
    return out, labels


def mix_batches(
    ds,
    *,
    mixup: float,
    cutmix: float,
    prob: float,
    ramp,
    epochs: int,
    steps: int,
    first_epoch: int = 0,
    seed: int = 0,
):
    """Map :func:`mix_batch` over a repeated dataset of (float images, one-hot labels) batches.

    Args:
        ds: The batches; the first starts epoch ``first_epoch`` of the run.
        mixup: Mixup's Beta parameter (0: off).
        cutmix: CutMix's Beta parameter (0: off).
        prob: Probability an image is mixed once the ramp is complete.
        ramp: (start, full): fractions of the run where mixing starts and reaches ``prob``.
        epochs: Epochs of the run.
        steps: Batches per epoch.
        first_epoch: The 0-based epoch the first batch belongs to (a resumed run's).
        seed: Seed of the stateless random draws.
    """
    counter = tf.data.Dataset.range(int(first_epoch) * int(steps), 2**62)

    def fn(batch, i):
        p = mix_probability(tf.cast(i // steps, tf.float32), epochs, prob, ramp)
        return mix_batch(
            batch[0], batch[1], p, tf.stack([tf.constant(int(seed), tf.int64), i]), mixup, cutmix
        )

    return tf.data.Dataset.zip((ds, counter)).map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def mix_for(ds, recipe, steps: int, first_epoch: int = 0):
    """``ds`` mixed as ``recipe.augment`` says (unchanged when it does not mix)."""
    if not recipe.augment.mixes:
        return ds
    a = recipe.augment
    return mix_batches(
        ds,
        mixup=a.mixup,
        cutmix=a.cutmix,
        prob=a.mix_prob,
        ramp=a.mix_ramp,
        epochs=recipe.train.epochs,
        steps=steps,
        first_epoch=first_epoch,
        seed=recipe.train.seed,
    )


__all__ = ["mix_batch", "mix_batches", "mix_for", "mix_probability"]
