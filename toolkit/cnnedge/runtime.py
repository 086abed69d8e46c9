"""The runtimes that execute artifacts, registered by name and looked up by name.

    r = load("runs/fashion_mnist/exp/export/model_int8.tflite")          # runtime "litert"
    r = load("model_int8.onnx", runtime="onnxruntime", threads=1)
    logits = r.predict(images_uint8)          # [N, H, W, C] pixels 0..255 -> float32 [N, K]
    read_metadata("model_int8.tflite")["class_names"]

Each runtime is one :class:`Runner` subclass (``@register_runtime``); which files it runs is
said by the artifact table (:mod:`cnnedge.artifacts`). Preprocessing follows the metadata every
artifact carries: uint8 pixel ``p`` becomes ``round(p / input_scale) + input_zero_point`` (for
int8 TFLite scale 1.0 / zero point -128, i.e. ``p - 128`` exactly). Only numpy and the runtime's
own package are needed (TensorFlow by ``"keras"`` alone), so the edge demo runs on a device
without TensorFlow; :func:`runtime_status` says why a runtime is unavailable, what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnedge import artifacts
from cnnedge.artifacts import check_metadata, one_line, read_metadata  # noqa: F401 (re-export)
from cnnedge.errors import CnnedgeError
from cnnedge.utils import unknown


# ------------------------------------------------------------------------------- registry
@dataclass
class _RuntimeSpec:
    name: str
    cls: type
    check: Callable[[], tuple[bool, str]]
    help: str
    modes: dict = field(default_factory=dict)  # bench name -> mode (keras: function, predict)


_RUNTIMES: dict[str, _RuntimeSpec] = {}


def register_runtime(name: str, *, check: Callable, help: str = "", modes=None):
    """Class decorator: register a :class:`Runner` subclass as runtime ``name``.

    ``check()`` returns (available, reason/install hint); the artifact table says which files it
    runs; ``modes`` maps bench row names to ways of calling it (default: one row, ``name``).
    """
    def deco(cls):
        if name in _RUNTIMES:
            raise CnnedgeError(f"runtime '{name}' is already registered")
        cls.runtime = name
        _RUNTIMES[name] = _RuntimeSpec(name, cls, check, help, dict(modes or {name: None}))
        return cls

    return deco


def list_runtimes() -> list[str]:
    """Every registered runtime name (available or not)."""
    return sorted(_RUNTIMES)


def _spec(name: str) -> _RuntimeSpec:
    if name not in _RUNTIMES:
        raise unknown("runtime", name, list_runtimes())
    return _RUNTIMES[name]


def runtime_class(name: str) -> type:
    return _spec(name).cls


def modes(name: str) -> dict:
    """Bench row names of runtime ``name`` and the mode each one calls (None: the default)."""
    return dict(_spec(name).modes)


def runtime_status(name: str) -> tuple[bool, str]:
    """(available, "ok" or why not and what to install)."""
    spec = _spec(name)
    try:
        return spec.check()
    except Exception as e:  # noqa: BLE001 - a broken install must not crash `cnnedge bench`
        return False, f"not available: {type(e).__name__}: {one_line(e)}"


def available_runtimes() -> list[str]:
    return [n for n in list_runtimes() if runtime_status(n)[0]]


def runtime_help(name: str) -> str:
    return _spec(name).help


def runtimes_for(path) -> list[str]:
    """Registered runtimes that can execute the file ``path`` (artifact table), default first."""
    return [n for n in artifacts.runtimes_for(path) if n in _RUNTIMES]


def default_runtime(path) -> str:
    return artifacts.lookup(path).runtimes[0]


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def load(path, runtime: str | None = None, threads: int | None = None, mode: str | None = None,
         **opts) -> Runner:
    """Open an artifact (or a .keras/.h5 model) with ``runtime`` (default: the artifact table's
    first for the file); ``mode``: how a runtime with modes is called (keras: function, predict)."""
    path = Path(path)
    name = runtime or default_runtime(path)
    spec = _spec(name)
    if not path.exists():
        raise CnnedgeError(f"no model file at {path}")
    ext = path.suffix.lower()
    if name not in runtimes_for(path):
        raise CnnedgeError(f"runtime '{name}' cannot run {ext} files ({path}); " + (
            "it needs a fixed input size: cnnedge export RUN --format tflm" if name in
            artifacts.STATIC_ONLY else f"runtimes for {ext}: {', '.join(runtimes_for(path))}"))
    ok, reason = runtime_status(name)
    if not ok:
        raise CnnedgeError(f"runtime '{name}' is {reason}")
    if threads is not None and int(threads) < 1:
        raise CnnedgeError(f"threads must be >= 1, got {threads}")
    threads = int(threads) if threads else default_threads()
    if mode is not None:
        if mode not in spec.modes.values():
            raise CnnedgeError(f"runtime '{name}' has no mode {mode!r}")
        opts["mode"] = mode
    return spec.cls(path, threads=threads, **opts)


# --------------------------------------------------------------------------------- runners
_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8}


class Runner:
    """One loaded model. ``predict(uint8 [N,H,W,C]) -> float32 logits [N,K]``.

    ``prepare`` does the preprocessing the metadata prescribes and checks size/channels,
    ``run_prepared`` only runs the model on an input already in the artifact's dtype (what a
    benchmark times) and returns its raw output, ``postprocess`` dequantizes that to logits.
    """

    runtime = "?"
    package = ""  # the module a fresh process imports first (bench reports its import time)
    provider = None  # onnxruntime execution provider the runner must get, else it is unavailable

    @classmethod
    def import_package(cls, threads: int) -> None:
        """Import the runtime's package (and set process-wide thread settings)."""
        if cls.package:
            importlib.import_module(cls.package)

    def __init__(self, path, *, threads: int, **opts):
        self.path = Path(path)
        self.threads = int(threads)
        self.metadata: dict = {}
        self.input_details: dict = {}
        self.output_details: dict = {}

    def __repr__(self):
        m = self.metadata
        return (f"<{type(self).__name__} {self.path.name} runtime={self.runtime} "
                f"{m.get('format')}/{m.get('precision')} threads={self.threads}>")

    # ------------------------------------------------------------------ preprocessing
    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.get("class_names") or [])

    def check_shape(self, shape) -> None:
        m = self.metadata
        _, h, w, c = shape
        want_c = int(m["channels"])
        if c != want_c:
            raise CnnedgeError(f"model {self.path.name} expects {want_c} channel"
                               f"{'s' if want_c != 1 else ''}, got {c}")
        if m.get("dynamic_hw", True):
            k = int(m.get("min_input_size") or 1)
            if h < k or w < k:
                raise CnnedgeError(f"input {h}×{w} is smaller than this model's minimum {k}×{k} "
                                   f"({self.path.name}); resize images to at least {k}×{k}")
        elif m.get("image_size") and (h, w) != tuple(m["image_size"]):
            fh, fw = m["image_size"]
            raise CnnedgeError(f"input {h}×{w} does not match {self.path.name}'s fixed input "
                               f"size {fh}×{fw}; resize images to {fh}×{fw}")

    def _as_images(self, images) -> np.ndarray:
        x = np.asarray(images)
        if x.ndim == 3 and int(self.metadata.get("channels", 0)) == 1 and x.shape[-1] != 1:
            x = x[..., None]  # grayscale (N, H, W)
        if x.ndim != 4:
            raise CnnedgeError(f"expected images of shape (N, H, W, C), got {x.shape}")
        if x.shape[0] == 0:
            raise CnnedgeError("no images given (batch of 0)")
        self.check_shape(x.shape)
        return x

    def prepare(self, images) -> np.ndarray:
        """uint8 pixels (N, H, W, C) -> the artifact's input tensor (dtype, quantization)."""
        x = self._as_images(images)
        m = self.metadata
        dtype = m["input_dtype"]
        if dtype in ("float32", "float16"):
            return np.ascontiguousarray(x, dtype=_NP_DTYPES[dtype])
        if dtype not in ("int8", "uint8"):
            raise CnnedgeError(f"{self.path}: unsupported input dtype {dtype!r} in metadata")
        scale = float(m.get("input_scale") or 1.0)
        zp = int(m.get("input_zero_point") or 0)
        info = np.iinfo(_NP_DTYPES[dtype])
        if scale == 1.0 and x.dtype == np.uint8:
            q = x.astype(np.int16) + zp  # exact: p - 128 for int8, p for uint8
        else:
            q = np.rint(x.astype(np.float32) / scale) + zp
        return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(_NP_DTYPES[dtype]))

    # ------------------------------------------------------------------ running
    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        """Raw output -> float32 logits (dequantized with the output scale/zero point)."""
        scale, zp = self.output_details.get("scale"), self.output_details.get("zero_point")
        if np.issubdtype(raw.dtype, np.integer) and scale:
            return ((raw.astype(np.float32) - float(zp or 0)) * float(scale)).astype(np.float32)
        return np.asarray(raw, dtype=np.float32)

    def predict(self, images, batch_size: int | None = None) -> np.ndarray:
        x = self.prepare(images)
        if not batch_size or batch_size >= len(x):
            return self.postprocess(self.run_prepared(x))
        return np.concatenate([self.postprocess(self.run_prepared(x[i:i + batch_size]))
                               for i in range(0, len(x), int(batch_size))])

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------ LiteRT
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
        resolver = (OpResolverType.AUTO if self.use_xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        from cnnedge.utils import quiet_stderr

        try:  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2
            with quiet_stderr():
                self._it = Interpreter(model_content=buf, num_threads=self.threads,
                                       experimental_op_resolver_type=resolver, **opts)
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise CnnedgeError(f"LiteRT cannot load {self.path}: {one_line(e)}") from e
        i, o = self._it.get_input_details()[0], self._it.get_output_details()[0]
        self._in, self._out = i["index"], o["index"]
        self._shape = tuple(int(v) for v in i["shape"])
        self.input_details = {"name": i["name"], "dtype": np.dtype(i["dtype"]).name,
                              "shape": [int(v) for v in i["shape_signature"]],
                              "scale": float(i["quantization"][0]) or None,
                              "zero_point": int(i["quantization"][1])}
        self.output_details = {"name": o["name"], "dtype": np.dtype(o["dtype"]).name,
                               "shape": [int(v) for v in o["shape_signature"]],
                               "scale": float(o["quantization"][0]) or None,
                               "zero_point": int(o["quantization"][1])}
        if self.input_details["dtype"] != self.metadata["input_dtype"]:
            raise CnnedgeError(f"{self.path}: metadata says input {self.metadata['input_dtype']}"
                               f" but the model takes {self.input_details['dtype']}")

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        if x.shape != self._shape:  # resize + re-plan only when the shape changes
            self._it.resize_tensor_input(self._in, list(x.shape), strict=False)
            self._it.allocate_tensors()
            self._shape = tuple(x.shape)
        self._it.set_tensor(self._in, x)
        self._it.invoke()
        return self._it.get_tensor(self._out).copy()


@register_runtime("litert", check=_check_litert,
                  help="LiteRT (ai_edge_litert) interpreter with the default XNNPACK delegate")
class LiteRTRunner(_LiteRTRunner):
    use_xnnpack = True


@register_runtime("litert-ref", check=_check_litert,
                  help="LiteRT builtin kernels without default delegates (XNNPACK off)")
class LiteRTNoDelegateRunner(_LiteRTRunner):
    use_xnnpack = False


# ------------------------------------------------------------------------------ onnxruntime
_GPU_HINT = "not available: pip install onnxruntime-gpu (and a CUDA GPU)"


def _ort_check(provider: str | None):
    def check() -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, ("not available: pip install onnxruntime" if provider is None
                           else _GPU_HINT)
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
        self.input_details = {"name": i.name, "dtype": _ort_type(i.type),
                              "shape": [d if isinstance(d, int) else -1 for d in i.shape],
                              "scale": self.metadata.get("input_scale"),
                              "zero_point": self.metadata.get("input_zero_point")}
        self.output_details = {"name": o.name, "dtype": _ort_type(o.type),
                               "shape": [d if isinstance(d, int) else -1 for d in o.shape],
                               "scale": self.metadata.get("output_scale"),
                               "zero_point": self.metadata.get("output_zero_point")}
        if self.input_details["dtype"] != self.metadata["input_dtype"]:
            raise CnnedgeError(f"{self.path}: metadata says input {self.metadata['input_dtype']}"
                               f" but the model takes {self.input_details['dtype']}")

    @property
    def providers(self) -> list[str]:
        return self._sess.get_providers()

    def _providers(self, **opts):
        return ["CPUExecutionProvider"]

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run([self._out], {self._in: x})[0]


def _ort_type(t: str) -> str:
    return {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
            "tensor(uint8)": "uint8"}.get(t, t)


@register_runtime("onnxruntime", check=_ort_check(None),
                  help="onnxruntime CPUExecutionProvider (intra-op threads = threads)")
class OrtCpuRunner(_OrtRunner):
    pass


@register_runtime("onnxruntime-cuda", check=_ort_check("CUDAExecutionProvider"),
                  help="onnxruntime-gpu CUDAExecutionProvider (CPU fallback for other nodes)")
class OrtCudaRunner(_OrtRunner):
    provider = "CUDAExecutionProvider"
    def _providers(self, device_id: int = 0, **opts):
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]


