"""TFLite Micro: the fixed-size int8 file and C/C++ bundle of ``--format tflm``, the ``tflm``
runtime, the measured arena, and their rows in verify and bench. The run is the session's
``tiny_run`` (conftest.py, gmp_xs at 28×28); the bundle's data is compiled with g++."""

import shutil
import subprocess

import numpy as np
import pytest

from cnnedge.errors import CnnedgeError

pytest.importorskip("tflite_micro")


@pytest.fixture(scope="module")
def tflm(tflm_run):
    return tflm_run


@pytest.fixture(scope="module")
def tflm_32x24(tflm, tmp_path_factory):
    """The same run exported at another --image-size (into its own folder)."""
    from cnnedge.export import export

    out = tmp_path_factory.mktemp("tflm_32x24")
    return {
        "dir": out,
        "file": export(tflm["run"], formats="tflm", image_size="32x24", out_dir=out, verify=0)[0]["path"],
    }


def test_export_writes_the_fixed_size_file_and_bundle(tflm, tiny_run):
    from cnnedge.runtime import read_metadata

    assert [r["format"] for r in tflm["res"]] == ["tflm", "tflm"]
    m = read_metadata(tflm["file"])
    assert m["dynamic_hw"] is False and m["image_size"] == [28, 28] and m["target"] == "tflm"
    assert m["precision"] == "int8" and m["source"] == "qat" and m["tflm_arena_bytes"] > 1000
    assert sorted(p.name for p in tflm["bundle"].iterdir()) == [
        "Makefile",
        "README.md",
        "bundle.mk",
        "main.cc",
        "model_data.cc",
        "model_data.h",
        "model_ops.h",
        "model_settings.h",
        "test_data.cc",
        "test_data.h",
    ]
    # "all" (the default) leaves TFLite Micro out: it is written on request
    assert not any("static" in str(r["path"]) for r in tiny_run["results"])


def test_static_file_computes_what_the_dynamic_int8_file_does(tflm):
    """Same calibration and QAT ranges: LiteRT gives identical outputs for the fixed-size and the
    dynamic int8 file; TFLM stays within one step of LiteRT's reference kernels."""
    from cnnedge import runtime
    from cnnedge.run import Run
    from cnnedge.verify import _reference_kernels

    x, _, _ = Run(tflm["run"]).test_images(64)
    dyn = runtime.load(tflm["run"] / "export" / "model_int8.tflite", runtime="litert-ref")
    fixed = runtime.load(tflm["file"], runtime="litert-ref")
    micro = runtime.load(tflm["file"], runtime="tflm")
    a = dyn.run_prepared(dyn.prepare(x)).astype(int)
    b = np.concatenate([fixed.run_prepared(fixed.prepare(x[i : i + 1])) for i in range(len(x))])
    assert np.array_equal(a, b)
    ref = _reference_kernels(tflm["file"], fixed, x)
    c = micro.predict(x)
    assert np.abs(ref - c).max() <= micro.output_details["scale"] * 1.01
    assert (ref.argmax(1) == c.argmax(1)).all()


