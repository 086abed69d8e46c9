"""Weight EMA: the averaging callback, and the BN statistics of the averaged weights.

An average of BN statistics taken along the way lags the averaged weights it is paired with, so
``train.ema_bn_images`` recomputes them on the best checkpoint after the float phase
(:func:`refresh_best_bn`)."""

from __future__ import annotations


def weight_ema(model, decay: float, path):
    """A Keras callback keeping an exponential moving average of every model weight (BN
    statistics included, as timm's ModelEmaV2 does) after each step: ``swap()`` exchanges the
    model's weights with the average, ``save()`` writes it to ``path`` (.npz) so a resumed run
    continues it. The decay ramps up as (1 + t) / (10 + t) so early steps are not over-weighted."""
    import numpy as np

    from cnnedge.backend import keras, tf
    from cnnedge.files import atomic_path

    class WeightEMA(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.vars = list(model.weights)
            self.shadow = [tf.Variable(v, trainable=False) for v in self.vars]
            self.step = tf.Variable(0.0, dtype=tf.float32, trainable=False)
            if path.is_file():  # a resumed run: the average so far
                with np.load(path) as saved:
                    self.step.assign(float(saved["step"]))
                    for k, s in enumerate(self.shadow):
                        s.assign(saved[f"w{k}"])
            self._update = tf.function(self._update_step)

        def _update_step(self):
            self.step.assign_add(1.0)
            d = tf.minimum(decay, (1.0 + self.step) / (10.0 + self.step))
            for s, v in zip(self.shadow, self.vars):
                s.assign(d * s + (1.0 - d) * tf.cast(v, s.dtype))

        def on_train_batch_end(self, batch, logs=None):
            self._update()

        def swap(self):
            for s, v in zip(self.shadow, self.vars):
                raw = v.numpy()
                v.assign(s)
                s.assign(raw)

        def save(self):
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, step=self.step.numpy(), **{f"w{k}": s.numpy() for k, s in enumerate(self.shadow)})

    return WeightEMA()


def recompute_bn(model, batches) -> int:
    """Re-estimate every BatchNormalization layer's moving mean and variance from ``batches``
    (input tensors) under the model's current weights: the plain average of the batch statistics,
    as torch's ``swa_utils.update_bn`` does for averaged weights (an average of BN statistics taken
    along the way lags the averaged weights it is paired with). Returns the images used."""
    from cnnedge.backend import keras, tf

    bns = [m for m in model.submodules if isinstance(m, keras.layers.BatchNormalization)]
    momenta = [b.momentum for b in bns]
    n = images = 0
    try:
        for x in batches:
            for b in bns:  # moving = (n·moving + batch) / (n + 1); eager calls re-read it
                b.momentum = n / (n + 1.0)  # (a tf.function would freeze it at trace time)
            model(tf.cast(x, tf.float32), training=True)
            n, images = n + 1, images + int(x.shape[0])
    finally:
        for b, m in zip(bns, momenta):
            b.momentum = m
    return images


def refresh_best_bn(run, src, recipe, state: dict) -> None:
    """``train.ema_bn_images``: recompute best.keras's BN statistics on that many training images
    (a seeded class-stratified sample, no augmentation) and keep them if validation accuracy does
    not drop (without a val split: keep them, as nothing else can judge); what was measured goes
    to ``state["ema_bn"]``, once per best checkpoint, and the run summary."""
    from cnnedge import evaluate
    from cnnedge.files import atomic_path

    t, best_epoch = recipe.train, state.get("best_epoch")
    if not t.ema_bn_images or state.get("ema_bn", {}).get("best_epoch") == best_epoch:
        return
    split = "val" if src.info.split_sizes.get("val") else None
    model = run.model("float")

    def score():
        return evaluate.evaluate(model, src, split=split, take=t.eval_images).accuracy if split else None

    before = score()
    batches = src.pipeline(
        "train",
        batch_size=min(t.batch_size, t.ema_bn_images),
        shuffle=True,
        seed=t.seed,
        take=t.ema_bn_images,
    )
    with src.guard("train"):
        images = recompute_bn(model, (x for x, _ in batches))
    after = score()
    kept = images > 0 and (split is None or after >= before)
    if kept:
        with atomic_path(run.model_path("float")) as tmp:
            model.save(tmp)
        if split:
            state["best_score"] = after  # what best.keras now scores on val
    state["ema_bn"] = {
        "images": images,
        "split": split,
        "accuracy_before": before,
        "accuracy_after": after,
        "kept": kept,
        "best_epoch": best_epoch,
    }
    run.write_state(state)
    print(
        f"BN statistics of {run.model_path('float').name} recomputed on {images:,} train images: "
        + (f"val {before:.2%} -> {after:.2%}, " if split else "")
        + ("kept" if kept else "not kept"),
        flush=True,
    )
