"""cnnedge.runtime: registry by name, GPU runtimes reporting instead of crashing, Runner API
(preprocessing, resizing, dequantization), input checks, metadata errors. Uses the run that
conftest.py builds (one build per session)."""

import numpy as np
import pytest

from cnnedge import artifacts, runtime
from cnnedge.errors import CnnedgeError


@pytest.fixture(scope="module")
def exported(tiny_run):
    return tiny_run


def art(exported, name) -> str:
    return str(exported["run"] / "export" / name)


# ------------------------------------------------------------------------------ registry
def test_registry_lists_and_looks_up_by_name():
    names = runtime.list_runtimes()
    for n in ("litert", "litert-ref", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "keras"):
        assert n in names
    avail = runtime.available_runtimes()
    assert {"litert", "litert-ref", "onnxruntime", "keras"} <= set(avail)
    assert runtime.runtime_status("litert") == (True, "ok")
    assert runtime.runtimes_for("m.tflite") == ["litert", "litert-ref", "openvino", "openvino-bf16"]
    assert runtime.default_runtime("m.onnx") == "onnxruntime"
    assert runtime.default_runtime("m.h5") == "keras"


def test_unknown_runtime_has_hint():
    with pytest.raises(CnnedgeError, match="unknown runtime 'litrt'; did you mean 'litert'"):
        runtime.runtime_status("litrt")
    with pytest.raises(CnnedgeError, match="available: keras, litert"):
        runtime.load("x.tflite", runtime="tvm")


def test_gpu_runtimes_report_a_reason(exported):
    import onnxruntime as ort

    for name, provider in (
        ("onnxruntime-cuda", "CUDAExecutionProvider"),
        ("onnxruntime-tensorrt", "TensorrtExecutionProvider"),
    ):
        ok, reason = runtime.runtime_status(name)
        assert ok == (provider in ort.get_available_providers())
        if not ok:
            assert "pip install onnxruntime-gpu" in reason
            with pytest.raises(CnnedgeError, match="onnxruntime-gpu"):
                runtime.load(art(exported, "model_int8.onnx"), runtime=name)


def test_runtime_must_fit_the_file(exported):
    with pytest.raises(CnnedgeError, match="cannot run .onnx files"):
        runtime.load(art(exported, "model_fp32.onnx"), runtime="litert")
    with pytest.raises(CnnedgeError, match="unknown model type '.bin'"):
        runtime.load("weights.bin")
    with pytest.raises(CnnedgeError, match="no model file"):
        runtime.load("missing.tflite")
    with pytest.raises(CnnedgeError, match="threads must be >= 1"):
        runtime.load(art(exported, "model_fp32.tflite"), threads=-1)


# ------------------------------------------------------------------------------- runners
def test_runner_api_int8_tflite(exported):
    r = runtime.load(art(exported, "model_int8.tflite"), threads=1)
    assert r.runtime == "litert" and r.threads == 1
    assert r.input_details["dtype"] == "int8" and r.input_details["shape"] == [-1, -1, -1, 1]
    assert r.metadata["class_names"][0] == "T-shirt/top"
    x = exported["x"][:8]
    prep = r.prepare(x)
    assert prep.dtype == np.int8
    np.testing.assert_array_equal(prep.astype(np.int16), x.astype(np.int16) - 128)
    raw = r.run_prepared(prep)
    assert raw.dtype == np.int8 and raw.shape == (8, 10)
    logits = r.predict(x)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, r.postprocess(raw))
    s, z = r.output_details["scale"], r.output_details["zero_point"]
    np.testing.assert_allclose(logits, (raw.astype(np.float32) - z) * s, rtol=1e-6)
    # dynamic shapes: resize on change, then back
    assert r.predict(np.zeros((2, 40, 36, 1), np.uint8)).shape == (2, 10)
    np.testing.assert_array_equal(r.predict(x), logits)
    # grayscale (N, H, W) is accepted for 1-channel models
    np.testing.assert_array_equal(r.predict(x[..., 0]), logits)


