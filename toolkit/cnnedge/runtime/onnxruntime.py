"""The onnxruntime runtimes: ``onnxruntime`` (CPU), ``onnxruntime-cuda`` and
``onnxruntime-tensorrt`` (onnxruntime-gpu; unavailable, with the install hint, without it)."""

from __future__ import annotations

import importlib.util

import numpy as np

from cnnedge import artifacts
from cnnedge.artifacts import check_metadata, one_line
from cnnedge.errors import CnnedgeError
from cnnedge.runtime._registry import register_runtime
from cnnedge.runtime.base import Runner

_GPU_HINT = "not available: pip install onnxruntime-gpu (and a CUDA GPU)"


def _ort_check(provider: str | None):
    def check() -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, ("not available: pip install onnxruntime" if provider is None else _GPU_HINT)
        if provider is None:
            return True, "ok"
        import onnxruntime as ort

        if provider not in ort.get_available_providers():
            return False, _GPU_HINT + f" ({provider} is not in onnxruntime's providers)"
        return True, "ok"

    return check


class _OrtRunner(Runner):
    package = "onnxruntime"

    def __init__(self, path, *, threads: int, optimized_model_path=None, **opts):
        super().__init__(path, threads=threads)
        import onnxruntime as ort

        self.metadata = check_metadata(artifacts.onnx_metadata(self.path), self.path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if optimized_model_path:
            so.optimized_model_filepath = str(optimized_model_path)
        providers = self._providers(**opts)
        try:
            self._sess = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
            raise CnnedgeError(f"onnxruntime cannot load {self.path}: {one_line(e)}") from e
        i, o = self._sess.get_inputs()[0], self._sess.get_outputs()[0]
        self._in, self._out = i.name, o.name
        self.input_details = {
            "name": i.name,
            "dtype": _ort_type(i.type),
            "shape": [d if isinstance(d, int) else -1 for d in i.shape],
            "scale": self.metadata.get("input_scale"),
            "zero_point": self.metadata.get("input_zero_point"),
        }
        self.output_details = {
            "name": o.name,
            "dtype": _ort_type(o.type),
            "shape": [d if isinstance(d, int) else -1 for d in o.shape],
            "scale": self.metadata.get("output_scale"),
            "zero_point": self.metadata.get("output_zero_point"),
        }
        if self.input_details["dtype"] != self.metadata["input_dtype"]:
            raise CnnedgeError(
                f"{self.path}: metadata says input {self.metadata['input_dtype']}"
                f" but the model takes {self.input_details['dtype']}"
            )

    @property
    def providers(self) -> list[str]:
        return self._sess.get_providers()

    def _providers(self, **opts):
        return ["CPUExecutionProvider"]

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run([self._out], {self._in: x})[0]


def _ort_type(t: str) -> str:
    return {
        "tensor(float)": "float32",
        "tensor(float16)": "float16",
        "tensor(int8)": "int8",
        "tensor(uint8)": "uint8",
    }.get(t, t)


@register_runtime(
    "onnxruntime",
    check=_ort_check(None),
    help="onnxruntime CPUExecutionProvider (intra-op threads = threads)",
)
class OrtCpuRunner(_OrtRunner):
    pass


@register_runtime(
    "onnxruntime-cuda",
    check=_ort_check("CUDAExecutionProvider"),
    help="onnxruntime-gpu CUDAExecutionProvider (CPU fallback for other nodes)",
)
class OrtCudaRunner(_OrtRunner):
    provider = "CUDAExecutionProvider"

    def _providers(self, device_id: int = 0, **opts):
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]


@register_runtime(
    "onnxruntime-tensorrt",
    check=_ort_check("TensorrtExecutionProvider"),
    help="onnxruntime-gpu TensorRT provider (int8 enabled for int8 models, "
    "shape profiles from the metadata image size)",
)
class OrtTensorRTRunner(_OrtRunner):
    provider = "TensorrtExecutionProvider"

    def _providers(self, device_id: int = 0, max_batch: int = 256, cache_dir=None, **opts):
        m = self.metadata
        c = int(m["channels"])
        h, w = m.get("image_size") or [32, 32]
        lo = int(m.get("min_input_size") or 1) if m.get("dynamic_hw") else h
        lo_w = lo if m.get("dynamic_hw") else w
        hi_h, hi_w = (4 * h, 4 * w) if m.get("dynamic_hw") else (h, w)
        name = m.get("input_name", "image")
        trt = {
            "device_id": device_id,
            "trt_int8_enable": m["precision"] == "int8",
            "trt_fp16_enable": m["precision"] in ("fp16", "int8"),
            "trt_profile_min_shapes": f"{name}:1x{lo}x{lo_w}x{c}",
            "trt_profile_opt_shapes": f"{name}:1x{h}x{w}x{c}",
            "trt_profile_max_shapes": f"{name}:{max_batch}x{hi_h}x{hi_w}x{c}",
        }
        if cache_dir:
            trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
        return [
            ("TensorrtExecutionProvider", trt),
            ("CUDAExecutionProvider", {"device_id": device_id}),
            "CPUExecutionProvider",
        ]
