"""Optimizer, loss and metric of both phases."""

from __future__ import annotations

from cnnedge.recipe import Recipe


def build_optimizer(recipe: Recipe, steps_per_epoch: int):
    from cnnedge.backend import keras

    o = recipe.optim
    total = max(1, recipe.train.epochs * steps_per_epoch)
    warmup = int(o.warmup_epochs * steps_per_epoch)
    if o.schedule == "cosine":
        if warmup:
            lr = keras.optimizers.schedules.CosineDecay(
                0.0, max(1, total - warmup), warmup_target=o.lr, warmup_steps=warmup
            )
        else:
            lr = keras.optimizers.schedules.CosineDecay(o.lr, total)
    else:
        lr = o.lr
    # Decoupled weight decay (each step: w -= lr * weight_decay * w) for every optimizer.
    if o.name == "adam":
        return keras.optimizers.Adam(lr, weight_decay=o.weight_decay or None)
    if o.name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=o.weight_decay)
    return keras.optimizers.SGD(lr, momentum=o.momentum, nesterov=True, weight_decay=o.weight_decay or None)


def compile_model(model, recipe: Recipe, steps_per_epoch: int, optimizer=None, distill: bool = False):
    """Compile for one-hot targets, or for ``[one-hot | teacher logits]`` when ``distill``."""
    from cnnedge.backend import keras

    ls = recipe.train.label_smoothing
    if distill:
        from cnnedge.distill import DistillLoss, LabelAccuracy

        k, d = model.output_shape[-1], recipe.distill
        loss = DistillLoss(k, d.temperature, d.alpha, label_smoothing=ls)
        metric = LabelAccuracy(k)
    else:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ls)
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    model.compile(
        optimizer=optimizer or build_optimizer(recipe, steps_per_epoch), loss=loss, metrics=[metric]
    )
    return model
