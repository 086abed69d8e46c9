"""bench.png (points, legend, Pareto front, axis label) and `cnnedge bench --profile`."""

from __future__ import annotations

import json
from pathlib import Path

from cnnedge import bench as bn
from cnnedge.bench import plot as rp
from cnnedge.bench import report
from cnnedge.bench.worker import profile_summary
from cnnedge.cli import main

# (artifact, runtime, threads, p50 µs, accuracy): rows of one artifact share an accuracy and
# nearly a latency, the case where labels beside points used to land next to the wrong point
ROWS = [
    ("model_fp32.onnx", "onnxruntime", 1, 120.0, 0.91),
    ("model_fp32.onnx", "onnxruntime", 2, 118.0, 0.91),
    ("model_int8.onnx", "onnxruntime", 1, 80.0, 0.89),
    ("model_int8.tflite", "litert", 1, 40.0, 0.88),
    ("model_int8.tflite", "litert", 2, 45.0, 0.88),  # dominated by the t1 row
    ("model_fp16.tflite", "litert-ref", 1, 400.0, 0.905),  # slower and less accurate
    ("best.keras", "keras-predict", 1, 2000.0, 0.912),
    ("model_fp32.tflite", "litert", 1, 118.0, 0.91),
]  # ties the fp32 t2 row: both stay


def _rows(extra=()):
    out = []
    for art, rt, th, p50, acc in ROWS:
        r = {c: None for c in bn.COLUMNS}
        r.update(artifact=art, runtime=rt, threads=th, status=bn.OK, p50_us=p50, accuracy=acc, images=1000)
        out.append(r)
    return out + list(extra)


IMAGES = {"runs/x": {"n": 1000, "split": "test", "image_size": [28, 28]}}


def test_figure_one_thing_per_channel_and_a_front_per_panel():
    rows = _rows(
        [
            dict(
                {c: None for c in bn.COLUMNS},
                artifact="bad.onnx",
                runtime="onnxruntime",
                threads=1,
                status=bn.FAILED,
                reason="boom",
            )
        ]
    )
    fig = rp.figure(rows, images=IMAGES)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["1 thread", "2 threads"]  # a panel per count
    ok = [r for r in rows if r["status"] == bn.OK]
    for ax, t in zip(axes, (1, 2)):
        points = {ln.get_label(): ln for ln in ax.lines if ln.get_gid() != "pareto"}
        mine = [r for r in ok if r["threads"] == t]
        assert set(points) == {rp.row_label(r) for r in mine}  # one marker per ✅ row, no more
        for r in mine:
            ln = points[rp.row_label(r)]
            assert list(ln.get_xdata()) == [r["p50_us"]]
            assert list(ln.get_ydata()) == [r["accuracy"]]
        styles = [(ln.get_marker(), ln.get_color()) for ln in points.values()]
        assert len(set(styles)) == len(styles)  # no two rows of a panel look alike
    # colour is the runtime and the marker the artifact, on every panel
    by = {}
    for ax in axes:
        for ln in ax.lines:
            if ln.get_gid() != "pareto":
                art, rt, _ = ln.get_label().split(" · ")
                by.setdefault(("rt", rt), set()).add(ln.get_color())
                by.setdefault(("art", art), set()).add(ln.get_marker())
    assert all(len(v) == 1 for v in by.values())
    assert len({next(iter(v)) for k, v in by.items() if k[0] == "rt"}) == 4  # 4 runtimes
    entries = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert len(entries) == 4 + 6 + 1  # runtimes + artifacts + the front, not one per row

    fronts = {ax.get_title(): ln for ax in axes for ln in ax.lines if ln.get_gid() == "pareto"}
    assert list(zip(fronts["1 thread"].get_xdata(), fronts["1 thread"].get_ydata())) == [
        (40.0, 0.88),
        (80.0, 0.89),
        (118.0, 0.91),
        (2000.0, 0.912),
    ]  # 120/.91, 400/.905 beaten
    assert list(zip(fronts["2 threads"].get_xdata(), fronts["2 threads"].get_ydata())) == [
        (45.0, 0.88),
        (118.0, 0.91),
    ]
    labels = [t.get_text() for t in axes[0].texts if t.get_gid() == "front-label"]
    assert labels == [
        "model_int8.tflite · litert",
        "model_int8.onnx · onnxruntime",
        "model_fp32.tflite · litert",
        "best.keras · keras-predict",
    ]

    assert axes[0].get_ylabel() == "accuracy on the test split (1,000 images)"
    assert axes[0].get_xscale() == "log"


