"""The training input of both phases: batches with one-hot labels, mixed, class-weighted or
with teacher logits as the recipe says."""

from __future__ import annotations

from cnnedge.errors import CnnedgeError
from cnnedge.recipe import Recipe
from cnnedge.utils import balanced_weights


def datasets(src, recipe: Recipe, teachers=None, first_epoch: int = 0, mix: bool = True):
    """(train, val or None, steps_per_epoch): one-hot labels for the smoothed loss, train images
    mixed from ``first_epoch`` on if ``mix`` and the recipe says so (cnnedge.data.mix), with the
    ``teachers``' mean logits appended to them when distilling (cnnedge.distill), or each
    image's class weight (``train.class_weights``) as a third element."""
    from cnnedge.backend import tf
    from cnnedge.data.augment import build_augment
    from cnnedge.data.mix import mix_for

    t = recipe.train
    k = len(src.info.class_names)
    n_train = src.num_examples("train")
    if n_train == 0:
        raise CnnedgeError(f"dataset {src.info.name} has an empty train split")
    if n_train < t.batch_size:
        raise CnnedgeError(
            f"train split has {n_train} images, fewer than batch size {t.batch_size}; lower train.batch_size"
        )
    steps = t.steps_per_epoch or n_train // t.batch_size
    aug = build_augment(recipe.augment.ops, seed=t.seed) if recipe.augment.ops else None

    def onehot(x, y):
        return tf.cast(x, tf.float32), tf.one_hot(y, k)

    train = src.pipeline(
        "train",
        batch_size=t.batch_size,
        shuffle=True,
        seed=t.seed,
        augment=aug,
        cache=recipe.data.cache,
        repeat=True,
        drop_remainder=True,
    )
    train = train.map(onehot, num_parallel_calls=tf.data.AUTOTUNE)
    train = mix_for(train, recipe, steps, first_epoch) if mix else train
    cw = class_weights(src, recipe)
    if cw is not None:  # per image, so that a mixed label weighs by its shares (fit's is argmax)
        w = tf.constant([cw[i] for i in range(k)], tf.float32)
        train = train.map(lambda x, y: (x, y, tf.linalg.matvec(y, w)))
    val = None
    if "val" in src.info.split_sizes and src.num_examples("val") > 0:
        val = src.pipeline("val", batch_size=t.batch_size, cache=recipe.data.cache, take=t.eval_images)
        val = val.map(onehot, num_parallel_calls=tf.data.AUTOTUNE)
    if teachers:
        from cnnedge.distill import with_teacher_targets

        flip = recipe.distill.teacher_flip
        train = with_teacher_targets(train, teachers, flip)
        val = with_teacher_targets(val, teachers, flip) if val is not None else None
    train = train.prefetch(tf.data.AUTOTUNE)
    val = val.prefetch(tf.data.AUTOTUNE) if val is not None else None
    return train, val, steps


def class_weights(src, recipe: Recipe):
    """Inverse-frequency class weights (mean 1) when the recipe asks for them, else None."""
    if not recipe.train.class_weights or recipe.distill.teachers:
        return None
    return balanced_weights(src.split_index("train").labels, len(src.info.class_names))
