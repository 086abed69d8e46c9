"""Pick the exported artifact (file or run directory) and open it with a cnnedge runtime.

Uses :mod:`cnnedge.runtime` only (numpy + ai_edge_litert or onnxruntime), never TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnedge import artifacts
from cnnedge.errors import CnnedgeError
from cnnedge.utils import quiet_stderr


def resolve_model(model, runtime: str | None = None) -> Path:
    """A model file: ``model`` itself, or the preferred export in a run / export directory."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise CnnedgeError(f"no model file or run directory at {model}")
    from cnnedge.run import Run

    found = Run(path).edge_exports(runtime)
    if found:
        return found[0][1]
    order = [a.filename for a in artifacts.edge_order(runtime)]
    sub = f"{Run.EXPORT}/"
    raise CnnedgeError(f"no exported model in {path} (looked for {sub}{f', {sub}'.join(order)}); "
                       f"export the run first: cnnedge export {path}")


def load_model(model, runtime: str | None = None, threads: int | None = 1):
    """(path, Runner) for ``--model``; errors are :class:`CnnedgeError` one-liners."""
    from cnnedge import runtime as rt

    path = resolve_model(model, runtime)
    if path.suffix.lower() not in artifacts.suffixes(exported_only=True):
        raise CnnedgeError(f"{path}: the demo runs exported .tflite or .onnx models; export it "
                           f"first (cnnedge export)")
    with quiet_stderr():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate"
        runner = rt.load(path, runtime=runtime, threads=threads)
        warm_up(runner)
    return path, runner


def warm_up(runner) -> None:
    """One inference at the training size: applies delegates and plans memory before frame 1."""
    m = runner.metadata
    h, w = m.get("image_size") or [max(28, int(m.get("min_input_size") or 1))] * 2
    runner.predict(np.zeros((1, int(h), int(w), int(m["channels"])), np.uint8))
