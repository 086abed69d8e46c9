"""`plot_curves`: integer epoch ticks, the best epoch marked, the QAT epochs in a shaded span
after the float ones, accuracy in percent, and a loss axis that one diverging epoch cannot
flatten. Synthetic metrics rows, read back from the matplotlib figure."""

import csv
import math

import numpy as np
import pytest

from cnnedge.evaluate import curves_figure, plot_curves
from cnnedge.run import Run


def rows_of(n, *, val=True, diverge=None, as_csv=False):
    """n epochs of a run that converges; val_loss 31.7 at epoch ``diverge``."""
    rows = []
    for e in range(1, n + 1):
        r = {
            "epoch": e,
            "loss": 0.6 + 1.4 * math.exp(-e / 5),
            "accuracy": 0.9 - 0.5 * math.exp(-e / 4),
            "val_loss": "",
            "val_accuracy": "",
        }
        if val:
            r.update(val_loss=r["loss"] + 0.05, val_accuracy=r["accuracy"] - 0.02 * (e % 3))
        rows.append(r)
    if diverge:
        rows[diverge - 1]["val_loss"] = 31.7
    # metrics.csv is read back as strings, with "" for a missing value
    return [{k: str(v) for k, v in r.items()} for r in rows] if as_csv else rows


QAT = [
    {"epoch": 1, "loss": 0.66, "accuracy": 0.88, "val_loss": 0.7, "val_accuracy": 0.87},
    {"epoch": 2, "loss": 0.64, "accuracy": 0.885, "val_loss": 0.69, "val_accuracy": 0.875},
]


def gid(ax, name):
    return [a for a in ax.get_children() if a.get_gid() == name]


def best_x(fig):
    return {float(line.get_xdata()[0]) for ax in fig.axes for line in gid(ax, "best")}


def shown_ticks(ax):
    lo, hi = ax.get_xlim()
    return [float(t) for t in ax.get_xticks() if lo <= t <= hi]


def check_integer_ticks(fig):
    for ax in fig.axes:
        assert shown_ticks(ax) and all(t.is_integer() for t in shown_ticks(ax)), shown_ticks(ax)


def test_normal_run(tmp_path):
    rows = rows_of(12, as_csv=True)
    out = plot_curves(rows, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = curves_figure(rows)
    loss, acc = fig.axes
    check_integer_ticks(fig)
    val = [float(r["val_accuracy"]) for r in rows]
    assert best_x(fig) == {float(np.argmax(val) + 1)}
    assert not gid(loss, "qat") and not gid(loss, "clipped")
    assert loss.get_ylim()[1] > max(float(r["val_loss"]) for r in rows)  # nothing clipped
    assert acc.yaxis.get_major_formatter()(0.9, 0).startswith("90")  # percent
    labels = acc.get_legend_handles_labels()[1]
    assert f"best: epoch {np.argmax(val) + 1}, val acc {100 * max(val):.1f} %" in labels


def test_diverging_epoch_is_clipped(tmp_path):
    rows = rows_of(22, diverge=9)
    plot_curves(rows, tmp_path / "curves.png")
    fig = curves_figure(rows)
    loss = fig.axes[0]
    top = loss.get_ylim()[1]
    others = [r[k] for r in rows for k in ("loss", "val_loss") if r[k] != 31.7]
    assert max(others) < top < 3  # the other points keep the axis, the outlier does not
    clipped = gid(loss, "clipped")
    assert [(line.get_xdata()[0], line.get_ydata()[0]) for line in clipped] == [(9, top)]
    note = [t for t in loss.get_legend_handles_labels()[1] if "above" in t]
    assert note == [f"1 point above {top:.3g} (max 31.7)"]
    no_note = curves_figure(rows_of(22)).axes[0].get_legend_handles_labels()[1]
    assert no_note == ["train", "val"]  # without the outlier: linear, no note


def test_infinite_and_nan_losses():
    rows = rows_of(10)
    rows[3]["loss"], rows[4]["val_loss"] = math.inf, math.nan
    fig = curves_figure(rows)
    assert len(gid(fig.axes[0], "clipped")) == 1  # inf is off scale, nan is a gap
    assert any("max inf" in t for t in fig.axes[0].get_legend_handles_labels()[1])


def test_qat_span_after_float_epochs(tmp_path):
    rows = rows_of(8, as_csv=True)
    plot_curves(rows, tmp_path / "curves.png", QAT)
    assert (tmp_path / "curves.png").stat().st_size > 0
    fig = curves_figure(rows, QAT)
    check_integer_ticks(fig)
    for ax in fig.axes:
        (span,) = gid(ax, "qat")
        xs = ax.transData.inverted().transform(span.get_verts())[:, 0]  # Rectangle or Polygon
        x0, x1 = sorted({round(float(x), 6) for x in xs})
        assert (x0, x1) == (8.5, 10.5)
        assert ax.get_xlim()[1] == 10.5
        assert any(t.get_text() == "QAT" for t in ax.texts)
    qat_points = [line for line in fig.axes[1].lines if list(line.get_xdata()) == [9, 10]]
    assert len(qat_points) == 2  # train and val, their own points
    assert best_x(fig) <= set(range(1, 9))  # the best float epoch, never a QAT one


def test_single_epoch(tmp_path):
    rows = rows_of(1)
    plot_curves(rows, tmp_path / "curves.png")
    fig = curves_figure(rows)
    check_integer_ticks(fig)
    assert all(shown_ticks(ax) == [1] for ax in fig.axes)
    assert best_x(fig) == {1.0}


def test_missing_val_uses_train_accuracy(tmp_path):
    rows = rows_of(6, val=False, as_csv=True)
    plot_curves(rows, tmp_path / "curves.png")
    fig = curves_figure(rows)
    check_integer_ticks(fig)
    assert best_x(fig) == {6.0}  # train accuracy rises every epoch
    labels = fig.axes[1].get_legend_handles_labels()[1]
    assert "val" not in labels and any(t.startswith("best: epoch 6, train acc") for t in labels)


def test_run_files_round_trip(tmp_path):
    """The rows as `Run` reads them back from metrics.csv and qat_metrics.csv."""
    run = Run(tmp_path)
    for r in rows_of(5, diverge=3):
        run.append_metrics(r)
    run.write_qat_metrics(QAT)
    with open(tmp_path / Run.METRICS, newline="") as f:
        assert len(list(csv.DictReader(f))) == 5
    out = plot_curves(run.metrics(), run / Run.CURVES, run.metrics(qat=True))
    assert out == tmp_path / Run.CURVES and out.stat().st_size > 0
    fig = curves_figure(run.metrics(), run.metrics(qat=True))
    assert gid(fig.axes[0], "qat") and len(gid(fig.axes[0], "clipped")) == 1


@pytest.mark.parametrize("n", [2, 3, 40])
def test_ticks_integer_for_any_length(n):
    check_integer_ticks(curves_figure(rows_of(n), QAT))
