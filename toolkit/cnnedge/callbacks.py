"""Keras callbacks a training run adds on request (the run's own checkpointing is in train.py)."""

from __future__ import annotations

import time


def time_budget(minutes: float, state: dict):
    """A Keras callback: stop before an epoch that would end past ``minutes`` of training
    (``state["train_seconds"]``: the time of earlier sessions of a resumed run)."""
    from cnnedge.backend import keras

    class Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0, self.spent, self.first = time.time(), state.get("train_seconds", 0.0), None

        def on_epoch_begin(self, epoch, logs=None):
            self.first = epoch if self.first is None else self.first

        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1 - self.first
            used = self.spent + time.time() - self.t0
            per_epoch = (time.time() - self.t0) / max(1, done)
            if used + per_epoch > minutes * 60:
                print(f"time budget of {minutes:g} min: stopping after epoch {epoch + 1}",
                      flush=True)
                self.model.stop_training = True

    return Budget()


def weight_ema(model, decay: float, path):
    """A Keras callback keeping an exponential moving average of every model weight (BN
    statistics included, as timm's ModelEmaV2 does) after each step: ``swap()`` exchanges the
    model's weights with the average, ``save()`` writes it to ``path`` (.npz) so a resumed run
    continues it. The decay ramps up as (1 + t) / (10 + t) so early steps are not over-weighted."""
    import numpy as np

    from cnnedge.backend import keras, tf
    from cnnedge.utils import atomic_path

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
                np.savez(f, step=self.step.numpy(),
                         **{f"w{k}": s.numpy() for k, s in enumerate(self.shadow)})

    return WeightEMA()


def recompute_bn(model, batches) -> int:
    """Re-estimate every BatchNormalization layer's moving mean and variance from ``batches``
    (input tensors) under the model's current weights: the plain average of the batch statistics,
    as torch's ``swa_utils.update_bn`` does for averaged weights (an average of BN statistics taken
    along the way lags the averaged weights it is paired with). Returns the batches used."""
    from cnnedge.backend import keras, tf

    bns = [m for m in model.submodules if isinstance(m, keras.layers.BatchNormalization)]
    momenta = [b.momentum for b in bns]
    n = 0
    try:
        for x in batches:
            for b in bns:  # moving = (n·moving + batch) / (n + 1): read by each eager call
                b.momentum = n / (n + 1.0)
            model(tf.cast(x, tf.float32), training=True)
            n += 1
    finally:
        for b, m in zip(bns, momenta):
            b.momentum = m
    return n


def refresh_best_bn(run, src, recipe, state: dict) -> None:
    """``train.ema_bn_images``: recompute best.keras's BN statistics on that many training images
    (a seeded class-stratified sample, no augmentation) and keep them if validation accuracy does
    not drop; what was measured goes to ``state["ema_bn"]`` (once) and the run summary."""
    from cnnedge import evaluate
    from cnnedge.utils import atomic_path

    t = recipe.train
    if not t.ema_bn_images or "ema_bn" in state:
        return
    split = "val" if src.info.split_sizes.get("val") else "train"
    take = t.eval_images
    model = run.model("float")
    before = evaluate.evaluate(model, src, split=split, take=take)["accuracy"]
    batches = src.pipeline("train", batch_size=min(t.batch_size, t.ema_bn_images), shuffle=True,
                           seed=t.seed, take=t.ema_bn_images, drop_remainder=True)
    with src.guard("train"):
        n = recompute_bn(model, (x for x, _ in batches))
    after = evaluate.evaluate(model, src, split=split, take=take)["accuracy"]
    kept = after >= before
    if kept:
        with atomic_path(run.model_path("float")) as tmp:
            model.save(tmp)
    state["ema_bn"] = {"images": n * min(t.batch_size, t.ema_bn_images), "split": split,
                       "accuracy_before": before, "accuracy_after": after, "kept": kept}
