"""The training objectives a cnnedge model file's config may name: the distillation loss and its
label-half accuracy (:mod:`cnnedge.distill`). They live below the model loader so that loading a
distilled run's checkpoint in any process finds them registered, without importing training code.
"""

from __future__ import annotations

from cnnedge.backend import keras, tf


@keras.utils.register_keras_serializable(package="cnnedge")
class DistillLoss(keras.losses.Loss):
    """Loss on ``y_true = [one-hot labels | teacher logits]`` and student logits."""

    def __init__(
        self,
        num_classes: int,
        temperature: float = 4.0,
        alpha: float = 0.9,
        label_smoothing: float = 0.0,
        name: str = "distill_loss",
        **kw,
    ):
        super().__init__(name=name, **kw)
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        k, t = self.num_classes, self.temperature
        labels, teacher = y_true[:, :k], y_true[:, k:]
        ce = keras.losses.categorical_crossentropy(
            labels, y_pred, from_logits=True, label_smoothing=self.label_smoothing
        )
        p_teacher = tf.nn.softmax(teacher / t)
        kl = tf.reduce_sum(p_teacher * (tf.nn.log_softmax(teacher / t) - tf.nn.log_softmax(y_pred / t)), -1)
        return (1.0 - self.alpha) * ce + self.alpha * (t * t) * kl

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "temperature": self.temperature,
            "alpha": self.alpha,
            "label_smoothing": self.label_smoothing,
        }


@keras.utils.register_keras_serializable(package="cnnedge")
class LabelAccuracy(keras.metrics.CategoricalAccuracy):
    """Top-1 accuracy against the label half of a ``[labels | teacher]`` target."""

    def __init__(self, num_classes: int, name: str = "accuracy", **kw):
        super().__init__(name=name, **kw)
        self.num_classes = int(num_classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true[:, : self.num_classes], y_pred, sample_weight)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
