"""`cnnedge export`: every format × precision from a small trained run (float + QAT), agreement
with Keras, quantized ONNX kernels, metadata, dynamic H×W and the error cases. The run is the
session's ``tiny_run`` (conftest.py).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import FASHION_CLASSES as CLASSES

from cnnedge.errors import CnnedgeError


@pytest.fixture(scope="module")
def exported(tiny_run):
    return tiny_run


def art(exported, name) -> str:
    return str(exported["run"] / "export" / name)


def predict(path, x, runtime=None):
    from cnnedge import runtime as rt

    return rt.load(path, runtime=runtime, threads=2).predict(x, batch_size=256)


def agreement(a, b) -> float:
    return float(np.mean(a.argmax(1) == b.argmax(1)))


# ------------------------------------------------------------------------------ files
def test_export_writes_every_artifact(exported):
    res = exported["results"]
    names = sorted(Path(r["path"]).name for r in res)
    assert names == sorted(
        [
            "model_fp32.tflite",
            "model_fp16.tflite",
            "model_int8.tflite",
            "model_int8_ptq.tflite",
            "model_fp32.onnx",
            "model_int8.onnx",
        ]
    )
    export_dir = exported["run"] / "export"
    assert sorted(p.name for p in export_dir.iterdir()) == names  # no temp files left
    by = {Path(r["path"]).name: r for r in res}
    for r in res:
        assert set(r) >= {"path", "format", "precision", "bytes", "source", "seconds"}
        assert r["bytes"] == Path(r["path"]).stat().st_size > 0
    assert by["model_int8.tflite"]["source"] == "qat"
    assert by["model_int8_ptq.tflite"]["source"] == "ptq"
    assert by["model_fp32.tflite"]["source"] == "float"
    assert by["model_int8.onnx"]["source"] == "qat"  # default route: from the QAT int8 TFLite
    # size goal: int8 TFLite <= 1/3 of fp32 TFLite; fp16 about half
    assert by["model_int8.tflite"]["bytes"] <= by["model_fp32.tflite"]["bytes"] / 3
    assert by["model_fp16.tflite"]["bytes"] < 0.6 * by["model_fp32.tflite"]["bytes"]


def test_tflite_signature_is_dynamic_and_int8_input_exact(exported):
    from ai_edge_litert.interpreter import Interpreter

    for name in ("model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite", "model_int8_ptq.tflite"):
        it = Interpreter(model_path=art(exported, name))
        i = it.get_input_details()[0]
        assert list(i["shape_signature"]) == [-1, -1, -1, 1], name
        if "int8" in name:
            assert i["dtype"] == np.int8
            assert i["quantization"] == (1.0, -128), name


# ------------------------------------------------------------------------ agreement
def test_fp32_artifacts_match_keras(exported):
    x, ref = exported["x"], exported["keras"]
    for name in ("model_fp32.tflite", "model_fp32.onnx"):
        out = predict(art(exported, name), x)
        assert agreement(out, ref) >= 0.999, name
        assert np.abs(out - ref).max() < 1e-3, name


def test_fp16_tflite_close_to_keras(exported):
    x, ref = exported["x"], exported["keras"]
    out = predict(art(exported, "model_fp16.tflite"), x)
    assert agreement(out, ref) >= 0.99
    assert np.abs(out - ref).max() < 0.1


def test_int8_tflite_matches_qat_model(exported):
    x = exported["x"]
    out = predict(art(exported, "model_int8.tflite"), x)
    assert agreement(out, exported["qat"]) >= 0.99
    assert np.mean(out.argmax(1) == exported["y"]) > 0.75
    ptq = predict(art(exported, "model_int8_ptq.tflite"), x)
    assert agreement(ptq, exported["keras"]) >= 0.95


def test_int8_onnx_matches_int8_tflite(exported, tmp_path):
    """The same integer arithmetic: at most one output quantization step apart (requantization
    rounding). On an x86 CPU without VNNI onnxruntime's U8S8 kernels saturate with the default
    int8 weights (up to 27 steps, 98.2 % agreement measured), so there the uint8 layout, the
    exact one for such CPUs, is the file held to it."""
    from cnnedge.export import export
    from cnnedge.verify import x86_without_vnni

    x = exported["x"]
    path = art(exported, "model_int8.onnx")
    if x86_without_vnni():
        path = export(
            exported["run"],
            formats="onnx",
            precisions="int8",
            out_dir=tmp_path,
            onnx_weights="uint8",
            verify=0,
        )[0]["path"]
    tfl = predict(art(exported, "model_int8.tflite"), x)
    onx = predict(path, x)
    assert agreement(onx, tfl) >= 0.998
    step = np.diff(np.unique(tfl)).min()
    assert np.abs(onx - tfl).max() <= step * 1.01


def test_int8_onnx_weights_are_symmetric_int8_by_default(exported):
    """Standard QDQ: int8 weights with an explicit zero point 0 (TensorRT, OpenVINO, onnxruntime's
    fast U8S8 kernels on VNNI CPUs and ARM); --onnx-weights uint8 is the AVX2 layout."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(art(exported, "model_int8.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    weights = [
        n
        for n in g.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype != np.int32
    ]
    assert len(weights) >= 5  # rescale, 3 convs, logits
    for n in weights:
        assert inits[n.input[0]].dtype == np.int8, n.name
        assert not inits[n.input[2]].any() and inits[n.input[2]].dtype == np.int8, n.name


