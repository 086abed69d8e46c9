"""Open the exported artifact ``--model`` names with a cnnedge runtime.

What ``--model`` names (a file, a run or export folder, a reference checkpoint's name) is
resolved by :mod:`cnnedge.model_file`, as for ``cnnedge predict``; the demo takes exported files
only and uses :mod:`cnnedge.runtime` only (numpy + ai_edge_litert or onnxruntime), never
TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnedge import artifacts, model_file
from cnnedge.errors import CnnedgeError
from cnnedge.utils import quiet_stderr


def resolve_model(model, runtime: str | None = None) -> Path:
    """The exported file ``model`` names: itself, or the preferred export of a run / export
    directory (:func:`cnnedge.model_file.resolve_model` with ``exported=True``)."""
    return model_file.resolve_model(model, runtime, exported=True)


def load_model(model, runtime: str | None = None, threads: int | None = 1):
    """(path, Runner) for ``--model``, warmed up; errors are :class:`CnnedgeError` one-liners."""
    path = resolve_model(model, runtime)
    if path.suffix.lower() not in artifacts.suffixes(exported_only=True):
        raise CnnedgeError(
            f"{path}: the demo runs exported .tflite or .onnx models; export it first (cnnedge export)"
        )
    path, runner = model_file.open_model(path, runtime, threads, exported=True)
    with quiet_stderr():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate"
        warm_up(runner)
    return path, runner


def warm_up(runner) -> None:
    """One inference at the training size: applies delegates and plans memory before frame 1."""
    m = runner.metadata
    h, w = m.get("image_size") or [max(28, int(m.get("min_input_size") or 1))] * 2
    runner.predict(np.zeros((1, int(h), int(w), int(m["channels"])), np.uint8))
