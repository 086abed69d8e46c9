"""`cnnedge verify` and `cnnedge export` CLI on the session's exported tiny run (conftest.py)."""

import json
import shutil

import pytest
from helpers import disagree

from cnnedge.cli import main
from cnnedge.errors import CnnedgeError


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run["run"]


def test_verify_report(run, tmp_path):
    from cnnedge.files import atomic_write_json
    from cnnedge.verify import VerifyReport, verify

    rep = verify(run, n=300)
    assert (run / "verify.json").is_file() and (run / "verify.md").is_file()
    rows = {r["artifact"]: r for r in rep.rows}
    assert {
        "keras-float",
        "keras-qat",
        "model_fp32.tflite",
        "model_int8.tflite",
        "model_int8.onnx",
        "model_fp32.onnx",
        "model_fp16.tflite",
    } <= set(rows)
    assert rep.images == 300 and rep.split == "test"
    assert rows["model_fp32.tflite"]["agreement"] >= 0.999
    assert rows["model_int8.tflite"]["reference"] == "keras-qat"
    assert rows["model_int8_ptq.tflite"]["reference"] == "keras-float"
    assert rows["model_int8.onnx"]["agreement_with_model_int8.tflite"] >= 0.99
    for r in rep.rows:
        assert 0 <= r["accuracy"] <= 1 and r["max_abs_logit_diff"] >= r["mean_abs_logit_diff"]
        assert len(r["per_class_accuracy_change_vs_float"]) == 10
        assert r["flips"] == round((1 - r["agreement"]) * 300)
    md = (run / "verify.md").read_text()
    assert "| model_int8.tflite | litert |" in md
    assert json.loads((run / "verify.json").read_text())["passed"] == rep.passed
    # verify.json is the report's to_dict(), byte for byte, with the keys it always had
    atomic_write_json(tmp_path / "again.json", rep.to_dict())
    assert (tmp_path / "again.json").read_bytes() == (run / "verify.json").read_bytes()
    assert list(rep.to_dict()) == [
        "run",
        "split",
        "images",
        "split_images",
        "class_names",
        "thresholds",
        "gate_ptq",
        "interval",
        "hard_gate_images",
        "rows",
        "passed",
        "inconclusive",
        "notes",
        "firmware",
    ]
    assert rep.firmware == []  # no cnnedge firmware report in this run
    again = VerifyReport.from_dict(json.loads((run / "verify.json").read_text()))
    assert again.passed == rep.passed and again.rows == json.loads(json.dumps(rep.rows))


def test_verify_cli_gate(run, capsys, monkeypatch):
    # an artifact under its threshold fails the gate with exit 1 and names the artifact
    disagree(monkeypatch, "model_fp16.tflite")
    assert main(["verify", str(run), "-n", "200"]) == 1
    cap = capsys.readouterr()
    assert "model_fp16.tflite" in cap.err and "❌" in cap.out
    monkeypatch.undo()
    assert (
        main(
            [
                "verify",
                str(run),
                "-n",
                "200",
                "--min-int8",
                "0",
                "--min-fp16",
                "0",
                "--min-int8-ptq",
                "0",
                "--min-fp32",
                "0",
            ]
        )
        == 0
    )


def test_verify_errors(run, tmp_path, capsys):
    from cnnedge.verify import verify

    with pytest.raises(CnnedgeError, match="no best.keras"):
        verify(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("best.keras", "recipe.yaml"):
        shutil.copy(run / f, bare / f)
    with pytest.raises(CnnedgeError, match="no exported models"):
        verify(bare)
    (bare / "export").mkdir()
    (bare / "export" / "model_int8.tflite").write_bytes(b"garbage")
    assert main(["verify", str(bare)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "model_int8.tflite" in err and "Traceback" not in err


def test_export_cli(run, tmp_path, capsys):
    out = tmp_path / "onnx_only"
    assert (
        main(
            ["export", str(run), "--format", "onnx", "--precision", "fp32", "-o", str(out), "--verify", "64"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "model_fp32.onnx" in text and "next: cnnedge verify" in text
    assert [p.name for p in out.iterdir()] == ["model_fp32.onnx"]
    assert main(["export", str(run), "--format", "coreml"]) == 2
    assert "unknown export format" in capsys.readouterr().err
    assert main(["export", str(run), "--precision", "int4"]) == 2


def test_flips_within_one_output_step():
    import numpy as np

    from cnnedge.verify import _compare, flips_text

    ref = np.array(
        [
            [1.0, 0.96, 0.0],  # margin 0.04 ≤ step 0.05: a near-tie flip
            [1.0, 0.50, 0.0],  # margin 0.5: a real flip
            [0.0, 2.00, 0.0],
        ],
        np.float32,
    )
    art = np.array([[1.0, 1.05, 0.0], [0.0, 1.00, 0.0], [0.0, 2.0, 0.0]], np.float32)
    labels, float_pred = np.array([0, 0, 1]), ref.argmax(1)
    row = _compare(art, ref, labels, float_pred, 3, output_step=0.05)
    assert row["flips"] == 2 and row["flips_within_one_step"] == 1
    assert flips_text(row) == "2 (1 ≤ 1 step)"
    row = _compare(art, ref, labels, float_pred, 3)  # float artifacts: no step, plain count
    assert row["flips_within_one_step"] is None and flips_text(row) == "2"
