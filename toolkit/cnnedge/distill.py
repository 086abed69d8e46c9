"""Knowledge distillation: train a small student on its labels and on teachers' soft targets.

    recipe.distill = DistillConfig(teachers=("runs/cifar10/a", "runs/cifar10/b"),
                                   temperature=4.0, alpha=0.9)

Teachers are trained cnnedge runs (their ``best.keras``), ``.keras`` files or the name of a
shipped reference checkpoint (``cifar10``). They run in inference mode on the *same augmented
batch* the student sees, inside the input pipeline, and their mean logits travel with the
one-hot labels as one target tensor ``[labels | teacher]`` (shape ``(batch, 2K)``). The student
stays a plain Keras model compiled with :class:`DistillLoss` (Hinton et al. 2015)::

    loss = (1 - alpha) * CE(labels, student) + alpha * T² * KL(softmax(t/T) || softmax(s/T))

and :class:`LabelAccuracy` scores the label half. Checkpoints, resume, QAT and export see an
ordinary model: the teachers never become part of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from cnnedge.backend import tf
from cnnedge.errors import CnnedgeError
from cnnedge.models.objectives import DistillLoss, LabelAccuracy  # noqa: F401 (re-exported)
from cnnedge.weights import weights_file


def check_config(cfg) -> List[Path]:
    """Reject distill settings outside their range; returns the teachers' model files."""
    if not 0.0 <= cfg.alpha <= 1.0:
        raise CnnedgeError(f"distill.alpha must be in [0, 1], got {cfg.alpha}")
    if cfg.temperature <= 0:
        raise CnnedgeError(f"distill.temperature must be > 0, got {cfg.temperature}")
    return [weights_file(p, "distill teacher") for p in cfg.teachers]


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
                f"{num_classes} classes"
            )
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