def test_litert_ref_matches_litert(exported):
    x = exported["x"][:64]
    for name in ("model_int8.tflite", "model_fp32.tflite"):
        a = runtime.load(art(exported, name), runtime="litert").predict(x)
        b = runtime.load(art(exported, name), runtime="litert-ref").predict(x)
        assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.98
        np.testing.assert_allclose(a, b, atol=0.2)


def test_onnx_runner_and_keras_runner(exported):
    x = exported["x"][:32]
    r = runtime.load(art(exported, "model_int8.onnx"), threads=1)
    assert r.runtime == "onnxruntime" and r.providers == ["CPUExecutionProvider"]
    assert r.prepare(x).dtype == np.uint8
    k = runtime.load(exported["run"] / "best.keras")
    assert k.runtime == "keras" and k.metadata["class_names"][1] == "Trouser"
    np.testing.assert_allclose(k.predict(x), exported["keras"][:32], atol=1e-4)
    f = runtime.load(art(exported, "model_fp32.onnx"), threads=2)
    assert f.prepare(x).dtype == np.float32 and f.threads == 2
    np.testing.assert_allclose(f.predict(x), exported["keras"][:32], atol=1e-3)


@pytest.mark.parametrize(
    "name", ["model_int8.tflite", "model_fp16.tflite", "model_fp32.onnx", "model_int8.onnx", "../best.keras"]
)
def test_input_checks(exported, name):
    r = runtime.load(art(exported, name), threads=1)
    with pytest.raises(CnnedgeError, match="input 2×2 is smaller than this model's minimum 8×8"):
        r.predict(np.zeros((1, 2, 2, 1), np.uint8))
    with pytest.raises(CnnedgeError, match="expects 1 channel, got 3"):
        r.predict(np.zeros((1, 28, 28, 3), np.uint8))
    with pytest.raises(CnnedgeError, match="expected images of shape"):
        r.predict(np.zeros((28,), np.uint8))
    assert r.predict(np.zeros((1, 8, 8, 1), np.uint8)).shape == (1, 10)


# ------------------------------------------------------------------------------ metadata
def test_read_metadata_errors(exported, tmp_path):
    with pytest.raises(CnnedgeError, match="no model file"):
        runtime.read_metadata(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"hello world, not a flatbuffer")
    with pytest.raises(CnnedgeError, match="junk.tflite is not a TFLite model"):
        runtime.read_metadata(junk)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(open(art(exported, "model_fp32.tflite"), "rb").read()[:600])
    with pytest.raises(CnnedgeError, match="cut.tflite"):
        runtime.read_metadata(cut)
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CnnedgeError, match="bad.onnx is not a valid ONNX model"):
        runtime.read_metadata(bad_onnx)
    with pytest.raises(CnnedgeError, match="expected a .tflite or .onnx"):
        runtime.read_metadata(exported["run"] / "labels.json")


def test_model_without_metadata_is_refused(exported, tmp_path):
    from cnnedge.backend import tf

    conv = tf.lite.TFLiteConverter.from_keras_model(exported["model"])
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(conv.convert())
    with pytest.raises(CnnedgeError, match="plain.tflite has no cnnedge metadata"):
        runtime.read_metadata(plain)
    with pytest.raises(CnnedgeError, match="no cnnedge metadata"):
        runtime.load(plain)


def test_embedded_metadata_replaces_old_entry(exported):
    buf = open(art(exported, "model_fp32.tflite"), "rb").read()
    new = artifacts.embed_tflite_metadata(buf, {"hello": 1})
    assert artifacts.tflite_metadata(new) == {"hello": 1}
    from ai_edge_litert.interpreter import Interpreter

    Interpreter(model_content=new).allocate_tensors()


def test_runtime_module_does_not_import_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, cnnedge.runtime as r; r.list_runtimes(); r.available_runtimes(); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
