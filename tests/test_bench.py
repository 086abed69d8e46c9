"""`cnnedge bench`: rows on every CPU runtime, failure rows, microcontroller estimate, output
files, --compare ratios and --fail-under gates, and the process isolation of rows.

Uses the session's exported tiny run (conftest.py); benches use ``quick`` timings and, but for
the isolation test and the CLI, measure their rows in the test process.
"""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cnnedge import bench as bn
from cnnedge.cli import main
from cnnedge.errors import CnnedgeError
from cnnedge.runtime import runtime_status


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    return tiny_run["run"]


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    """One quick bench: Keras, int8 TFLite, int8 ONNX, a corrupt and a missing file."""
    bad = tmp_path_factory.mktemp("bad")
    good = (run_dir / "export" / "model_int8.tflite").read_bytes()
    (bad / "corrupt.tflite").write_bytes(good[: len(good) // 3])
    targets = [
        run_dir / "best.keras",
        run_dir / "export" / "model_int8.tflite",
        run_dir / "export" / "model_int8.onnx",
        bad / "corrupt.tflite",
        bad / "missing.tflite",
    ]
    seen = []
    rep = bn.bench(targets, quick=True, threads=[1], out=bad / "out", progress=seen.append, isolate=False)
    assert len(seen) == len(rep.rows)
    return rep


def rows_of(rep, artifact, runtime=None):
    return [r for r in rep.rows if r["artifact"] == artifact and (runtime is None or r["runtime"] == runtime)]


def test_ok_rows_on_every_cpu_runtime(report, run_dir):
    ok = [r for r in report.rows if r["status"] == bn.OK]
    assert {(r["artifact"], r["runtime"]) for r in ok} == {
        ("best.keras", "keras-tf.function"),
        ("best.keras", "keras-predict"),
        ("model_int8.tflite", "litert"),
        ("model_int8.tflite", "litert-ref"),
        ("model_int8.onnx", "onnxruntime"),
        *{
            (a, rt)
            for a in ("model_int8.tflite", "model_int8.onnx")
            for rt in ("openvino", "openvino-bf16")
            if runtime_status(rt)[0]
        },
    }
    for r in ok:
        assert r["threads"] == 1 and r["reason"] is None
        assert 0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"], r
        assert r["mean_us"] > 0 and r["runs"] >= 1
        for b in (1, 32, 256):
            assert r[f"ips_b{b}"] > 0, (r["runtime"], b)
        assert r["load_ms"] > 0 and r["first_ms"] > 0
        # measured in this process (isolate=False): its memory is not the row's own, see
        # test_rows_run_in_their_own_process for the isolated figure
        assert r["peak_rss_mb"] >= r["mem_mb"] >= 0
        assert 0.0 <= r["accuracy"] <= 1.0 and r["images"] == bn.QUICK_MAX_IMAGES
        assert r["file_bytes"] == Path(r["path"]).stat().st_size
        assert r["params"] > 0 and r["macs_per_image"] > 0
    # far above chance (0.1) on every runtime
    assert min(r["accuracy"] for r in ok) > 0.5
    assert rows_of(report, "model_int8.onnx", "onnxruntime")[0]["providers"] == "CPUExecutionProvider"


def test_gpu_runtimes_not_available(report):
    for rt in ("onnxruntime-cuda", "onnxruntime-tensorrt"):
        (r,) = rows_of(report, "model_int8.onnx", rt)
        assert r["status"] == bn.UNAVAILABLE and r["threads"] is None
        assert "pip install onnxruntime-gpu" in r["reason"]


def test_failure_rows(report):
    for name in ("corrupt.tflite", "missing.tflite"):
        rows = rows_of(report, name)
        ov = {rt for rt in ("openvino", "openvino-bf16") if runtime_status(rt)[0]}
        assert {r["runtime"] for r in rows if r["status"] == bn.FAILED} == {"litert", "litert-ref", *ov}
        for r in rows:
            assert r["status"] in (bn.FAILED, bn.UNAVAILABLE) and r["p50_us"] is None
    assert "corrupt" in rows_of(report, "corrupt.tflite")[0]["reason"]
    assert "no model file" in rows_of(report, "missing.tflite")[0]["reason"]
    assert report.failed_rows == 4 + 2 * len(ov) and report.exit_code == 1


def test_mcu_estimate(report, run_dir):
    path = run_dir / "export" / "model_int8.tflite"
    est = bn.tflite_memory_estimate(path)
    assert est["flash_bytes"] == path.stat().st_size
    assert 0 < est["weight_bytes"] < est["flash_bytes"]
    assert not est["approximate_shapes"] and est["image_size"] == [28, 28]
    assert 0 < est["largest_tensor_bytes"] <= est["arena_bytes"] <= est["sum_tensor_bytes"]
    # the 28×28×1 int8 input alone is 784 bytes; the arena holds at least two live tensors
    assert est["arena_bytes"] > est["largest_tensor_bytes"] >= 784
    (r,) = rows_of(report, "model_int8.tflite", "litert")
    assert r["mcu_arena_bytes"] == est["arena_bytes"] and r["mcu_flash_bytes"] == est["flash_bytes"]
    # bigger input, bigger arena
    assert bn.tflite_memory_estimate(path, image_size=[56, 56])["arena_bytes"] > est["arena_bytes"]


def test_greedy_plan_reuses_memory():
    # A and C never live together: same offset; B overlaps both: after them
    peak, offsets = bn.greedy_plan([(100, 0, 1), (50, 1, 2), (100, 2, 3)], alignment=1)
    assert offsets == [0, 100, 0] and peak == 150
    peak16, _ = bn.greedy_plan([(100, 0, 1), (50, 1, 2), (100, 2, 3)], alignment=16)
    assert peak16 == 112 + 64


def test_files_written(report, tmp_path):
    files = report.files
    data = json.loads(Path(files["json"]).read_text())
    assert data["header"]["machine"]["cores"] >= 1 and data["header"]["versions"]["onnxruntime"]
    assert data["header"]["command"].startswith("cnnedge bench")
    assert len(data["rows"]) == len(report.rows)
    from cnnedge.files import atomic_write_json  # bench.json is the report's to_dict()

    atomic_write_json(tmp_path / "again.json", report.to_dict())
    assert (tmp_path / "again.json").read_bytes() == Path(files["json"]).read_bytes()
    assert list(data) == [
        "header",
        "notes",
        "rows",
        "profiles",
        "compare",
        "fail_under",
        "gate_failures",
        "failed_rows",
        "exit_code",
        "out_dir",
        "files",
    ]
    with open(files["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == bn.COLUMNS and len(rows) == len(report.rows)
    png = Path(files["png"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_worker_row_in_process(run_dir, tmp_path):
    """The worker's body: threads reported, a mismatched input shape is a failed row."""
    img = tmp_path / "img.npy"
    np.save(img, np.zeros((8, 28, 28, 3), np.uint8))  # 3 channels for a 1-channel model
    spec = {
        "path": str(run_dir / "export" / "model_fp32.tflite"),
        "runtime": "litert",
        "threads": 2,
        "timing": vars(bn.QUICK),
        "batch_sizes": [1, 4],
        "images": str(img),
        "labels": None,
        "image_size": [28, 28],
        "channels": 3,
        "accuracy": False,
    }
    res = bn.run_row(spec)
    assert res["status"] == bn.FAILED and "expects 1 channel" in res["reason"]
    np.save(img, np.zeros((8, 28, 28, 1), np.uint8))
    res = bn.run_row(spec)
    assert res["status"] == bn.OK and res["ips_b4"] > 0 and "accuracy" not in res


def test_threads_rows_and_accuracy_shared(run_dir, tmp_path):
    rep = bn.bench(
        [run_dir / "export" / "model_int8.tflite"],
        runtimes="litert",
        threads="1,2",
        quick=True,
        n=64,
        out=tmp_path,
        isolate=False,
    )
    assert [(r["runtime"], r["threads"]) for r in rep.rows] == [("litert", 1), ("litert", 2)]
    assert all(r["status"] == bn.OK and r["images"] == 64 for r in rep.rows)
    assert rep.rows[0]["accuracy"] == rep.rows[1]["accuracy"]
    assert rep.exit_code == 0 and rep.out_dir == str(tmp_path)


def test_rows_run_in_their_own_process(run_dir, tmp_path):
    """By default every row is measured in a fresh worker process: its memory is its own (the
    test process holds TensorFlow and the Keras models; a LiteRT worker does not)."""
    rep = bn.bench(
        [run_dir / "export" / "model_int8.tflite"],
        runtimes="litert",
        threads="1",
        quick=True,
        n=64,
        out=tmp_path,
    )
    (row,) = rep.rows
    assert row["status"] == bn.OK and row["images"] == 64
    status = Path("/proc/self/status").read_text()
    mine = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1]) / 1024
    assert row["peak_rss_mb"] < mine / 2, (row["peak_rss_mb"], mine)
    assert row["peak_rss_mb"] >= row["mem_mb"] > 0  # the runtime and model, counted alone


def test_compare_ratios():
    rows = [{c: None for c in bn.COLUMNS} for _ in range(2)]
    rows[0].update(
        artifact="m.tflite",
        runtime="litert",
        threads=1,
        status=bn.OK,
        p50_us=10.0,
        ips_b1=100.0,
        ips_b32=3200.0,
        accuracy=0.9,
    )
    rows[1].update(artifact="m.onnx", runtime="onnxruntime", threads=1, status=bn.OK, p50_us=5.0)
    base = {
        "_path": "old.json",
        "rows": [dict(rows[0], p50_us=20.0, ips_b1=50.0, ips_b32=6400.0), dict(rows[1], threads=2)],
    }  # threads differ: no match
    cmp = bn.apply_compare(rows, base)
    assert cmp["matched"] == 1
    assert rows[0]["speed_ratio"] == 2.0 and rows[0]["throughput_ratio_b1"] == 2.0
    assert rows[0]["throughput_ratio_b32"] == 0.5 and rows[0]["throughput_ratio_b256"] is None
    assert rows[1]["speed_ratio"] is None
    assert bn.check_gates(rows, {"speed": 1.5}) == []
    assert len(bn.check_gates(rows, {"speed": 2.5})) == 1
    assert len(bn.check_gates(rows, {"throughput": 0.8})) == 1  # batch 32 halved
    assert len(bn.check_gates(rows, {"accuracy": 0.95})) == 1


@pytest.mark.parametrize(
    "text, expected",
    [
        (["accuracy=0.92"], {"accuracy": 0.92}),
        (["accuracy=0.9,speed=0.8", "throughput=1"], {"accuracy": 0.9, "speed": 0.8, "throughput": 1.0}),
    ],
)
def test_parse_gates(text, expected):
    assert bn.parse_gates(text) == expected


@pytest.mark.parametrize("bad", ["acc=0.9", "accuracy", "speed=fast", "accuracy=-1", "accuracy=nan"])
def test_parse_gates_rejects(bad):
    with pytest.raises(CnnedgeError, match="--fail-under"):
        bn.parse_gates([bad])


def test_cli_compare_and_gates(run_dir, tmp_path, capsys):
    art = str(run_dir / "export" / "model_int8.tflite")
    common = [art, "--quick", "--threads", "1", "--runtime", "litert", "-n", "32"]
    assert main(["bench", *common, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "model_int8.tflite" in out and "✅" in out
    assert out.strip().splitlines()[-1].startswith("wrote ") and str(tmp_path / "a") in out
    base = tmp_path / "a" / "bench.json"

    rc = main(
        [
            "bench",
            *common,
            "--out",
            str(tmp_path / "b"),
            "--compare",
            str(base),
            "--fail-under",
            "speed=0.001",
            "--fail-under",
            "accuracy=0",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "speed" in out
    b = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert b["compare"]["matched"] == 1 and b["rows"][0]["speed_ratio"] > 0
    assert math.isfinite(b["rows"][0]["throughput_ratio_b256"])

    # impossible gates -> exit 1, and the reasons are printed
    assert (
        main(
            [
                "bench",
                *common,
                "--out",
                str(tmp_path / "c"),
                "--compare",
                str(base),
                "--fail-under",
                "speed=1000",
            ]
        )
        == 1
    )
    assert "speed ratio" in capsys.readouterr().err
    assert main(["bench", *common, "--out", str(tmp_path / "c"), "--fail-under", "accuracy=1.01"]) == 1
    assert "accuracy" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fail-under", "speed=0.8"], "needs --compare"),
        (["--fail-under", "latency=3"], "--fail-under expects"),
        (["--threads", "0"], "--threads 0 is out of range"),
        (["--runtime", "litert-reff"], "did you mean 'litert-ref'"),
        (["--compare", "/nonexistent/bench.json"], "cannot read"),
        (["-n", "0"], "-n 0 is out of range"),
    ],
)
def test_cli_bad_input(run_dir, args, message, capsys):
    rc = main(["bench", str(run_dir / "export" / "model_int8.tflite"), "--quick", *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and "Traceback" not in err


def test_cli_not_a_run(tmp_path, capsys):
    assert main(["bench", str(tmp_path)]) == 2
    assert "holds no artifacts" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "notes.txt")]) == 2
    assert "not a model file" in capsys.readouterr().err