def _optimized_ops(path, tmp_path):
    import collections

    import onnx

    from cnnedge import runtime

    opt = tmp_path / f"{Path(path).stem}.opt.onnx"
    runtime.load(path, runtime="onnxruntime", threads=1, optimized_model_path=opt)
    return collections.Counter(n.op_type for n in onnx.load(str(opt)).graph.node)


def test_int8_onnx_runs_quantized_convs(exported, tmp_path):
    import collections

    import onnx

    raw = collections.Counter(n.op_type for n in onnx.load(art(exported, "model_int8.onnx")).graph.node)
    assert raw["QuantizeLinear"] >= 4 and raw["DequantizeLinear"] >= 4
    ops = _optimized_ops(art(exported, "model_int8.onnx"), tmp_path)
    assert ops["QLinearConv"] + ops["ConvInteger"] >= 4  # rescale + 3 stages
    assert ops["Conv"] == 0 and ops["FusedConv"] == 0
    fp32 = _optimized_ops(art(exported, "model_fp32.onnx"), tmp_path)
    assert fp32["QLinearConv"] == 0


def test_int8_onnx_qdq_route(exported, tmp_path):
    from cnnedge.export import export

    res = export(
        exported["run"], formats="onnx", precisions="int8", out_dir=tmp_path / "qdq", int8_method="qdq"
    )
    path = res[0]["path"]
    # the library runs the CLI's quick parity check on what it wrote (512 test images)
    assert res.verify.images == 512 and res.passed == res.verify.passed
    assert [r["artifact"] for r in res.verify.rows][2:] == ["model_int8.onnx"]
    from cnnedge.export import NO_VNNI_NOTE
    from cnnedge.verify import x86_without_vnni

    assert res.notes == ([NO_VNNI_NOTE] if x86_without_vnni() else [])  # the CLI prints them
    assert res[0]["source"] == "ptq"
    ops = _optimized_ops(path, tmp_path)
    assert ops["QLinearConv"] >= 4
    out = predict(path, exported["x"])
    assert agreement(out, exported["keras"]) >= 0.95
    from cnnedge.runtime import read_metadata

    assert read_metadata(path)["int8_method"] == "qdq"


# ------------------------------------------------------------------------------ metadata
def test_metadata_round_trips(exported):
    from cnnedge.runtime import read_metadata

    for r in exported["results"]:
        m = read_metadata(r["path"])
        assert m["class_names"] == CLASSES
        assert m["format"] == r["format"] and m["precision"] == r["precision"]
        assert m["dynamic_hw"] is True and m["min_input_size"] == 8
        assert m["channels"] == 1 and m["input_layout"] == "NHWC"
        assert m["image_size"] == [28, 28] and m["pixel_range"] == [0, 255]
        assert m["recipe"] == "fashion_mnist_tiny" and m["params"] > 20000
        assert m["macs_per_image"] > 0 and m["source_run"]
        assert m["source"] == r["source"]
    m = read_metadata(art(exported, "model_int8.tflite"))
    assert (m["input_dtype"], m["input_scale"], m["input_zero_point"]) == ("int8", 1.0, -128)
    assert m["output_dtype"] == "int8" and m["output_scale"] > 0
    m = read_metadata(art(exported, "model_int8.onnx"))
    assert (m["input_dtype"], m["input_scale"], m["input_zero_point"]) == ("uint8", 1.0, 0)
    m = read_metadata(art(exported, "model_fp32.onnx"))
    assert m["input_dtype"] == "float32" and m["input_scale"] is None