def test_figure_without_points_and_without_header():
    fig = rp.figure(
        [dict({c: None for c in bn.COLUMNS}, artifact="a.onnx", runtime="x", threads=1, status=bn.FAILED)]
    )
    ax = fig.axes[0]
    assert not ax.lines and ax.get_ylabel() == "accuracy" and not fig.legends
    assert rp.accuracy_label(_rows(), None) == "accuracy (1,000 images)"


def test_plot_writes_png(tmp_path):
    out = rp.plot(_rows(), tmp_path / "bench.png", title="example", images=IMAGES)
    assert out.read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------ --profile
def test_profile_summary_skips_warmup():
    ev = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},  # warm-up call
        {
            "cat": "Node",
            "name": "conv_kernel_time",
            "ts": 1,
            "dur": 90,
            "args": {"op_name": "Conv", "provider": "CPUExecutionProvider"},
        },
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 10},
        {"cat": "Node", "name": "conv_kernel_time", "ts": 201, "dur": 6, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "relu_kernel_time", "ts": 207, "dur": 2, "args": {"op_name": "Relu"}},
    ]
    s = profile_summary(ev, warmup=1)
    assert s["runs"] == 1 and s["run_us"] == 10.0 and s["kernel_share"] == 0.8
    assert [(n["node"], n["op"], n["total_us"], n["share"], n["median_us"]) for n in s["nodes"]] == [
        ("conv", "Conv", 6.0, 0.6, 6.0),
        ("relu", "Relu", 2.0, 0.2, 2.0),
    ]
    assert [o["op"] for o in s["ops"]] == ["Conv", "Relu"]


def test_cli_profile_onnx(tiny_run, tmp_path, capsys):
    """--profile --quick on the fp32 ONNX (worker process): profile_<row>.json beside
    bench.json, with the model's own node names and their times, and the summary table."""
    import onnx

    onnx_path = Path(tiny_run["run"]) / "export" / "model_fp32.onnx"
    assert (
        main(
            [
                "bench",
                str(onnx_path),
                "-r",
                "onnxruntime",
                "-t",
                "1",
                "-n",
                "64",
                "--quick",
                "--profile",
                "-o",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "bench.json").read_text())
    (p,) = rep["profiles"]
    f = tmp_path / "profile_model_fp32_onnxruntime_t1.json"
    assert p["file"] == str(f) and f.is_file() and rep["header"]["profile"] is True
    assert 0 < p["runs"] <= 100 and p["run_us"] > 0 and 0 < p["kernel_share"] <= 1
    graph = {n.name for n in onnx.load(str(onnx_path)).graph.node}
    events = json.loads(f.read_text())
    timed = {
        e["name"][: -len("_kernel_time")]: e["dur"]
        for e in events
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
    }
    assert graph & set(timed), (sorted(graph)[:5], sorted(timed)[:5])
    assert all(n["total_us"] > 0 and 0 < n["share"] <= 1 and n["node"] in timed for n in p["nodes"])
    assert p["nodes"][0]["node"] in out and "per-node profile" in out
    assert "profile_model_fp32_onnxruntime_t1.json" in out


def test_profile_no_profiler_row(tiny_run, tmp_path):
    """A runtime without a profiler gives a ✅ row and a "no profiler" entry, no file."""
    rep = bn.bench(
        [Path(tiny_run["run"]) / "export" / "model_int8.tflite"],
        runtimes="litert",
        threads="1",
        quick=True,
        n=32,
        out=tmp_path,
        profile=True,
        isolate=False,
    )
    (row,) = rep.rows
    assert row["status"] == bn.OK and rep.exit_code == 0
    assert rep.profiles == [
        {"artifact": "model_int8.tflite", "runtime": "litert", "threads": 1, "note": "no profiler"}
    ]
    assert not list(tmp_path.glob("profile_*"))
    assert "no profiler" in str(report.profile_table(rep).columns[3]._cells)
