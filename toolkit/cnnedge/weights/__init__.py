"""Reference checkpoints shipped with cnnedge: start points for fine-tuning on new classes.

    path("cifar10")            # .../cnnedge/weights/cifar10.keras
    info("cifar10")["test_accuracy"]
    preprocessing("cifar10")   # {"image_size": [32, 32], "class_names": [...], ...}

Each ``<name>.keras`` (float model, no optimizer state) has a ``<name>.json`` beside it that says
how to rebuild it: the recipe and command it was trained with, its classes, input size, and the
test accuracy that ``cnnedge eval`` on the shipped file reproduces. ``cnnedge train --weights
cifar10`` (recipe ``model.weights: cifar10``) starts from one; a different class count gets a
new head (see :func:`cnnedge.train.init_weights`).
"""

from __future__ import annotations

import json
from pathlib import Path

from cnnedge.errors import CnnedgeError
from cnnedge.utils import unknown

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    """The shipped reference checkpoints (those with both their .keras and .json)."""
    return sorted(p.stem for p in HERE.glob("*.json") if (HERE / f"{p.stem}.keras").is_file())


def is_reference(name) -> bool:
    return isinstance(name, str) and name.replace("-", "_") in names()


def path(name: str) -> Path:
    key = str(name).replace("-", "_")
    if key not in names():
        raise unknown("reference checkpoint", name, names())
    return HERE / f"{key}.keras"


def info(name: str) -> dict:
    p = path(name).with_suffix(".json")
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise CnnedgeError(f"cannot read {p}: {e}")


def reference_of(file) -> str | None:
    """The name of the shipped reference checkpoint ``file`` is (its .keras), or None."""
    p = Path(file).expanduser().resolve()
    return p.stem if p.parent == HERE and p.suffix == ".keras" and p.stem in names() else None


def preprocessing(name: str) -> dict:
    """How to feed a reference checkpoint, in an artifact's metadata keys: its sidecar's
    training size and class names (images were resized to that size, as ``eval`` feeds them;
    grayscale ones had a plain dark background, as a run records it)."""
    i = info(name)
    return {
        "image_size": [int(v) for v in i["image_size"]],
        "size_policy": "fixed",
        "resize": "stretch",
        "class_names": [str(c) for c in i["class_names"]],
        "background": "dark" if int(i.get("channels", 3)) == 1 else None,
    }


def weights_file(source, what: str = "model.weights") -> Path:
    """A shipped reference checkpoint's name (``cifar10``), a run directory (its best model) or a
    .keras file, as ``model.weights`` and ``distill.teachers`` take them; ``what`` names the
    setting in the error."""
    if is_reference(source) and not Path(source).exists():
        return path(source)
    from cnnedge.run import Run

    return Run.model_file(source, what)


def init_weights(model, source) -> str:
    """Copy the weights of ``source`` (see :func:`weights_file`; same architecture) into
    ``model``: the start point of a fine-tuning run. A different class count keeps the new
    ``logits`` head (freshly initialised); a grayscale model from an RGB checkpoint gets the
    first convolution summed over the colour channels. Returns what was done, in words."""
    from cnnedge.models import load_model

    f = weights_file(source)
    src = load_model(f, compile=False)
    theirs = {layer.name: layer for layer in src.layers}
    mine = [layer for layer in model.layers if layer.weights]
    if len(mine) != len([layer for layer in src.layers if layer.weights]):
        raise CnnedgeError(
            f"model.weights {source}: {src.name} does not match {model.name} "
            f"(different layers); set model.name to {src.name}"
        )
    notes = []
    for layer in mine:
        other = theirs.get(layer.name)
        if other is None:
            raise CnnedgeError(
                f"model.weights {source}: {src.name} has no layer {layer.name} "
                f"of {model.name}; set model.name to {src.name}"
            )
        ws, ours = other.get_weights(), layer.get_weights()
        if not layer.trainable:  # constants the builder sets (the in-graph 1/255 rescale)
            continue
        if [w.shape for w in ws] == [w.shape for w in ours]:
            layer.set_weights(ws)
        elif layer.name == "logits":
            notes.append(f"new head: {ws[0].shape[-1]} -> {ours[0].shape[-1]} classes")
        elif (
            len(ws) == len(ours)
            and ws[0].ndim == 4
            and ws[0].shape[2] == 3
            and ours[0].shape[2] == 1
            and ws[0].shape[:2] == ours[0].shape[:2]
            and ws[0].shape[3] == ours[0].shape[3]
        ):
            layer.set_weights([ws[0].sum(axis=2, keepdims=True), *ws[1:]])
            notes.append(f"{layer.name}: RGB filters summed to grayscale")
        else:
            raise CnnedgeError(
                f"model.weights {source}: layer {layer.name} is "
                f"{[w.shape for w in ws]} there but {[w.shape for w in ours]} "
                f"here; set model.name/model.kwargs like {src.name}'s"
            )
    return "; ".join(notes) or "all layers"