def test_onnx_metadata_props_have_flat_keys(exported):
    import onnxruntime as ort

    sess = ort.InferenceSession(art(exported, "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    assert json.loads(props["class_names"]) == CLASSES
    assert json.loads(props["cnnedge"])["format"] == "onnx"
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]


# ------------------------------------------------------------------------- dynamic H×W
def test_same_class_at_28_and_56(exported):
    """A 28×28 test image and its 2× upscale (np.repeat) get the same class through every
    exported model (images chosen where the Keras model itself is size-stable and confident)."""
    x, y, ref = exported["x"], exported["y"], exported["keras"]
    big_all = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    ref_big = exported["model"].predict(big_all.astype(np.float32), verbose=0)

    def margin(logits):
        s = np.sort(logits, axis=1)
        return s[:, -1] - s[:, -2]

    ok = (ref.argmax(1) == y) & (ref_big.argmax(1) == y)
    score = np.where(ok, np.minimum(margin(ref), margin(ref_big)), -np.inf)
    best = np.argsort(score)[-3:]  # three confidently, correctly classified test images
    assert np.all(np.isfinite(score[best]))
    small, big = x[best], big_all[best]
    assert big.shape == (3, 56, 56, 1)
    for name in ("model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx", "model_int8.onnx"):
        a = predict(art(exported, name), small).argmax(1)
        b = predict(art(exported, name), big).argmax(1)
        assert list(a) == list(y[best]), name
        assert list(b) == list(a), name
    out = predict(art(exported, "model_fp32.onnx"), big_all[:64])
    assert np.abs(out - ref_big[:64]).max() < 1e-3


# ------------------------------------------------------------------------------- errors
def test_unknown_format_and_precision(exported):
    from cnnedge.export import export

    with pytest.raises(CnnedgeError, match="unknown export format 'coreml'.*tflite"):
        export(exported["run"], formats="coreml")
    with pytest.raises(CnnedgeError, match="unknown precision 'int4'.*fp32, fp16, int8"):
        export(exported["run"], precisions=["int4"])
    with pytest.raises(CnnedgeError, match="fp16 is not supported by onnx"):
        export(exported["run"], formats="onnx", precisions="fp16")
    with pytest.raises(CnnedgeError, match="int8_method"):
        export(exported["run"], int8_method="magic")


def test_missing_best_keras_and_corrupt_file(exported, tmp_path):
    from cnnedge.export import export

    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(CnnedgeError, match="no best.keras"):
        export(empty)
    assert list(empty.iterdir()) == []
    corrupt = tmp_path / "corrupt_run"
    corrupt.mkdir()
    (corrupt / "best.keras").write_bytes(b"this is not a zip file")
    with pytest.raises(CnnedgeError, match="cannot load model"):
        export(corrupt)
    assert sorted(p.name for p in corrupt.iterdir()) == ["best.keras"]
    with pytest.raises(CnnedgeError, match="no run directory or model file"):
        export(tmp_path / "nowhere")
    txt = tmp_path / "model.txt"
    txt.write_text("x")
    with pytest.raises(CnnedgeError, match="expected a run directory or a .keras"):
        export(txt)


def test_bare_model_int8_needs_calibration(exported, tmp_path):
    from cnnedge.export import export

    path = tmp_path / "bare.keras"
    shutil.copy(exported["run"] / "best.keras", path)
    with pytest.raises(CnnedgeError, match="int8 export needs calibration data: pass --data"):
        export(path, precisions="int8")
    assert not (tmp_path / "bare_export").exists()
    out = tmp_path / "out"
    res = export(
        path, formats="tflite", precisions=["fp32", "int8"], out_dir=out, calibration=exported["x"][:64]
    )
    assert sorted(Path(r["path"]).name for r in res) == ["model_fp32.tflite", "model_int8.tflite"]
    assert {r["source"] for r in res} == {"float", "ptq"}
    from cnnedge.runtime import read_metadata

    m = read_metadata(out / "model_int8.tflite")
    assert m["class_names"] == [str(i) for i in range(10)]  # no labels.json beside it
    assert (m["input_scale"], m["input_zero_point"]) == (1.0, -128)
    assert m["source_run"] is None


def test_failure_midway_leaves_nothing(exported, tmp_path, monkeypatch):
    import cnnedge.export as ex
    import cnnedge.export.onnx as ex_onnx

    def boom(job):
        raise CnnedgeError("simulated ONNX failure")

    monkeypatch.setattr(ex_onnx, "onnx_fp32", boom)
    out = tmp_path / "out"
    with pytest.raises(CnnedgeError, match="simulated"):
        ex.export(exported["run"], precisions="fp32", out_dir=out)  # tflite written first
    assert not out.exists()


def test_qat_model_passed_as_float_model_is_refused(exported):
    from cnnedge.export import export

    with pytest.raises(CnnedgeError, match="is a QAT model"):
        export(exported["run"] / "qat.h5", precisions="fp32")


@pytest.mark.parametrize("weights, noted", [("int8", True), ("uint8", False)])
def test_export_returns_the_no_vnni_note(weights, noted, monkeypatch):
    """On an x86 CPU without VNNI an int8-weight ONNX gets a note in ExportResult.notes (the
    CLI prints each as one `note:` line); the uint8 layout, exact there, none."""
    import cnnedge.verify
    from cnnedge.export import NO_VNNI_NOTE, _notes

    rows = [{"format": "tflite", "precision": "int8"}, {"format": "onnx", "precision": "int8"}]
    monkeypatch.setattr(cnnedge.verify, "x86_without_vnni", lambda: True)
    assert _notes(rows, weights) == ([NO_VNNI_NOTE] if noted else [])
    assert _notes(rows[:1], "int8") == []  # no int8 ONNX written
    monkeypatch.setattr(cnnedge.verify, "x86_without_vnni", lambda: False)
    assert _notes(rows, "int8") == []
