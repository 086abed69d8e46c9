"""The one place where TensorFlow is imported.

tfmot only understands Keras 2 models, so cnnedge builds every model with ``tf_keras`` and sets
``TF_USE_LEGACY_KERAS=1`` *before* TensorFlow is imported (otherwise ``tf.keras`` is Keras 3).
TensorFlow's start-up log lines (oneDNN, CUDA stubs, absl) are hidden unless ``CNNEDGE_DEBUG=1``
or ``cnnedge --debug``.

Use ``from cnnedge.backend import tf, keras`` -- both are imported on first attribute access.
"""

from __future__ import annotations

import os

from cnnedge.utils import debug_enabled
from cnnedge.utils import quiet_stderr as _stderr_silenced

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # even if a user exported 0: tfmot would reject models
if not debug_enabled():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


_tf = None
_keras = None


def get_tf():
    global _tf
    if _tf is None:
        with _stderr_silenced(not debug_enabled()):
            import tensorflow as tensorflow

            tensorflow.get_logger().setLevel("ERROR")
            import tf_keras  # noqa: F401  (registers Keras 2 under tf.keras)
        _tf = tensorflow
    return _tf


def get_keras():
    """The Keras 2 package (``tf_keras``), never Keras 3."""
    global _keras
    if _keras is None:
        get_tf()
        import tf_keras

        _keras = tf_keras
    return _keras


class _Lazy:
    def __init__(self, loader):
        object.__setattr__(self, "_loader", loader)

    def __getattr__(self, name):
        return getattr(self._loader(), name)

    def __repr__(self):
        return f"<lazy {self._loader.__name__}>"


tf = _Lazy(get_tf)
keras = _Lazy(get_keras)


def get_tfmot():
    get_tf()
    with _stderr_silenced(not debug_enabled()):
        import tensorflow_model_optimization as tfmot
    return tfmot


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (ops stay non-deterministic unless asked)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    get_keras().utils.set_random_seed(seed)
