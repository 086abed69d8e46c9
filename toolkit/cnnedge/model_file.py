"""What ``--model`` names -> the file to run and how to feed it: the one resolver of ``cnnedge
predict`` and the edge demo.

    path = resolve_model("runs/fashion_mnist/exp")          # .../export/model_int8.tflite
    path, runner = open_model("cifar10")                    # the shipped reference checkpoint

``model`` is a model file, a run directory (its preferred export, int8 TFLite first; with
``runtime``, the files that runtime runs first; else its Keras model, QAT then float), an export
folder, or the name of a shipped reference checkpoint (:mod:`cnnedge.weights`, as ``eval`` and
``--weights`` take it). A Keras model carries no metadata, so :func:`open_model` adds what its
run records (input size, resize policy, background) or, for a reference checkpoint, what its
sidecar JSON says (training size, class names).
"""

from __future__ import annotations

from pathlib import Path

from cnnedge import artifacts, weights
from cnnedge.errors import CnnedgeError
from cnnedge.utils import did_you_mean, quiet_stderr


def resolve_model(model, runtime: str | None = None, *, exported: bool = False) -> Path:
    """The model file ``model`` names (see the module docstring); ``exported``: an exported
    artifact only, never a run's Keras model (the demo runs without TensorFlow)."""
    from cnnedge.run import Run

    path = Path(model).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        if weights.is_reference(str(model)):
            return weights.path(str(model))
        close = did_you_mean(model, weights.names())
        raise CnnedgeError(
            f"no model file or run directory at {model}"
            + (f"; did you mean the reference checkpoint '{close}'?" if close else "")
        )
    for a, f in Run(path).edge_exports(runtime):
        if not runtime or runtime in a.runtimes:
            return f
    if exported:
        order = [a.filename for a in artifacts.edge_order(runtime)]
        sub = f"{Run.EXPORT}/"
        raise CnnedgeError(
            f"no exported model in {path} (looked for {sub}"
            f"{f', {sub}'.join(order)}); export the run first: cnnedge export {path}"
        )
    if runtime and runtime not in artifacts.get("keras").runtimes:  # a run's Keras files
        files = [a.filename for a in artifacts.TABLE if a.filename and runtime in a.runtimes]
        raise CnnedgeError(
            f"no file in {path} runs on {runtime} (it runs {', '.join(files)}); "
            f"export it first: cnnedge export {model}"
            + (" --format tflm" if runtime in artifacts.STATIC_ONLY else "")
        )
    if Run.is_run(path):
        run = Run(path)
        for kind in ("qat", "float"):
            if run.has(kind):
                return run.model_path(kind)
    raise CnnedgeError(
        f"no model in {path}: neither an export ({Run.EXPORT}/) nor a trained model; train or export it first"
    )


def open_model(model, runtime: str | None = None, threads: int | None = None, *, exported: bool = False):
    """(path, Runner) of :func:`resolve_model`; a Keras model's metadata completed from its
    run or its reference checkpoint's sidecar, so it is fed as it was trained."""
    from cnnedge import runtime as rt

    path = resolve_model(model, runtime, exported=exported)
    with quiet_stderr():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate"
        runner = rt.load(path, runtime=runtime, threads=threads)
    if runner.metadata.get("format") == "keras":
        runner.metadata.update(keras_preprocessing(path, len(runner.class_names)))
    return path, runner


def keras_preprocessing(path, num_classes: int) -> dict:
    """What a ``.keras``/``.h5`` file's metadata lacks: its run's preprocessing, or a shipped
    reference checkpoint's training size and class names (when the class count matches)."""
    from cnnedge.run import Run

    run = Run.of_model(path)
    if run is not None:
        return run.preprocessing()
    name = weights.reference_of(path)
    if name is None:
        return {}
    meta = weights.preprocessing(name)
    if len(meta.get("class_names") or ()) != num_classes:
        meta.pop("class_names", None)
    return meta
