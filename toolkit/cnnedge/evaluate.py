"""`cnnedge eval`: accuracy, per-class accuracy and the confusion matrix of a model on a split.

    ev = evaluate_run("runs/fashion_mnist/exp", split="test")   # ev.accuracy, ev.to_dict()
    ev = evaluate(model, cnnedge.data.open_dataset("fashion-mnist"), split="test")
    ev = evaluate_run("runs/cifar10/exp", tta="flip")   # + the mirror image, softmax averaged

``tta="flip"`` is test-time augmentation (Ultralytics' ``augment=True``): each image and its
horizontal mirror go through the model and their softmax outputs are averaged. It costs two
forward passes and is reported as its own figure, never as the model's accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.files import atomic_path, check_writable
from cnnedge.utils import unknown

TTA = ("none", "flip")


@dataclass
class Evaluation:
    """A model's accuracy on a split. :func:`evaluate_run` also names what was scored (``data``,
    ``class_names``, ``model``); :meth:`to_dict` is the eval JSON (``cnnedge eval -o``)."""

    split: str  # the split scored ("all": a flat class folder given as the data)
    tta: str
    n: int  # images
    accuracy: float
    per_class_accuracy: list  # one fraction per class, in class order
    confusion: list  # counts, a row per true class
    data: Optional[str] = None
    class_names: Optional[list] = None
    model: Optional[str] = None

    def to_dict(self) -> dict:
        named = ("data", "class_names", "model")  # only where evaluate_run set them
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in named or getattr(self, f.name) is not None
        }


def evaluate(
    model, src, *, split: str = "test", batch_size: int = 256, take: Optional[int] = None, tta: str = "none"
) -> Evaluation:
    """Run ``model`` over a split: accuracy, per-class accuracy and confusion counts.

    Args:
        model: A Keras model with one logit per class of ``src``.
        src: A dataset (:func:`cnnedge.data.open_dataset`).
        split: The split to score.
        batch_size: Images per forward pass.
        take: Score a seeded class-stratified sample of this many images (default: all).
        tta: ``none``, or ``flip``: each image and its mirror, softmax averaged.

    Returns:
        An :class:`Evaluation`.
    """
    from cnnedge import models
    from cnnedge.backend import tf

    if tta not in TTA:
        raise unknown("tta", tta, TTA)
    k = len(src.info.class_names)
    if model.output_shape[-1] != k:
        raise CnnedgeError(
            f"model has {model.output_shape[-1]} outputs but dataset {src.info.name} has {k} classes"
        )
    ds = src.pipeline(split, batch_size=batch_size, take=take)

    @tf.function(reduce_retracing=True)
    def logits_of(x):
        x = tf.cast(x, tf.float32)
        if tta == "flip":  # NHWC: axis 2 is the width
            return tf.nn.softmax(model(x, training=False)) + tf.nn.softmax(
                model(tf.reverse(x, axis=[2]), training=False)
            )
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
    return Evaluation(
        split=split,
        tta=tta,
        n=n,
        accuracy=float(np.trace(conf) / n),
        per_class_accuracy=per_class,
        confusion=conf.tolist(),
    )


def evaluate_run(
    run_or_model,
    *,
    split: Optional[str] = None,
    dataset: Optional[str] = None,
    data_dir: Optional[str] = None,
    batch_size: int = 256,
    take: Optional[int] = None,
    out: Optional[Path] = None,
    tta: str = "none",
    image_size=None,
) -> Evaluation:
    """Evaluate a run directory (its best model on its recipe's data, or on ``dataset``), a
    .keras file or a shipped reference checkpoint's name.

    Args:
        run_or_model: A run directory, a ``.keras`` file or a reference checkpoint's name
            (``cifar10``, ``fashion_mnist``).
        split: The split to score; default: the run's evaluation split (test, else val). A
            ``dataset`` that is one flat folder of class folders is scored whole ("all").
        dataset: A dataset name or folder to score instead of the run's own (needed for a
            model file).
        data_dir: Folder searched first for the dataset's files.
        batch_size: Images per forward pass.
        take: Score a seeded class-stratified sample of this many images (default: all).
        out: Write the evaluation as JSON here, and its confusion matrix beside it (.png).
        tta: ``none``, or ``flip``: each image and its mirror, softmax averaged.
        image_size: (H, W) a model file's images are resized to (a run uses its recipe's).

    Returns:
        An :class:`Evaluation` naming the data, class names and model file.
    """
    from cnnedge import data, models
    from cnnedge.run import Run, eval_split

    if out is not None:
        check_writable(Path(out).parent, "evaluation report")
    from cnnedge import weights

    path = Path(run_or_model)
    if not path.exists() and weights.is_reference(str(run_or_model)):
        path = weights.path(str(run_or_model))  # a shipped reference checkpoint by name
    names = None
    if path.is_dir():
        run = Run(path).require("float", hint="is it a finished cnnedge run?")
        model_path = run.model_path("float")
        src = run.open_data(dataset, data_dir)
        names = run.class_names
    elif path.is_file():
        if dataset is None:
            raise CnnedgeError("evaluating a model file needs --data <dataset name or path>")
        model_path = path
        src = data.open_dataset(dataset, data_dir=data_dir, image_size=image_size)
    else:
        raise CnnedgeError(f"no run directory or model file at {path}")
    if names and list(src.info.class_names) != list(names):
        extra = sorted(set(src.info.class_names) - set(names))
        missing = sorted(set(names) - set(src.info.class_names))
        raise CnnedgeError(
            f"{dataset or src.info.source} has classes {list(src.info.class_names)}"
            f" but the model was trained on {list(names)}"
            f"{f'; not in the model: {extra}' if extra else ''}"
            f"{f'; missing: {missing}' if missing else ''}"
        )
    label = None
    if split is None:
        split = eval_split(src) if not (dataset and src.splits == ("train",)) else "train"
    if dataset and src.splits == ("train",) and split in ("train", "test", "all"):
        split, label = "train", "all"  # a flat class folder: all of it is the split to score
    model = models.load_model(model_path, compile=False)
    if not path.is_dir():  # a model file scores any data as the channels it takes (grey / RGB)
        src.with_channels(int(model.input_shape[-1]))
    ev = evaluate(model, src, split=split, batch_size=batch_size, take=take, tta=tta)
    if label:
        ev.split = label
    ev.data = str(dataset or src.info.source)
    ev.class_names = list(src.info.class_names)
    ev.model = str(model_path)
    if out is not None:
        from cnnedge.files import atomic_write_json

        atomic_write_json(out, ev.to_dict())
        plot_confusion(ev, src.info.class_names, Path(out).with_suffix(".png"))
    return ev


def plot_confusion(ev: Evaluation, class_names: Sequence[str], out: Path) -> Path:
    """Row-normalised confusion matrix (true class per row) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(ev.confusion, dtype=np.float64)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if norm[i, j] >= 0.005:
                ax.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=f"{ev.split} accuracy {ev.accuracy:.4f} (n={ev.n})")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(out)


