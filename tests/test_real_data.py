"""Real-data runs (marked slow): the quick Fashion-MNIST recipe end to end — train + QAT,
export every artifact, verify parity, bench one row — a CIFAR-10 JPEG-folder run (train + QAT),
and the reference checkpoints' figures.

The quick recipe end to end, the suite's heaviest test, is marked full too: `make test-full` runs
it, `make test` the others. `make test-fast` (`-m "not slow"`) skips this file.
"""

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FASHION = Path("/usr/share/datasets/fashion-mnist")
# the Makefile and CI pass the folder holding cifar10-images/ (the library never guesses it)
CIFAR = Path(os.environ.get("CNNEDGE_DATA") or "/nonexistent") / "cifar10-images"


@pytest.fixture
def cli(capsys, monkeypatch):
    """`cnnedge ARGS` in this process (the CLI's code path without a fresh TensorFlow import
    per command); returns what it printed."""
    from cnnedge.cli import main

    def run(*args, cwd):
        monkeypatch.chdir(cwd)
        rc = main(list(args))
        out, err = capsys.readouterr()
        assert rc == 0, (out + err)[-4000:]
        return out

    return run


@pytest.mark.full
@pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_fashion_mnist_quick_end_to_end(tmp_path, cli):
    cli("train", "--recipe", "fashion_mnist_quick", "--runs-dir", "runs", cwd=tmp_path)
    run = tmp_path / "runs" / "fashion_mnist_quick" / "exp"
    s = json.loads((run / "summary.json").read_text())
    assert s["params"] == 92059 and s["test_images"] == 10000
    assert s["test_accuracy"] >= 0.88, s  # 3 epochs of the flagship model
    assert abs(s["qat_test_accuracy"] - s["test_accuracy"]) < 0.01

    out = cli("export", str(run), "--verify", "0", cwd=tmp_path)
    assert "next: cnnedge verify" in out
    sizes = {p.name: p.stat().st_size for p in (run / "export").iterdir()}
    assert sizes["model_int8.tflite"] <= sizes["model_fp32.tflite"] / 3

    cli("verify", str(run), "-n", "3000", cwd=tmp_path)
    rep = json.loads((run / "verify.json").read_text())
    rows = {r["artifact"]: r for r in rep["rows"]}
    assert rep["passed"]
    assert rows["model_int8.tflite"]["agreement"] >= 0.995
    assert abs(rows["model_int8.tflite"]["accuracy"] - rows["keras-float"]["accuracy"]) <= 0.005
    assert rows["model_int8.onnx"]["agreement_with_model_int8.tflite"] >= 0.995

    cli(
        "bench",
        str(run / "export" / "model_int8.tflite"),
        "-r",
        "litert",
        "-t",
        "1",
        "--quick",
        "-o",
        str(tmp_path / "bench"),
        cwd=tmp_path,
    )
    b = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert b["rows"][0]["status"] == "ok" and b["rows"][0]["accuracy"] > 0.85


@pytest.mark.skipif(not (CIFAR / "test").is_dir(), reason="$CNNEDGE_DATA/cifar10-images absent")
def test_cifar10_tiny_on_the_jpeg_folder(tmp_path, cli):
    cli(
        "train",
        "--recipe",
        "cifar10_tiny",
        "--runs-dir",
        "runs",
        "--set",
        f"data.dataset={CIFAR}",
        cwd=tmp_path,
    )
    s = json.loads((tmp_path / "runs/cifar10_tiny/exp/summary.json").read_text())
    assert s["input_size"] == [32, 32, 3] and s["test_images"] == 1000
    assert s["test_accuracy"] > 0.2  # 60 steps: above chance (0.1), not a benchmark


@pytest.mark.parametrize(
    "name, data, split", [("cifar10", CIFAR, "test"), ("fashion_mnist", FASHION, "test")]
)
def test_reference_checkpoint_reproduces_its_figure(name, data, split):
    """`cnnedge eval` on the shipped file gives the accuracy its .json (and the docs) state."""
    from cnnedge import weights
    from cnnedge.evaluate import evaluate_run

    if not data.is_dir():
        pytest.skip(f"{data} absent")
    info = weights.info(name)
    ev = evaluate_run(name, dataset=str(data))  # a reference checkpoint by name
    assert ev.split == split and ev.n == info["test_images"]
    assert ev.accuracy == pytest.approx(info["test_accuracy"], abs=1e-4)
    assert weights.path(name).stat().st_size <= 500 * 1024