@register_runtime("onnxruntime-tensorrt", check=_ort_check("TensorrtExecutionProvider"),
                  help="onnxruntime-gpu TensorRT provider (int8 enabled for int8 models, "
                       "shape profiles from the metadata image size)")
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
        trt = {"device_id": device_id,
               "trt_int8_enable": m["precision"] == "int8",
               "trt_fp16_enable": m["precision"] in ("fp16", "int8"),
               "trt_profile_min_shapes": f"{name}:1x{lo}x{lo_w}x{c}",
               "trt_profile_opt_shapes": f"{name}:1x{h}x{w}x{c}",
               "trt_profile_max_shapes": f"{name}:{max_batch}x{hi_h}x{hi_w}x{c}"}
        if cache_dir:
            trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
        return [("TensorrtExecutionProvider", trt),
                ("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]


# ------------------------------------------------------------------------------------- Keras
def _check_keras() -> tuple[bool, str]:
    for mod, pip in (("tensorflow", "tensorflow"), ("tf_keras", "tf-keras")):
        if importlib.util.find_spec(mod) is None:
            return False, f"not available: pip install {pip}"
    return True, "ok"


@register_runtime("keras", check=_check_keras,
                  help="the training model itself (TensorFlow): the compiled call "
                       "(keras-tf.function) or model.predict (keras-predict)",
                  modes={"keras-tf.function": "function", "keras-predict": "predict"})
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
            "format": "keras", "precision": "fp32", "class_names": list(class_names),
            "input_layout": "NHWC", "channels": int(self.model.input_shape[-1]),
            "input_dtype": "float32", "input_scale": None, "input_zero_point": None,
            "pixel_range": [0, 255], "image_size": None if dynamic else list(fixed),
            "dynamic_hw": dynamic, "min_input_size": models.min_input_size(self.model),
        }
        self.input_details = {"name": self.model.input_names[0], "dtype": "float32",
                              "shape": [-1 if d is None else int(d)
                                        for d in self.model.input_shape]}
        self.output_details = {"name": self.model.output_names[0], "dtype": "float32",
                               "shape": [-1, k], "scale": None, "zero_point": None}
        model = self.model

        @tf.function(reduce_retracing=True)
        def call(x):
            return model(x, training=False)

        self._call = call

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        if self.mode == "predict":  # what users call; slower than the compiled call
            return self.model.predict(x, batch_size=len(x), verbose=0)
        return self._call(x).numpy()
from cnnedge import runtime_openvino, runtime_tflm  # noqa: E402,I001 - they need Runner
for _extra in (runtime_openvino, runtime_tflm):  # openvino, openvino-bf16, tflm (no import cycle)
    _extra.register(Runner, register_runtime)