def plot_curves(rows: list, out: Path, qat_rows: Optional[list] = None) -> Path:
    """Loss and accuracy per epoch (train and val, then any QAT epochs) as a PNG."""
    fig = curves_figure(rows, qat_rows)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    return Path(out)


def curves_figure(rows: list, qat_rows: Optional[list] = None):
    """The figure `plot_curves` saves: float epochs, then QAT epochs in a shaded span.

    Marked artists carry a gid ("best", "qat", "clipped") so that tests can find them.
    """
    # A bare Figure, not pyplot: no global state or backend switch, nothing to close.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    qat_rows = qat_rows or []

    def col(rs, k):
        return np.array([float(r[k]) if r.get(k) not in (None, "") else math.nan for r in rs])

    ep = np.array([int(r["epoch"]) for r in rows])
    last = int(ep.max()) if len(ep) else 0
    # QAT epochs count from 1 in qat_metrics.csv; they continue the float axis here.
    qx = last + np.arange(1, len(qat_rows) + 1)
    fig = Figure(figsize=(10, 3.8))
    a1, a2 = fig.subplots(1, 2)
    series = {}  # key -> (float values, QAT values)
    for a, keys in ((a1, ("loss", "val_loss")), (a2, ("accuracy", "val_accuracy"))):
        for c, k in zip(("C0", "C1"), keys):
            y, qy = col(rows, k), col(qat_rows, k)
            series[k] = (y, qy)
            label = "val" if k.startswith("val_") else "train"
            if np.isfinite(y).any():
                a.plot(ep, y, "o-", color=c, ms=4, label=label)
            if np.isfinite(qy).any():  # squares: fake-quantised model, not the float one
                a.plot(qx, qy, "s-", color=c, ms=4, label=None if np.isfinite(y).any() else f"{label} (QAT)")

    if len(qat_rows):
        for a in (a1, a2):
            a.axvspan(last + 0.5, qx[-1] + 0.5, color="0.5", alpha=0.15, lw=0, gid="qat")
            # Above the axes: inside, the label sat on the QAT points of one panel or the other.
            a.text(
                (last + 0.5 + qx[-1] + 0.5) / 2,
                1.01,
                "QAT",
                ha="center",
                va="bottom",
                fontsize=9,
                color="0.3",
                transform=a.get_xaxis_transform(),
            )

    _mark_best(a1, a2, ep, series)
    _clip_loss(a1, ep, qx, series)

    a1.set(title="loss", xlabel="epoch")
    a2.set(title="accuracy", xlabel="epoch")
    a2.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    for a in (a1, a2):
        a.set_xlim(0.5, (qx[-1] if len(qat_rows) else max(last, 1)) + 0.5)
        # No epoch 2.5; min_n_ticks=1 keeps a one-epoch run at tick 1, not 0.5, 0.6, ...
        a.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _mark_best(a1, a2, ep, series) -> None:
    """The best float epoch: what best.keras holds (chosen on val, on train without a val
    split), a dashed line on both panels and a star on the accuracy curve."""
    for k, name in (("val_accuracy", "val"), ("accuracy", "train")):
        acc = series[k][0]
        if np.isfinite(acc).any():
            i = int(np.nanargmax(acc))
            for a in (a1, a2):
                a.axvline(ep[i], ls="--", color="0.4", lw=1, gid="best")
            # Labelled through the legend: a text next to the star sat on the curves.
            a2.plot(
                ep[i],
                acc[i],
                "*",
                color="C3",
                ms=13,
                mec="white",
                zorder=5,
                label=f"best: epoch {ep[i]}, {name} acc {100 * acc[i]:.1f} %",
            )
            break


