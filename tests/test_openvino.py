"""The openvino / openvino-bf16 runtimes: agreement with the default runtime of the same file,
threads and precision reported as compiled, static-shape recompiles, error lines, bench rows.
Uses the run that conftest.py builds; skipped where openvino is not installed."""

import importlib.util
import json

import numpy as np
import pytest

from cnnedge import artifacts, runtime
from cnnedge.errors import CnnedgeError
from cnnedge.runtime import openvino as runtime_openvino

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"
)
FILES = ["model_fp32.onnx", "model_int8.onnx", "model_int8.tflite"]


def art(tiny_run, name) -> str:
    return str(tiny_run["run"] / "export" / name)


def cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_table_rows_list_openvino_after_the_default():
    rows = [a for a in artifacts.TABLE if "openvino" in a.runtimes]
    assert {a.key for a in rows} == {"onnx-fp32", "onnx-int8", "tflite-int8"}
    for a in rows:
        assert a.runtimes.index("openvino") > 0 and "openvino-bf16" in a.runtimes
        assert runtime.default_runtime(a.filename) == a.runtimes[0] != "openvino"


def test_missing_package_says_what_to_install(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else find_spec(name, *a)
    )
    for name in ("openvino", "openvino-bf16"):
        assert runtime.runtime_status(name) == (False, "not available: pip install openvino")


@needs_openvino
@pytest.mark.parametrize("name", FILES)
def test_f32_agrees_with_the_default_runtime(tiny_run, name):
    x = tiny_run["x"]
    ref = runtime.load(art(tiny_run, name), threads=1)
    r = runtime.load(art(tiny_run, name), runtime="openvino", threads=1)
    assert r.runtime == "openvino" and r.precision == "f32" and r.providers == ["CPU:f32"]
    assert list(r._static) == [(1, 28, 28, 1)]  # compiled at load for the metadata's size
    assert "precision=f32" in repr(r) and r.metadata == ref.metadata
    assert r.input_details["dtype"] == r.metadata["input_dtype"]
    assert r.input_details["shape"] == [-1, -1, -1, 1]
    want, got = ref.predict(x), r.predict(x)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.99
    if r.metadata["precision"] == "fp32":
        np.testing.assert_allclose(got, want, atol=1e-3)
        np.testing.assert_allclose(got, tiny_run["keras"], atol=1e-3)
    elif r.output_details["scale"]:  # int8 TFLite: int8 out, at most one quantization step off
        assert r.run_prepared(r.prepare(x[:4])).dtype == np.int8
        assert np.abs(got - want).max() <= r.output_details["scale"] * 1.01
    # another H×W compiles another static model; the first one is kept
    assert r.predict(np.zeros((2, 40, 36, 1), np.uint8)).shape == (2, 10)
    np.testing.assert_array_equal(r.predict(x[:8]), got[:8])
    assert {(512, 28, 28, 1), (2, 40, 36, 1)} <= set(r._static)


@needs_openvino
def test_threads_are_honoured_and_reported(tiny_run):
    for n in (1, 2):
        r = runtime.load(art(tiny_run, "model_int8.onnx"), runtime="openvino", threads=n)
        assert r.threads == n and f"threads={n}" in repr(r)


@needs_openvino
def test_bf16_runs(tiny_run):
    x = tiny_run["x"]
    r = runtime.load(art(tiny_run, "model_fp32.onnx"), runtime="openvino-bf16", threads=1)
    assert r.precision == ("bf16" if cpu_has_bf16() else "f32")
    assert r.providers == [f"CPU:{r.precision}"]
    got = r.predict(x)
    assert np.mean(got.argmax(1) == tiny_run["keras"].argmax(1)) >= 0.97
    np.testing.assert_allclose(got, tiny_run["keras"], atol=0.5)


@needs_openvino
def test_static_shapes_are_bounded(tiny_run, monkeypatch):
    monkeypatch.setattr(runtime_openvino, "MAX_STATIC_SHAPES", 1)
    r = runtime.load(art(tiny_run, "model_int8.tflite"), runtime="openvino", threads=1)
    a = r.predict(tiny_run["x"][:3])
    b = r.predict(np.pad(tiny_run["x"][:3], ((0, 0), (2, 2), (2, 2), (0, 0))))  # dynamic model
    assert len(r._static) == 1 and a.shape == b.shape == (3, 10)


@needs_openvino
def test_compile_error_is_one_line_naming_the_file(tiny_run, monkeypatch):
    import openvino as ov

    def fail(self, *a, **k):
        raise RuntimeError(
            "Exception from src/inference/src/cpp/core.cpp:132:\n"
            "Exception from src/plugins/intel_cpu/src/node.cpp:1:\n"
            "Unsupported operation: FancyOp of type FancyOp\n"
        )

    monkeypatch.setattr(ov.Core, "compile_model", fail)
    path = art(tiny_run, "model_int8.onnx")
    with pytest.raises(CnnedgeError) as e:
        runtime.load(path, runtime="openvino")
    assert str(e.value) == (f"OpenVINO cannot compile {path}: Unsupported operation: FancyOp of type FancyOp")


@needs_openvino
def test_runtime_must_fit_the_file(tiny_run):
    with pytest.raises(CnnedgeError, match="cannot run .keras files"):
        runtime.load(tiny_run["run"] / "best.keras", runtime="openvino")


@needs_openvino
def test_bench_shows_openvino_rows(tiny_run, tmp_path, capsys):
    from cnnedge.cli import main

    files = [art(tiny_run, n) for n in ("model_int8.tflite", "model_fp32.onnx")]
    assert (
        main(
            [
                "bench",
                *files,
                "--quick",
                "--threads",
                "1",
                "-n",
                "64",
                "--runtime",
                "openvino,openvino-bf16",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert "openvino-bf16" in capsys.readouterr().out
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert {(r["artifact"], r["runtime"]) for r in rows} == {
        (f, rt) for f in ("model_int8.tflite", "model_fp32.onnx") for rt in ("openvino", "openvino-bf16")
    }
    for r in rows:
        assert r["status"] == "ok" and r["p50_us"] > 0 and r["accuracy"] > 0.5, r
        prec = "f32" if r["runtime"] == "openvino" or not cpu_has_bf16() else "bf16"
        assert r["providers"] == f"CPU:{prec}"


@needs_openvino
def test_verify_adds_openvino_rows(tiny_run, capsys):
    from cnnedge import verify
    from cnnedge.cli import main

    rep = verify.verify(tiny_run["run"], n=64, write=False, runtimes=["openvino"])
    ov = [r for r in rep.rows if r["runtime"] == "openvino"]
    assert {r["artifact"] for r in ov} >= {"model_fp32.onnx", "model_int8.onnx", "model_int8.tflite"}
    assert all(r["agreement"] >= 0.95 and r["gate"] != "fail" for r in ov), ov
    defaults = [r for r in rep.rows if r["runtime"] in ("litert", "onnxruntime")]
    assert len(defaults) == len(tiny_run["results"])  # each file on its default runtime too
    assert main(["verify", str(tiny_run["run"]), "-n", "64", "-r", "openvino"]) == 0
    assert "openvino" in capsys.readouterr().out
    assert main(["verify", str(tiny_run["run"]), "-n", "64", "-r", "openvno"]) == 2
