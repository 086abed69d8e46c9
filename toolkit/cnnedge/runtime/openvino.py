"""The OpenVINO runtimes: ``openvino`` (exact f32) and ``openvino-bf16`` on the CPU plugin.

    r = runtime.load("model_int8.onnx", runtime="openvino", threads=1)
    r.precision                     # "f32": what OpenVINO reports it computes in

OpenVINO compiles the ONNX or TFLite file itself (``Core().compile_model``). On CPUs with bf16
support it would compute float layers in bf16 unless told otherwise, so ``openvino`` states f32
and ``openvino-bf16`` is its own runtime (its own bench row and accuracy). A model is compiled
for each static input shape it meets (faster than the dynamic-H×W model at batch 1), the
metadata's image size at load, up to :data:`MAX_STATIC_SHAPES`; further shapes run on the
dynamic model.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from cnnedge import artifacts
from cnnedge.artifacts import one_line
from cnnedge.errors import CnnedgeError
from cnnedge.runtime._registry import register_runtime
from cnnedge.runtime.base import Runner

MAX_STATIC_SHAPES = 8


def check() -> tuple[bool, str]:
    if importlib.util.find_spec("openvino") is None:
        return False, "not available: pip install openvino"
    return True, "ok"


def _message(e: Exception) -> str:
    """OpenVINO's message without its "Exception from src/...cpp:N:" source-location lines."""
    lines = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith("Exception from src/")]
    return one_line(" ".join(lines) or e)


class _OpenVINORunner(Runner):
    """Both OpenVINO runtimes; they differ in the precision hint only."""

    package = "openvino"
    precision_hint = "f32"

    def __init__(self, path, *, threads: int, **opts):
        super().__init__(path, threads=threads)
        import openvino as ov

        self.metadata = artifacts.read_metadata(self.path)
        self._core, self._ov_tensor = ov.Core(), ov.Tensor
        self._config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": self.precision_hint,
            **opts,
        }
        try:
            self._model = self._core.read_model(str(self.path))
        except RuntimeError as e:
            raise CnnedgeError(f"OpenVINO cannot read {self.path}: {_message(e)}") from e
        i, o = self._model.inputs[0], self._model.outputs[0]  # before any reshape
        m = self.metadata
        self.input_details = {
            "name": i.get_any_name(),
            "dtype": _dtype(i),
            "shape": _shape(i),
            "scale": m.get("input_scale"),
            "zero_point": m.get("input_zero_point"),
        }
        self.output_details = {
            "name": o.get_any_name(),
            "dtype": _dtype(o),
            "shape": _shape(o),
            "scale": m.get("output_scale"),
            "zero_point": m.get("output_zero_point"),
        }
        if self.input_details["dtype"] != m["input_dtype"]:
            raise CnnedgeError(
                f"{self.path}: metadata says input {m['input_dtype']} but the "
                f"model takes {self.input_details['dtype']}"
            )
        self._static: dict[tuple, object] = {}
        self._dynamic = self._compiled = None
        # compile now for the metadata's image size at batch 1 (the demo's shape), so load time
        # includes it and an op OpenVINO cannot compile fails here
        size = m.get("image_size")
        if size:
            self._request((1, *map(int, size), int(m["channels"])))
        else:
            self._request_dynamic()
        self.threads = int(self._compiled.get_property("INFERENCE_NUM_THREADS"))
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def __repr__(self):
        return super().__repr__()[:-1] + f" precision={self.precision}>"

    @property
    def providers(self) -> list[str]:
        """The device and the precision it computes in (bench's providers column)."""
        return [f"CPU:{self.precision}"]

    def _compile(self, model):
        try:
            self._compiled = self._core.compile_model(model, "CPU", self._config)
        except RuntimeError as e:  # OpenVINO raises RuntimeError for unsupported ops & co.
            raise CnnedgeError(f"OpenVINO cannot compile {self.path}: {_message(e)}") from e
        return self._compiled.create_infer_request()

    def _request_dynamic(self):
        if self._dynamic is None:
            self._model.reshape({0: self.input_details["shape"]})  # back to dynamic H×W
            self._dynamic = self._compile(self._model)
        return self._dynamic

    def _request(self, shape: tuple):
        req = self._static.get(shape)
        if req is None:
            if len(self._static) >= MAX_STATIC_SHAPES:
                return self._request_dynamic()
            try:
                self._model.reshape({0: list(shape)})
                req = self._compile(self._model)
            except (RuntimeError, CnnedgeError):  # no static model for this shape: dynamic
                req = self._request_dynamic()
            self._static[shape] = req
        return req

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        req = self._request(tuple(x.shape))
        if req is self._dynamic:
            req.set_input_tensor(self._ov_tensor(x, shared_memory=True))
        else:  # copy into the static model's own input: ~25 µs a call, infer({0: x}) ~43 µs
            req.get_input_tensor().data[...] = x
        req.infer()
        return req.get_output_tensor().data.copy()


def _dtype(port) -> str:
    return np.dtype(port.get_element_type().to_dtype()).name


def _shape(port) -> list[int]:
    return [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]


@register_runtime(
    "openvino",
    check=check,
    help="OpenVINO CPU plugin, exact f32 compute (INFERENCE_PRECISION_HINT f32), "
    "threads = INFERENCE_NUM_THREADS",
)
class OpenVINORunner(_OpenVINORunner):
    precision_hint = "f32"


@register_runtime(
    "openvino-bf16",
    check=check,
    help="OpenVINO CPU plugin computing float layers in bf16 (f32 on CPUs without bf16)",
)
class OpenVINOBf16Runner(_OpenVINORunner):
    precision_hint = "bf16"
