"""Knowledge distillation: train a small student on its labels and on teachers' soft targets.

    recipe.distill = DistillConfig(teachers=("runs/cifar10/a", "runs/cifar10/b"),
                                   temperature=4.0, alpha=0.9)

Teachers are trained cnnedge runs (their ``best.keras``) or ``.keras`` files. They run in
inference mode on the *same augmented batch* the student sees, inside the input pipeline, and
their mean logits travel with the one-hot labels as one target tensor ``[labels | teacher]``
(shape ``(batch, 2K)``). The student stays a plain Keras model compiled with
:class:`DistillLoss` (Hinton et al. 2015)::

    loss = (1 - alpha) * CE(labels, student) + alpha * T² * KL(softmax(t/T) || softmax(s/T))

and :class:`LabelAccuracy` scores the label half. Checkpoints, resume, QAT and export see an
ordinary model: the teachers never become part of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from cnnedge.backend import keras, tf
from cnnedge.errors import CnnedgeError
from cnnedge.run import Run


@keras.utils.register_keras_serializable(package="cnnedge")
class DistillLoss(keras.losses.Loss):
    """Loss on ``y_true = [one-hot labels | teacher logits]`` and student logits."""

    def __init__(self, num_classes: int, temperature: float = 4.0, alpha: float = 0.9,
                 label_smoothing: float = 0.0, name: str = "distill_loss", **kw):
        super().__init__(name=name, **kw)
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        k, t = self.num_classes, self.temperature
        labels, teacher = y_true[:, :k], y_true[:, k:]
        ce = keras.losses.categorical_crossentropy(
            labels, y_pred, from_logits=True, label_smoothing=self.label_smoothing)
        p_teacher = tf.nn.softmax(teacher / t)
        kl = tf.reduce_sum(
            p_teacher * (tf.nn.log_softmax(teacher / t) - tf.nn.log_softmax(y_pred / t)), -1)
        return (1.0 - self.alpha) * ce + self.alpha * (t * t) * kl

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "temperature": self.temperature, "alpha": self.alpha,
                "label_smoothing": self.label_smoothing}


@keras.utils.register_keras_serializable(package="cnnedge")
class LabelAccuracy(keras.metrics.CategoricalAccuracy):
    """Top-1 accuracy against the label half of a ``[labels | teacher]`` target."""

    def __init__(self, num_classes: int, name: str = "accuracy", **kw):
        super().__init__(name=name, **kw)
        self.num_classes = int(num_classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true[:, :self.num_classes], y_pred, sample_weight)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def check_config(cfg) -> List[Path]:
    """Reject distill settings outside their range; returns the teachers' model files."""
    if not 0.0 <= cfg.alpha <= 1.0:
        raise CnnedgeError(f"distill.alpha must be in [0, 1], got {cfg.alpha}")
    if cfg.temperature <= 0:
        raise CnnedgeError(f"distill.temperature must be > 0, got {cfg.temperature}")
    return [Run.model_file(p, "distill teacher") for p in cfg.teachers]


def load_teachers(cfg, num_classes: int, channels: int) -> List:
    """Load the teacher models of ``cfg`` (recipe.distill) and check they fit the dataset."""
    from cnnedge import models

    teachers = []
    for p, path in zip(cfg.teachers, check_config(cfg)):
        m = models.load_model(path, compile=False)
        if m.output_shape[-1] != num_classes or m.input_shape[-1] != channels:
            raise CnnedgeError(
                f"distill teacher {p} maps {m.input_shape[-1]}-channel images to "
                f"{m.output_shape[-1]} classes; the dataset has {channels}-channel images and "
                f"{num_classes} classes")
        m.trainable = False
        teachers.append(m)
    return teachers


def teachers_for(recipe, info) -> Optional[List]:
    """The loaded teachers of ``recipe`` for a dataset with ``info``, or None when not distilling."""
    if not recipe.distill.teachers:
        return None
    return load_teachers(recipe.distill, len(info.class_names), info.channels)


def with_teacher_targets(ds, teachers: Sequence, flip: bool = False):
    """Map ``(x, onehot)`` batches to ``(x, [onehot | mean teacher logits])``; with ``flip`` the
    mean also runs over the horizontal mirror of each image (NHWC: axis 2 is the width)."""
    teachers = list(teachers)

    def add(x, y):
        views = [x, tf.reverse(x, axis=[2])] if flip else [x]
        z = tf.add_n([t(v, training=False) for t in teachers for v in views])
        z = z / float(len(teachers) * len(views))
        return x, tf.concat([y, tf.cast(z, y.dtype)], axis=-1)

    return ds.map(add, num_parallel_calls=1)