def _clip_loss(a1, ep, qx, series) -> None:
    """One diverging epoch (loss 31.7 among ~1.0) would flatten every other point. Clip rather
    than log-scale: a log axis still spends most of its height on the outlier and makes the
    small late-training differences that matter hard to read. The limit is the largest loss
    within 5x the median plus headroom: on synthetic runs 3x the 90th percentile kept half
    the axis empty, and missed the outlier in runs of <= 5 epochs or with >10 % bad epochs."""
    loss = [v for k in ("loss", "val_loss") for s in series[k] for v in s]
    fin = np.array([v for v in loss if np.isfinite(v)])
    if fin.size and np.median(fin) > 0 and (np.isposinf(loss).any() or fin.max() > 5 * np.median(fin)):
        keep = fin[fin <= 5 * np.median(fin)]
        lo, hi = keep.min(), keep.max()
        span = (hi - lo) or hi or 1.0
        top = hi + 0.12 * span
        a1.set_ylim(lo - 0.05 * span, top)
        above = []
        for c, k in zip(("C0", "C1"), ("loss", "val_loss")):
            for x, v in ((x, v) for xs, s in zip((ep, qx), series[k]) for x, v in zip(xs, s)):
                if v > top:  # nan is never > top; inf is
                    above.append(v)
                    a1.plot(
                        x,
                        top,
                        "^",
                        color=c,
                        ms=9,
                        mec="black",
                        mew=0.6,
                        clip_on=False,
                        zorder=5,
                        gid="clipped",
                    )
        if above:  # none when the outlier is just past 5x the median, under the headroom
            # The note is the last legend entry, which is placed where no curve runs.
            a1.plot(
                [],
                [],
                "^",
                color="0.6",
                mec="black",
                mew=0.6,
                ms=9,
                label=f"{len(above)} point{'s' * (len(above) > 1)} above {top:.3g} (max {max(above):.3g})",
            )
