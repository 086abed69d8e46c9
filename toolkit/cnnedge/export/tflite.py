"""TFLite writers: fp32, fp16 weights, and full-integer int8 (from the QAT model, else PTQ).

The int8 model's input is pinned to scale 1 / zero point -128 (int8 = pixel - 128, exactly);
every file keeps the dynamic H×W input (``[-1, -1, -1, C]``) and carries the cnnedge metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnedge import artifacts
from cnnedge.artifacts import INPUT_NAME, embed_tflite_metadata
from cnnedge.errors import CnnedgeError
from cnnedge.export.job import Job
from cnnedge.utils import quiet_stderr


def _concrete(model, channels: int, dynamic: bool, size=None):
    from cnnedge.backend import tf

    hw = [None, None] if dynamic else list(model.input_shape[1:3])
    batch = None
    if size is not None:  # a fixed 1×H×W×C input (TFLite Micro plans for one shape)
        batch, hw = 1, [int(v) for v in size]
    spec = tf.TensorSpec([batch, *hw, channels], tf.float32, name=INPUT_NAME)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return fn.get_concrete_function()


def convert_tflite(model, precision: str, calib=None, *, channels: int, dynamic: bool, size=None) -> bytes:
    """A tf_keras model -> TFLite bytes (fp32, fp16 weights, or full-integer int8 I/O);
    ``size``: (H, W) of a fixed batch-1 input instead of the model's own input shape."""
    from cnnedge.backend import tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [_concrete(model, channels, dynamic and size is None, size)], model
    )
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        images = list(calib)

        def representative():
            for x in images:
                yield [x.astype(np.float32)]

        conv.representative_dataset = representative
    try:
        with quiet_stderr():  # the converter prints "fully_quantize: 0, ..." on fd 2
            return bytes(conv.convert())
    except Exception as e:  # noqa: BLE001 - converter errors are long MLIR dumps
        lines = [ln for ln in str(e).splitlines() if "error" in ln.lower()] or str(e).splitlines()
        raise CnnedgeError(
            f"TFLite {precision} conversion of model '{model.name}' failed: "
            f"{(lines or [type(e).__name__])[0].strip()[:300]}"
        ) from e


def io_metadata(i: dict, o: dict) -> dict:
    """The input and output dtype, scale and zero point that every TFLite file's metadata
    records, from :func:`tflite_io`'s details."""
    keys = ("dtype", "scale", "zero_point")
    return {f"{side}_{k}": d[k] for side, d in (("input", i), ("output", o)) for k in keys}


def tflite_io(buf: bytes) -> tuple[dict, dict]:
    """(input, output) details of TFLite bytes via LiteRT: dtype, shape_signature, quantization."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=buf)
    i, o = it.get_input_details()[0], it.get_output_details()[0]

    def d(t):
        scale, zp = t["quantization"]
        return {
            "dtype": np.dtype(t["dtype"]).name,
            "shape_signature": [int(v) for v in t["shape_signature"]],
            "scale": float(scale) if scale else None,
            "zero_point": int(zp) if scale else None,
        }

    return d(i), d(o)


def tflite_artifact(job: Job, precision: str, source: str) -> tuple[bytes, dict]:
    key = ("tflite", precision, source)
    if key in job.cache:
        return job.cache[key]
    model = job.qat() if source == "qat" else job.float_model
    calib = job.calib() if precision == "int8" else None
    buf = convert_tflite(model, precision, calib, channels=job.channels, dynamic=job.dynamic_hw)
    i, o = tflite_io(buf)
    want = [-1, -1, -1, job.channels] if job.dynamic_hw else None
    if want and i["shape_signature"] != want:
        raise CnnedgeError(
            f"TFLite {precision} model lost the dynamic input shape: {i['shape_signature']} (expected {want})"
        )
    if precision == "int8" and (i["scale"], i["zero_point"]) != (1.0, -128):
        import warnings

        warnings.warn(
            f"int8 TFLite input quantization is scale {i['scale']} / zero point "
            f"{i['zero_point']}, not 1.0 / -128: uint8 pixels do not map exactly "
            f"(recorded in the metadata)",
            stacklevel=2,
        )
    meta = job.metadata("tflite", precision, source, **io_metadata(i, o))
    job.cache[key] = (buf, meta)
    return job.cache[key]


def writers(job: Job, precision: str):
    """[(artifact row, writer(tmp_path) -> metadata)] for one precision: with a QAT model, int8
    is written twice, from QAT and (to compare) by post-training quantization."""
    if precision != "int8":
        keys = [(f"tflite-{precision}", "float")]
    elif job.qat_path is not None:
        keys = [("tflite-int8", "qat"), ("tflite-int8-ptq", "ptq")]
    else:
        keys = [("tflite-int8", "ptq")]
    out = []
    for key, source in keys:

        def write(tmp, source=source):
            buf, meta = tflite_artifact(job, precision, source)
            Path(tmp).write_bytes(embed_tflite_metadata(buf, meta))
            return meta

        out.append((artifacts.get(key), write))
    return out
