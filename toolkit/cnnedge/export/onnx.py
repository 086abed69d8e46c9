"""ONNX writers: fp32 (tf2onnx of the float model) and int8 (two routes, ``int8_method``).

* ``"tflite"`` (default): ``tf2onnx.convert.from_tflite`` on the int8 TFLite model, then the
  rewrite of :mod:`cnnedge.export.onnx_int8`: onnxruntime runs integer kernels and the logits
  equal the int8 TFLite model's. Weights int8 symmetric (zero point 0, default) or, with
  ``onnx_weights="uint8"``, uint8 + 128 for AVX2 CPUs without VNNI (metadata ``onnx_weights``).
* ``"qdq"``: ``onnxruntime.quantization.quantize_static`` on the fp32 ONNX model (QDQ,
  per-channel int8 weights, int8 activations calibrated on the calibration images): post-training
  quantization of the float model, so it ignores QAT.

Every file is run once in onnxruntime after writing, at the training size and at twice it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from cnnedge import artifacts
from cnnedge.artifacts import INPUT_NAME, OUTPUT_NAME, set_onnx_metadata
from cnnedge.errors import CnnedgeError
from cnnedge.export.job import Job
from cnnedge.export.onnx_int8 import WEIGHTS, rename_io, requantize
from cnnedge.export.tflite import tflite_artifact
from cnnedge.utils import quiet_stderr


def _quiet_tf2onnx():
    import logging

    for name in ("tf2onnx", "tf2onnx.tfonnx", "tf2onnx.optimizer", "tf2onnx.shape_inference"):
        logging.getLogger(name).setLevel(logging.ERROR)


def onnx_fp32(job: Job):
    """The float model -> ONNX ModelProto: input "image" [N, H, W, C] float32, output "logits"."""
    if "onnx_fp32" in job.cache:
        return job.cache["onnx_fp32"]
    import tf2onnx

    from cnnedge.backend import tf

    _quiet_tf2onnx()
    model = job.float_model
    hw = [None, None] if job.dynamic_hw else list(model.input_shape[1:3])
    spec = (tf.TensorSpec([None, *hw, job.channels], tf.float32, name=INPUT_NAME),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=job.opset)
    except Exception as e:  # noqa: BLE001
        raise CnnedgeError(
            f"ONNX conversion of model '{model.name}' failed: "
            f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        ) from e
    rename_io(proto, INPUT_NAME, OUTPUT_NAME)
    job.cache["onnx_fp32"] = proto
    return proto


def check_onnx(path: Path, meta: dict) -> None:
    """Run the written file in onnxruntime at the training size and at 2× (dynamic H×W)."""
    from cnnedge import runtime

    r = runtime.load(path, runtime="onnxruntime", threads=1)
    h, w = meta.get("image_size") or [max(meta["min_input_size"], 28)] * 2
    sizes = [(h, w), (2 * h, 2 * w)] if meta["dynamic_hw"] else [(h, w)]
    for hh, ww in sizes:
        x = np.zeros((2, hh, ww, meta["channels"]), np.uint8)
        y = r.predict(x)
        if y.shape != (2, len(meta["class_names"])) or not np.all(np.isfinite(y)):
            raise CnnedgeError(f"{path.name}: onnxruntime output at {hh}×{ww} is {y.shape} or not finite")


def onnx_weights(job: Job) -> str:
    """The int8 ONNX weight layout; export() keeps it in the job's cache (Job has no field)."""
    return job.cache.get("onnx_weights", WEIGHTS[0])


def onnx_int8_tflite(job: Job, tflite_buf: bytes):
    """int8 TFLite -> ONNX (tf2onnx.from_tflite) -> uint8 activations + int8 ReLU (see module)."""
    import tf2onnx

    _quiet_tf2onnx()
    with tempfile.TemporaryDirectory(prefix="cnnedge_tfl2onnx_") as tmp:
        src = Path(tmp) / "model_int8.tflite"
        src.write_bytes(tflite_buf)
        with quiet_stderr():
            try:
                proto, _ = tf2onnx.convert.from_tflite(str(src), opset=job.opset)
            except Exception as e:  # noqa: BLE001
                raise CnnedgeError(
                    f"tf2onnx cannot convert the int8 TFLite model: "
                    f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                ) from e
    return requantize(proto, onnx_weights(job))


def onnx_int8_qdq(job: Job):
    """fp32 ONNX -> onnxruntime.quantization.quantize_static (QDQ, per-channel, int8 act.)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self, images):
            self._it = iter(images)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x.astype(np.float32)}

    fp32 = onnx_fp32(job)
    with tempfile.TemporaryDirectory(prefix="cnnedge_qdq_") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(fp32, str(src))
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation only
            shutil.copy(src, pre)
        try:
            quantize_static(
                str(pre),
                str(dst),
                Reader(job.calib()),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        except Exception as e:  # noqa: BLE001
            raise CnnedgeError(
                f"onnxruntime quantize_static failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
            ) from e
        return onnx.load(str(dst))


def writers(job: Job, precision: str):
    """[(artifact row, writer(tmp_path) -> metadata)] for one precision."""
    import onnx

    def write_fp32(tmp):
        proto = onnx.ModelProto()
        proto.CopyFrom(onnx_fp32(job))
        meta = job.metadata("onnx", "fp32", "float", opset=job.opset)
        set_onnx_metadata(proto, meta)
        onnx.save(proto, str(tmp))
        check_onnx(Path(tmp), meta)
        return meta

    def write_int8(tmp):
        if job.int8_method == "tflite":
            source = job.int8_source
            buf, tmeta = tflite_artifact(job, "int8", source)
            proto = onnx_int8_tflite(job, buf)
            io = {
                "input_dtype": "uint8",
                "input_scale": 1.0,
                "input_zero_point": int(tmeta["input_zero_point"] or 0) + 128,
            }
            if (tmeta["input_scale"], tmeta["input_zero_point"]) != (1.0, -128):
                io["input_scale"] = tmeta["input_scale"]
        else:
            source = "ptq"
            proto = onnx_int8_qdq(job)
            io = {"input_dtype": "float32", "input_scale": None, "input_zero_point": None}
        meta = job.metadata(
            "onnx",
            "int8",
            source,
            opset=job.opset,
            int8_method=job.int8_method,
            onnx_weights=onnx_weights(job),
            **io,
        )
        set_onnx_metadata(proto, meta)
        onnx.save(proto, str(tmp))
        check_onnx(Path(tmp), meta)
        return meta

    write = write_fp32 if precision == "fp32" else write_int8
    return [(artifacts.get(f"onnx-{precision}"), write)]
