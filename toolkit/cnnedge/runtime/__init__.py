"""The runtimes that execute artifacts, registered by name and looked up by name.

    r = load("runs/fashion_mnist/exp/export/model_int8.tflite")          # runtime "litert"
    r = load("model_int8.onnx", runtime="onnxruntime", threads=1)
    logits = r.predict(images_uint8)          # [N, H, W, C] pixels 0..255 -> float32 [N, K]
    read_metadata("model_int8.tflite")["class_names"]

One module per runtime family (``litert``, ``onnxruntime``, ``keras``, ``openvino``, ``tflm``),
each a :class:`Runner` subclass per runtime with ``@register_runtime`` (``_registry``); which
files a runtime runs is said by the artifact table (:mod:`cnnedge.artifacts`). Adding a runtime
is a module here, named in :data:`FAMILIES`, and its name in the table rows it runs.

Preprocessing follows the metadata every artifact carries (:mod:`.base`): uint8 pixel ``p``
becomes ``round(p / input_scale) + input_zero_point`` (for int8 TFLite scale 1.0 / zero point
-128, i.e. ``p - 128`` exactly). Only numpy and the runtime's own package are needed (TensorFlow
by ``"keras"`` alone), so the edge demo runs on a device without TensorFlow;
:func:`runtime_status` says why a runtime is unavailable, what to install.
"""

from cnnedge.artifacts import check_metadata, one_line, read_metadata
from cnnedge.runtime import keras, litert, onnxruntime, openvino, tflm
from cnnedge.runtime._registry import (
    available_runtimes,
    default_runtime,
    default_threads,
    list_runtimes,
    load,
    modes,
    register_runtime,
    runtime_class,
    runtime_help,
    runtime_status,
    runtimes_for,
)
from cnnedge.runtime.base import Runner

FAMILIES = (litert, onnxruntime, keras, openvino, tflm)  # importing each registers its runtimes

__all__ = [
    "FAMILIES",
    "Runner",
    "available_runtimes",
    "check_metadata",
    "default_runtime",
    "default_threads",
    "list_runtimes",
    "load",
    "modes",
    "one_line",
    "read_metadata",
    "register_runtime",
    "runtime_class",
    "runtime_help",
    "runtime_status",
    "runtimes_for",
]
