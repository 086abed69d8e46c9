"""`cnnedge eval`: accuracy, per-class accuracy and the confusion matrix of a model on a split.

    ev = evaluate_run("runs/fashion_mnist/exp", split="test")
    ev = evaluate(model, cnnedge.data.open_dataset("fashion-mnist"), split="test")
    ev = evaluate_run("runs/cifar10/exp", tta="flip")   # + the mirror image, softmax averaged

``tta="flip"`` is test-time augmentation (Ultralytics' ``augment=True``): each image and its
horizontal mirror go through the model and their softmax outputs are averaged. It costs two
forward passes and is reported as its own figure, never as the model's accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.utils import atomic_path, check_writable

TTA = ("none", "flip")


def evaluate(model, src, *, split: str = "test", batch_size: int = 256,
             take: Optional[int] = None, tta: str = "none") -> dict:
    """Run ``model`` over a split; returns accuracy, per-class accuracy and confusion counts."""
    from cnnedge import models
    from cnnedge.backend import tf

    if tta not in TTA:
        raise CnnedgeError(f"unknown tta {tta!r}; choose one of: {', '.join(TTA)}")
    k = len(src.info.class_names)
    if model.output_shape[-1] != k:
        raise CnnedgeError(f"model has {model.output_shape[-1]} outputs but dataset "
                           f"{src.info.name} has {k} classes")
    ds = src.pipeline(split, batch_size=batch_size, take=take)

    @tf.function(reduce_retracing=True)
    def logits_of(x):
        x = tf.cast(x, tf.float32)
        if tta == "flip":  # NHWC: axis 2 is the width
            return (tf.nn.softmax(model(x, training=False))
                    + tf.nn.softmax(model(tf.reverse(x, axis=[2]), training=False)))
        return model(x, training=False)

    conf = np.zeros((k, k), dtype=np.int64)
    checked = False
    with src.guard(split):  # a file that fails to decode is named, not a TensorFlow dump
        for x, y in ds:
            if not checked:
                models.check_input_size(model, tuple(x.shape[1:]))
                checked = True
            pred = tf.argmax(logits_of(x), axis=-1).numpy()
            np.add.at(conf, (y.numpy(), pred), 1)
    n = int(conf.sum())
    if n == 0:
        raise CnnedgeError(f"split '{split}' of {src.info.name} is empty")
    per_class = (np.diag(conf) / np.maximum(conf.sum(1), 1)).tolist()
    return {"split": split, "tta": tta, "n": n, "accuracy": float(np.trace(conf) / n),
            "per_class_accuracy": per_class, "confusion": conf.tolist()}


def evaluate_run(run_or_model, *, split: str = "test", dataset: Optional[str] = None,
                 data_dir: Optional[str] = None, batch_size: int = 256,
                 take: Optional[int] = None, out: Optional[Path] = None,
                 tta: str = "none") -> dict:
    """Evaluate a run directory (its best model on its recipe's data) or a .keras file."""
    from cnnedge import data, models
    from cnnedge.run import Run

    if out is not None:
        check_writable(Path(out).parent, "evaluation report")
    path = Path(run_or_model)
    if path.is_dir():
        run = Run(path).require("float", hint="is it a finished cnnedge run?")
        model_path = run.model_path("float")
        src = run.open_data(dataset, data_dir)
    elif path.is_file():
        if dataset is None:
            raise CnnedgeError("evaluating a model file needs --data <dataset name or path>")
        model_path = path
        src = data.open_dataset(dataset, data_dir=data_dir)
    else:
        raise CnnedgeError(f"no run directory or model file at {path}")
    model = models.load_model(model_path, compile=False)
    ev = evaluate(model, src, split=split, batch_size=batch_size, take=take, tta=tta)
    ev["class_names"] = list(src.info.class_names)
    ev["model"] = str(model_path)
    if out is not None:
        from cnnedge.utils import atomic_write_json

        atomic_write_json(out, ev)
        plot_confusion(ev, src.info.class_names, Path(out).with_suffix(".png"))
    return ev


def plot_confusion(ev: dict, class_names: Sequence[str], out: Path) -> Path:
    """Row-normalised confusion matrix (true class per row) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(ev["confusion"], dtype=np.float64)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if norm[i, j] >= 0.005:
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true",
           title=f"{ev['split']} accuracy {ev['accuracy']:.4f} (n={ev['n']})")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(out)


def plot_curves(rows: list, out: Path) -> Path:
    """Loss and accuracy per epoch (train and val) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ep = [int(r["epoch"]) for r in rows]

    def col(k):
        return [float(r[k]) if r.get(k) not in (None, "") else math.nan for r in rows]

    a1.plot(ep, col("loss"), "o-", label="train")
    a1.plot(ep, col("val_loss"), "o-", label="val")
    a1.set(title="loss", xlabel="epoch")
    a2.plot(ep, col("accuracy"), "o-", label="train")
    a2.plot(ep, col("val_accuracy"), "o-", label="val")
    a2.set(title="accuracy", xlabel="epoch")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(out)