def test_measured_arena_is_the_smallest_that_allocates(tflm):
    from cnnedge.runtime.tflm import ARENA_ALIGN, _open, measure_arena

    buf = tflm["file"].read_bytes()
    m = measure_arena(buf)
    assert _open(buf, m["arena_bytes"])[0] is not None
    assert _open(buf, m["arena_bytes"] - ARENA_ALIGN)[0] is None
    assert m["allocations"]["arena total"] == m["arena_bytes"]
    assert "NodeAndRegistration struct" in m["report"]
    with pytest.raises(CnnedgeError, match="cannot allocate this model in 1,024 bytes"):
        measure_arena(buf, limit=1024)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_bundle_compiles_and_holds_the_model_and_test_vector(tflm, tmp_path):
    """The bundle's data and settings compile as C++17 without TFLM sources; the array is the
    .tflite byte for byte and the test vector is what TFLM computes for the test input."""
    from tflite_micro.python.tflite_micro import runtime as micro

    check = tmp_path / "check.cc"
    check.write_text("""
#include <cstdio>
#include "model_data.h"
#include "model_settings.h"
#include "test_data.h"
int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "wb");
  fwrite(g_model_data, 1, g_model_data_len, f);
  fclose(f);
  if (reinterpret_cast<unsigned long>(g_model_data) % 16) return 3;
  printf("%d %d %d %d %u %u %s\\n", kInputHeight, kInputWidth, kInputChannels, kNumClasses,
         kMeasuredArenaBytes, kTensorArenaSize, kClassNames[kNumClasses - 1]);
  for (int i = 0; i < kInputBytes; ++i) printf("%d ", g_test_input[i]);
  printf("\\n");
  for (int i = 0; i < kNumClasses; ++i) printf("%d ", g_test_expected_output[i]);
  printf("\\n%d %d\\n", kTestLabel, PixelToInput(200));
  return 0;
}
""")
    exe = tmp_path / "check"
    b = tflm["bundle"]
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-Wall",
            "-Werror",
            "-I",
            str(b),
            str(check),
            str(b / "model_data.cc"),
            str(b / "test_data.cc"),
            "-o",
            str(exe),
        ],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [str(exe), str(tmp_path / "model.bin")], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert (tmp_path / "model.bin").read_bytes() == tflm["file"].read_bytes()
    head = out[0].split()
    arena = int(head[4])
    assert head[:4] == ["28", "28", "1", "10"] and int(head[5]) > arena
    assert out[0].endswith("Ankle boot")
    x = np.array(out[1].split(), dtype=np.int8).reshape(1, 28, 28, 1)
    want = np.array(out[2].split(), dtype=np.int8)
    it = micro.Interpreter.from_bytes(tflm["file"].read_bytes(), arena_size=arena)
    it.set_input(x, 0)
    it.invoke()
    assert np.array_equal(np.array(it.get_output(0)).reshape(-1), want)
    label, pixel = out[3].split()
    assert 0 <= int(label) < 10 and int(pixel) == 200 - 128
    ops = (b / "model_ops.h").read_text()
    assert "MicroMutableOpResolver<kModelOpCount>" in ops and "AddConv2D()" in ops
    assert "AddFullyConnected()" in ops and "AddReduceMax()" in ops


def test_verify_and_runtime_rows(tflm):
    from cnnedge import runtime
    from cnnedge.verify import agreement_lines, verify

    dyn = tflm["run"] / "export" / "model_int8.tflite"
    assert runtime.runtimes_for(tflm["file"])[0] == "tflm"
    assert "tflm" not in runtime.runtimes_for(dyn)
    with pytest.raises(CnnedgeError, match="needs a fixed input size"):
        runtime.load(dyn, runtime="tflm")
    rep = verify(tflm["run"], n=200, artifacts=[dyn, tflm["file"]], write=False)
    row = next(r for r in rep.rows if r["artifact"] == tflm["file"].name)
    assert row["runtime"] == "tflm" and row["gate"] in ("pass", "inconclusive")
    assert row["agreement_with_model_int8.tflite on LiteRT reference kernels"] == 1.0
    assert row["max_steps_vs_model_int8.tflite on LiteRT reference kernels"] <= 1
    assert any("within" in line and "reference kernels" in line for line in agreement_lines(rep))


def test_image_size_and_verify_at_that_size(tflm, tflm_32x24):
    from cnnedge.runtime import read_metadata
    from cnnedge.verify import verify

    assert read_metadata(tflm_32x24["file"])["image_size"] == [32, 24]
    assert "kInputHeight = 32;" in (tflm_32x24["dir"] / "tflm" / "model_settings.h").read_text()
    rep = verify(tflm["run"], n=64, artifacts=[tflm_32x24["file"]], write=False)
    assert rep.rows[-1]["agreement"] > 0.9 and rep.rows[-1]["image_size"] == [32, 24]


def test_bench_feeds_a_fixed_size_file_at_its_size(tflm_32x24):
    from cnnedge.bench import QUICK, bench

    rep = bench(
        [tflm_32x24["file"]],
        runtimes=["tflm", "litert"],
        threads=[1],
        n=16,
        quick=True,
        timing=QUICK,
        write=False,
        isolate=False,
    )
    assert [r["status"] for r in rep.rows] == ["ok", "ok"], rep.rows
    assert rep.rows[0]["accuracy"] is not None


def test_verify_without_tflite_micro_runs_the_file_on_litert(tflm, monkeypatch):
    from cnnedge.runtime import tflm as runtime_tflm
    from cnnedge.verify import verify

    monkeypatch.setattr(runtime_tflm, "check", lambda: (False, "not available: pip install x"))
    rep = verify(tflm["run"], n=32, artifacts=[tflm["file"]], write=False)
    assert rep.rows[-1]["runtime"] == "litert"
    assert any("runtime tflm is not available" in n and "ran on litert" in n for n in rep.notes)


