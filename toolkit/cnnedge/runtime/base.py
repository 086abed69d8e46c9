"""The base class of every runner: preprocessing by the artifact's metadata, batching,
dequantizing. A runtime implements ``__init__`` (load, fill ``metadata`` and the tensor details)
and ``run_prepared``."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError

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
        return (
            f"<{type(self).__name__} {self.path.name} runtime={self.runtime} "
            f"{m.get('format')}/{m.get('precision')} threads={self.threads}>"
        )

    # ------------------------------------------------------------------ preprocessing
    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.get("class_names") or [])

    def check_shape(self, shape) -> None:
        m = self.metadata
        _, h, w, c = shape
        want_c = int(m["channels"])
        if c != want_c:
            raise CnnedgeError(
                f"model {self.path.name} expects {want_c} channel{'s' if want_c != 1 else ''}, got {c}"
            )
        if m.get("dynamic_hw", True):
            k = int(m.get("min_input_size") or 1)
            if h < k or w < k:
                raise CnnedgeError(
                    f"input {h}×{w} is smaller than this model's minimum {k}×{k} "
                    f"({self.path.name}); resize images to at least {k}×{k}"
                )
        elif m.get("image_size") and (h, w) != tuple(m["image_size"]):
            fh, fw = m["image_size"]
            raise CnnedgeError(
                f"input {h}×{w} does not match {self.path.name}'s fixed input "
                f"size {fh}×{fw}; resize images to {fh}×{fw}"
            )

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
        return np.concatenate(
            [
                self.postprocess(self.run_prepared(x[i : i + batch_size]))
                for i in range(0, len(x), int(batch_size))
            ]
        )

    def close(self) -> None:
        pass
