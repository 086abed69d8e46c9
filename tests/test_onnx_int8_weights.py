"""The int8 ONNX weight layouts (``onnx_weights``): int8 symmetric (zero point 0, the default:
standard QDQ for TensorRT / OpenVINO, onnxruntime's fast U8S8 kernels on VNNI and ARM) and
uint8 + 128 (zero point 128: onnxruntime's U8U8 kernels, exact on AVX2 CPUs without VNNI too).
Both must keep the int8 TFLite's values. The run is the session's ``tiny_run`` (conftest.py).
"""

import numpy as np
import pytest

from cnnedge.errors import CnnedgeError
from cnnedge.verify import x86_without_vnni


@pytest.fixture(scope="module")
def onnx_both(tiny_run, tmp_path_factory):
    from cnnedge.export import export

    root = tmp_path_factory.mktemp("onnx_weights")
    out = {}
    for weights in ("int8", "uint8"):
        res = export(
            tiny_run["run"],
            formats="onnx",
            precisions="int8",
            out_dir=root / weights,
            onnx_weights=weights,
            verify=0,
        )
        out[weights] = res[0]["path"]
    return out


def _weights(path):
    """(weight, zero point) arrays of every weight DequantizeLinear (int32 biases left out)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(path).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    return [
        (inits[n.input[0]], inits[n.input[2]] if len(n.input) > 2 else None)
        for n in g.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype != np.int32
    ]


def test_int8_weights_are_symmetric_int8(onnx_both):
    ws = _weights(onnx_both["int8"])
    assert len(ws) >= 5  # rescale, 3 convs, logits
    for w, zp in ws:
        assert w.dtype == np.int8
        assert zp is not None and zp.dtype == np.int8 and not zp.any()  # explicit zero point 0


def test_uint8_weights_are_shifted_by_128(onnx_both):
    ws8, wsu = _weights(onnx_both["int8"]), _weights(onnx_both["uint8"])
    assert len(wsu) == len(ws8)
    for (w8, _), (wu, zp) in zip(ws8, wsu):
        assert wu.dtype == np.uint8 and zp.dtype == np.uint8 and np.all(zp == 128)
        assert np.array_equal(wu.astype(np.int16) - 128, w8)  # the same quantized values


def test_metadata_names_the_layout(onnx_both, tiny_run):
    from cnnedge.runtime import read_metadata

    for weights, path in onnx_both.items():
        m = read_metadata(path)
        assert m["onnx_weights"] == weights
        assert (m["input_dtype"], m["input_scale"], m["input_zero_point"]) == ("uint8", 1.0, 0)
    # the run's own export (conftest: default options) carries the default layout
    assert read_metadata(tiny_run["run"] / "export" / "model_int8.onnx")["onnx_weights"] == "int8"


def test_both_layouts_equal_int8_tflite(onnx_both, tiny_run):
    from cnnedge import runtime

    x = tiny_run["x"]
    tfl = runtime.load(tiny_run["run"] / "export" / "model_int8.tflite", threads=2).predict(x)
    step = np.diff(np.unique(tfl)).min()
    for weights, path in onnx_both.items():
        out = runtime.load(path, runtime="onnxruntime", threads=2).predict(x)
        # U8S8 (int8 weights) on an x86 CPU without VNNI adds into saturating int16 sums: only
        # the uint8 layout is exact there (measured on an AVX2 EPYC: 98.2 % agreement)
        if weights == "int8" and x86_without_vnni():
            continue
        assert np.array_equal(out.argmax(1), tfl.argmax(1)), weights
        assert np.abs(out - tfl).max() <= step * 1.01, weights


def test_onnx_weights_option_is_checked(tiny_run, tmp_path):
    from cnnedge.export import export

    with pytest.raises(CnnedgeError, match="unknown onnx_weights"):
        export(
            tiny_run["run"],
            formats="onnx",
            precisions="int8",
            out_dir=tmp_path,
            onnx_weights="int4",
            verify=0,
        )
    with pytest.raises(CnnedgeError, match="needs int8_method tflite"):
        export(
            tiny_run["run"],
            formats="onnx",
            precisions="int8",
            out_dir=tmp_path,
            onnx_weights="uint8",
            int8_method="qdq",
            verify=0,
        )


def test_verify_names_missing_vnni(onnx_both, tiny_run, monkeypatch):
    """An int8-weight ONNX that disagrees with the int8 TFLite on an x86 CPU without VNNI gets a
    one-line hint at --onnx-weights uint8 (the disagreement is simulated here)."""
    from cnnedge import runtime, verify

    load = runtime.load

    def drifting(path, **kw):  # the ONNX runner's logits rolled by one class: every image flips
        r = load(path, **kw)
        if str(path).endswith(".onnx"):
            predict = r.predict
            monkeypatch.setattr(r, "predict", lambda x, **k: np.roll(predict(x, **k), 1, axis=1))
        return r

    monkeypatch.setattr(runtime, "load", drifting)
    monkeypatch.setattr(verify, "x86_without_vnni", lambda: True)
    tfl = tiny_run["run"] / "export" / "model_int8.tflite"
    rep = verify.verify(tiny_run["run"], n=64, write=False, artifacts=[tfl, onnx_both["int8"]])
    lines = verify.agreement_lines(rep)
    assert len(lines) == 1 and "lacks VNNI" in lines[0] and "--onnx-weights uint8" in lines[0]
    rep = verify.verify(tiny_run["run"], n=64, write=False, artifacts=[tfl, onnx_both["uint8"]])
    assert "VNNI" not in verify.agreement_lines(rep)[0]  # the uint8 layout needs no hint
