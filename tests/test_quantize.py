"""QAT: quantize_model wrapping, the pinned input range, .h5 round trip, calibration images,
the QAT phase of a run, and clear errors."""

import json

import numpy as np
import pytest
from helpers import small_recipe

from cnnedge import models, quantize
from cnnedge.cli import main
from cnnedge.errors import CnnedgeError


def test_apply_qat_pins_input_range_and_roundtrips(tmp_path):
    m = models.create_model("gmp_xs", num_classes=10, channels=1)
    q = quantize.apply_qat(m)
    assert quantize.input_range(q) == (0.0, 255.0)
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    y1 = q(x, training=False).numpy()
    quantize.save_qat(q, tmp_path / "qat.h5")
    q2 = models.load_model(tmp_path / "qat.h5")  # one loader for float and QAT models
    np.testing.assert_allclose(q2(x, training=False).numpy(), y1, rtol=1e-5, atol=1e-5)
    assert quantize.input_range(q2) == (0.0, 255.0)
    with pytest.raises(CnnedgeError, match=".h5"):
        quantize.save_qat(q, tmp_path / "qat.keras")
    with pytest.raises(CnnedgeError, match="no model file"):
        models.load_model(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not a model")
    with pytest.raises(CnnedgeError, match="cannot load model .*junk.h5"):
        models.load_model(tmp_path / "junk.h5")


def test_unquantizable_model_clear_error():
    from cnnedge.backend import keras

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inp)
    x = keras.layers.LayerNormalization()(x)  # tfmot has no QuantizeConfig for it
    out = keras.layers.Dense(2)(keras.layers.GlobalMaxPooling2D()(x))
    with pytest.raises(CnnedgeError, match="tfmot cannot quantize"):
        quantize.apply_qat(keras.Model(inp, out))


def test_representative_images_are_class_balanced(easy_idx):
    from cnnedge import data

    src = data.open_dataset(str(easy_idx))
    imgs = quantize.representative_images(src, 40, seed=1)
    assert imgs.shape == (40, 28, 28, 1) and imgs.dtype == np.uint8
    # 4 brightness classes (30, 100, 170, 240): all of them present
    levels = np.round((imgs.reshape(40, -1).mean(1) - 30) / 70).astype(int)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    assert np.array_equal(imgs, quantize.representative_images(src, 40, seed=1))
    with pytest.raises(CnnedgeError):
        quantize.representative_images(src, 0)


def test_qat_phase_of_a_run(easy_idx, tmp_path, capsys):
    from cnnedge.train import train

    r = small_recipe(easy_idx, **{"qat.enabled": "true", "qat.epochs": 1})
    res = train(r, runs_dir=tmp_path, verbose=0)
    s = res.summary
    assert (res.run_dir / "qat.h5").is_file()
    assert s["qat_test_accuracy"] > 0.6 and s["qat_input_range"] == [0.0, 255.0]
    assert json.loads((res.run_dir / "state.json").read_text())["finished"]
    # `cnnedge quantize` re-runs the phase on the finished run
    assert main(["quantize", str(res.run_dir), "--epochs", "1", "--lr", "1e-4"]) == 0
    assert "QAT: 1 epochs" in capsys.readouterr().out
    assert main(["quantize", str(tmp_path / "nope")]) == 2
    assert "no best.keras" in capsys.readouterr().err
    assert main(["quantize", str(res.run_dir), "--epochs", "0"]) == 2
    assert "--epochs 0 is out of range" in capsys.readouterr().err


def test_quantize_from_python_takes_the_run_lock(tmp_path):
    """fine_tune_qat holds the run's lock itself, as `cnnedge quantize` does: a run another
    command is writing is refused, naming it, before anything is read or written."""
    import subprocess
    import sys

    from cnnedge.train import fine_tune_qat

    hold = (
        "import sys, time\nfrom cnnedge.run import Run\n"
        "with Run(sys.argv[1]).lock('cnnedge export'):\n"
        "    print('held', flush=True)\n    time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CnnedgeError, match=f"{tmp_path} is in use by `cnnedge export`"):
            fine_tune_qat(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(CnnedgeError, match="no best.keras"):  # released: the run itself is checked
        fine_tune_qat(tmp_path)


def test_quantize_without_the_float_summary_changes_nothing(tiny_run, tmp_path, capsys):
    """A run whose summary.json is gone: quantize refuses before training (one line, exit 2)
    instead of fine-tuning, writing qat.h5 and the curves, and failing at the end."""
    import shutil
    from pathlib import Path

    from helpers import one_error, tree

    from cnnedge.run import Run

    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run, ignore=shutil.ignore_patterns("tb"))
    (run / Run.SUMMARY).unlink()
    files = lambda: {k: v for k, v in tree(run).items() if Path(k).name != ".lock"}  # noqa: E731
    before = files()
    one_error(capsys, main(["quantize", str(run), "--epochs", "1"]), "summary.json: missing")
    assert files() == before
