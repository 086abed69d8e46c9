"""The LiteRT runtimes: ``litert`` (the interpreter with its default XNNPACK delegate) and
``litert-ref`` (builtin kernels, no default delegates)."""

from __future__ import annotations

import importlib.util

import numpy as np

from cnnedge import artifacts
from cnnedge.artifacts import check_metadata, one_line
from cnnedge.errors import CnnedgeError
from cnnedge.runtime._registry import register_runtime
from cnnedge.runtime.base import Runner
from cnnedge.utils import quiet_stderr


def _check_litert() -> tuple[bool, str]:
    if importlib.util.find_spec("ai_edge_litert") is None:
        return False, "not available: pip install ai-edge-litert"
    return True, "ok"


class _LiteRTRunner(Runner):
    use_xnnpack = True
    package = "ai_edge_litert.interpreter"

    def __init__(self, path, *, threads: int, **opts):
        super().__init__(path, threads=threads)
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        buf = self.path.read_bytes()
        self.metadata = check_metadata(artifacts.tflite_metadata(buf, self.path), self.path)
        resolver = (
            OpResolverType.AUTO if self.use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        try:  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2
            with quiet_stderr():
                self._it = Interpreter(
                    model_content=buf,
                    num_threads=self.threads,
                    experimental_op_resolver_type=resolver,
                    **opts,
                )
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise CnnedgeError(f"LiteRT cannot load {self.path}: {one_line(e)}") from e
        i, o = self._it.get_input_details()[0], self._it.get_output_details()[0]
        self._in, self._out = i["index"], o["index"]
        self._shape = tuple(int(v) for v in i["shape"])
        self.input_details = {
            "name": i["name"],
            "dtype": np.dtype(i["dtype"]).name,
            "shape": [int(v) for v in i["shape_signature"]],
            "scale": float(i["quantization"][0]) or None,
            "zero_point": int(i["quantization"][1]),
        }
        self.output_details = {
            "name": o["name"],
            "dtype": np.dtype(o["dtype"]).name,
            "shape": [int(v) for v in o["shape_signature"]],
            "scale": float(o["quantization"][0]) or None,
            "zero_point": int(o["quantization"][1]),
        }
        if self.input_details["dtype"] != self.metadata["input_dtype"]:
            raise CnnedgeError(
                f"{self.path}: metadata says input {self.metadata['input_dtype']}"
                f" but the model takes {self.input_details['dtype']}"
            )

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        if x.shape != self._shape:  # resize + re-plan only when the shape changes
            self._it.resize_tensor_input(self._in, list(x.shape), strict=False)
            self._it.allocate_tensors()
            self._shape = tuple(x.shape)
        self._it.set_tensor(self._in, x)
        self._it.invoke()
        return self._it.get_tensor(self._out).copy()


@register_runtime(
    "litert",
    check=_check_litert,
    help="LiteRT (ai_edge_litert) interpreter with the default XNNPACK delegate",
)
class LiteRTRunner(_LiteRTRunner):
    use_xnnpack = True


@register_runtime(
    "litert-ref", check=_check_litert, help="LiteRT builtin kernels without default delegates (XNNPACK off)"
)
class LiteRTNoDelegateRunner(_LiteRTRunner):
    use_xnnpack = False