def test_reexport_keeps_files_the_user_added(tflm, tflm_32x24):
    from cnnedge.export import export

    out = tflm_32x24["dir"]  # the last test of this folder: it re-exports at the training size
    (out / "tflm" / "CMakeLists.txt").write_text("project(x)\n")
    (out / "tflm" / "main.cc").write_text("stale")
    export(tflm["run"], formats="tflm", out_dir=out, verify=0)
    assert (out / "tflm" / "CMakeLists.txt").read_text() == "project(x)\n"
    assert "RegisterModelOps" in (out / "tflm" / "main.cc").read_text()
    assert "kInputHeight = 28;" in (out / "tflm" / "model_settings.h").read_text()
    assert not list(out.glob(".export.*"))


def test_bench_shows_tflm_row_and_measured_arena(tflm):
    from cnnedge.bench import QUICK, bench

    rep = bench(
        [tflm["file"]],
        runtimes=["tflm", "litert"],
        threads=[1],
        n=32,
        quick=True,
        timing=QUICK,
        write=False,
        isolate=False,
    )
    rows = {r["runtime"]: r for r in rep.rows}
    assert rows["tflm"]["status"] == "ok" and rows["tflm"]["p50_us"] > 0
    assert rows["tflm"]["providers"] == "x86 reference kernels"
    assert rows["tflm"]["tflm_arena_bytes"] == rows["litert"]["tflm_arena_bytes"] > 1000
    # a measured arena replaces the greedy estimate (kept for dynamic-size files only)
    assert rows["tflm"]["mcu_arena_bytes"] is None and rows["tflm"]["mcu_flash_bytes"]
    assert any("TFLite Micro arena" in n and "greedy estimate" in n for n in rep.notes)


def test_bad_input_is_refused_before_anything_is_written(tflm, tmp_path, monkeypatch):
    from cnnedge.cli import main
    from cnnedge.export import export
    from cnnedge.runtime import tflm as runtime_tflm

    out = tmp_path / "out"
    with pytest.raises(CnnedgeError, match="--image-size sets the fixed input"):
        export(tflm["run"], formats="tflite", image_size="32x32", out_dir=out)
    with pytest.raises(CnnedgeError, match="not keep"):
        export(tflm["run"], formats="tflm", image_size="keep", out_dir=out)
    with pytest.raises(CnnedgeError, match="smaller than this model's minimum"):
        export(tflm["run"], formats="tflm", image_size="4x4", out_dir=out)
    with pytest.raises(CnnedgeError, match="fp32 is not supported by tflm; tflm: int8"):
        export(tflm["run"], formats="tflm", precisions="fp32", out_dir=out)
    monkeypatch.setattr(runtime_tflm, "check", lambda: (False, "not available"))
    with pytest.raises(CnnedgeError, match=r"pip install 'cnnedge\[mcu\]'"):
        export(tflm["run"], formats="tflm", out_dir=out)
    assert main(["export", str(tflm["run"]), "--format", "tflm", "-o", str(out)]) == 2
    assert not out.exists()


def test_an_op_tflm_lacks_is_named():
    from cnnedge.backend import tf
    from cnnedge.runtime.tflm import measure_arena

    fn = tf.function(
        lambda x: tf.math.top_k(tf.reshape(x, [1, -1]), 2)[0],
        input_signature=[tf.TensorSpec([1, 4, 4, 1], tf.float32)],
    )
    buf = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()]).convert()
    with pytest.raises(CnnedgeError, match="no kernel for op TOPK_V2"):
        measure_arena(buf, "topk.tflite")


def test_dynamic_file_is_refused_with_the_fix(tiny_run):
    from pathlib import Path

    from cnnedge.runtime.tflm import measure_arena

    dyn = Path(tiny_run["run"]) / "export" / "model_int8.tflite"
    with pytest.raises(CnnedgeError, match="--format tflm"):
        measure_arena(dyn.read_bytes(), dyn)


def test_bundle_text_helpers():
    from cnnedge.export.tflm_bundle import _float, arena_size, c_string, resolver_method

    assert resolver_method("CONV_2D") == "AddConv2D"
    assert resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert resolver_method("BATCH_TO_SPACE_ND") == "AddBatchToSpaceNd"
    assert resolver_method("CUMSUM") == "AddCumSum"
    assert c_string('a"b\\c é?') == '"a\\"b\\\\c \\303\\251\\077"'
    assert [_float(1.0), _float(1e-5), _float(None)] == ["1.0f", "1e-05f", "0.0f"]
    assert resolver_method("BATCH_MATMUL") == "AddBatchMatMul"
    assert arena_size(1000) == 2032 and arena_size(100_000) % 16 == 0
    assert arena_size(100_000) >= 125_000
