"""Pick the exported artifact (file or run directory) and open it with a cnnedge runtime.

Uses :mod:`cnnedge.runtime` only (numpy + ai_edge_litert or onnxruntime), never TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError

# --model RUN_DIR: the first of these that exists (int8 TFLite is the edge artifact)
PREFERENCE = ("model_int8.tflite", "model_fp16.tflite", "model_fp32.tflite",
              "model_int8.onnx", "model_fp32.onnx")
ONNX_FIRST = ("model_int8.onnx", "model_fp32.onnx")


def resolve_model(model, runtime: str | None = None) -> Path:
    """A model file: ``model`` itself, or the preferred export in a run / export directory."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise CnnedgeError(f"no model file or run directory at {model}")
    order = PREFERENCE
    if runtime and runtime.startswith("onnxruntime"):
        order = ONNX_FIRST + tuple(n for n in PREFERENCE if n not in ONNX_FIRST)
    for d in (path / "export", path):
        for name in order:
            if (d / name).is_file():
                return d / name
    raise CnnedgeError(f"no exported model in {path} (looked for export/{', export/'.join(order)}); "
                       f"export the run first: cnnedge export {path}")


def load_model(model, runtime: str | None = None, threads: int | None = 1):
    """(path, Runner) for ``--model``; errors are :class:`CnnedgeError` one-liners."""
    from cnnedge import runtime as rt

    path = resolve_model(model, runtime)
    if path.suffix.lower() not in (".tflite", ".onnx"):
        raise CnnedgeError(f"{path}: the demo runs exported .tflite or .onnx models; export it "
                           f"first (cnnedge export)")
    with _quiet_stderr():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate"
        runner = rt.load(path, runtime=runtime, threads=threads)
        warm_up(runner)
    return path, runner


def warm_up(runner) -> None:
    """One inference at the training size: applies delegates and plans memory before frame 1."""
    m = runner.metadata
    h, w = m.get("image_size") or [max(28, int(m.get("min_input_size") or 1))] * 2
    runner.predict(np.zeros((1, int(h), int(w), int(m["channels"])), np.uint8))


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level writes to fd 2 (native runtime logs); Python exceptions still propagate."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # pytest capture, notebooks: nothing to silence
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)
