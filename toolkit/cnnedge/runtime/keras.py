"""The ``keras`` runtime: the training model itself (TensorFlow, imported only when used), called
compiled (bench row ``keras-tf.function``) or through ``model.predict`` (``keras-predict``)."""

from __future__ import annotations

import importlib.util

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.runtime._registry import register_runtime
from cnnedge.runtime.base import Runner


def _check_keras() -> tuple[bool, str]:
    for mod, pip in (("tensorflow", "tensorflow"), ("tf_keras", "tf-keras")):
        if importlib.util.find_spec(mod) is None:
            return False, f"not available: pip install {pip}"
    return True, "ok"


@register_runtime(
    "keras",
    check=_check_keras,
    help="the training model itself (TensorFlow): the compiled call "
    "(keras-tf.function) or model.predict (keras-predict)",
    modes={"keras-tf.function": "function", "keras-predict": "predict"},
)
class KerasRunner(Runner):
    @classmethod
    def import_package(cls, threads: int) -> None:
        from cnnedge.backend import tf

        try:  # only before TensorFlow's runtime starts (a fresh bench worker); else keep its pools
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass

    def __init__(self, path, *, threads: int, class_names=None, mode: str | None = None, **opts):
        super().__init__(path, threads=threads)
        from cnnedge import models
        from cnnedge.backend import tf
        from cnnedge.run import Run

        if mode not in (None, "function", "predict"):
            raise CnnedgeError(f"keras runtime mode must be 'function' or 'predict', got {mode!r}")
        self.mode = mode or "function"
        self.import_package(self.threads)
        self.threads = tf.config.threading.get_intra_op_parallelism_threads() or self.threads
        self.model = models.load_model(self.path, compile=False)
        k = int(self.model.output_shape[-1])
        if class_names is None:
            try:  # the run the model belongs to names its classes
                class_names = Run(self.path.parent).class_names
            except CnnedgeError:
                class_names = None
        if not class_names or len(class_names) != k:
            class_names = [str(i) for i in range(k)]
        fixed = self.model.input_shape[1:3]
        dynamic = None in fixed
        self.metadata = {
            "format": "keras",
            "precision": "fp32",
            "class_names": list(class_names),
            "input_layout": "NHWC",
            "channels": int(self.model.input_shape[-1]),
            "input_dtype": "float32",
            "input_scale": None,
            "input_zero_point": None,
            "pixel_range": [0, 255],
            "image_size": None if dynamic else list(fixed),
            "dynamic_hw": dynamic,
            "min_input_size": models.min_input_size(self.model),
        }
        self.input_details = {
            "name": self.model.input_names[0],
            "dtype": "float32",
            "shape": [-1 if d is None else int(d) for d in self.model.input_shape],
        }
        self.output_details = {
            "name": self.model.output_names[0],
            "dtype": "float32",
            "shape": [-1, k],
            "scale": None,
            "zero_point": None,
        }
        model = self.model

        @tf.function(reduce_retracing=True)
        def call(x):
            return model(x, training=False)

        self._call = call

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        if self.mode == "predict":  # what users call; slower than the compiled call
            return self.model.predict(x, batch_size=len(x), verbose=0)
        return self._call(x).numpy()
