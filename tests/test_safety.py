"""Model files never run code: a Lambda layer whose function writes a file, saved as HDF5 (the
format where Keras would rebuild and run it), is refused on every path that loads a model —
eval, export, bench, a run's qat.h5, an HDF5 file renamed best.keras, model.weights and
distill.teachers — with one error line, and the file is never written."""

import shutil
from pathlib import Path

import pytest

from cnnedge.cli import main
from cnnedge.errors import CnnedgeError
from cnnedge.run import Run


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """An .h5 model with a Lambda that writes ``marker`` when Keras rebuilds it."""
    from cnnedge.backend import keras

    root = tmp_path_factory.mktemp("evil")
    marker = root / "marker.txt"

    def payload(x, path=str(marker)):
        import pathlib

        pathlib.Path(path).write_text("code from a model file ran")
        return x

    inp = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Lambda(payload, name="innocent")(inp)
    x = keras.layers.GlobalMaxPooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x))
    marker.unlink(missing_ok=True)  # building the model above ran it once, here
    path = root / "evil.h5"
    model.save(path)
    assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n" and not marker.exists()
    return {"path": path, "marker": marker, "root": root}


def _refused(capsys, evil, rc):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "refusing to load" in err and "Lambda" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not evil["marker"].exists(), "code from a model file ran"


def test_load_model_refuses_before_deserialising(evil):
    from cnnedge import models

    with pytest.raises(
        CnnedgeError,
        match=r"refusing to load .*evil.h5: it names Lambda "
        r"\(layer 'innocent'\)",
    ):
        models.load_model(evil["path"])
    assert not evil["marker"].exists()


def test_keras_checkpoints_of_the_family_still_load(tiny_run):
    from cnnedge import models

    run = Run(tiny_run["run"])
    for kind in ("float", "qat"):
        assert models.load_model(run.model_path(kind)).output_shape == (None, 10)
    # the resume checkpoint: with its optimizer and schedule (compile config) too
    assert models.load_model(run.model_path("last"), compile=True).optimizer is not None


def test_eval_export_bench_refuse_the_file(evil, tmp_path, capsys):
    _refused(capsys, evil, main(["eval", str(evil["path"]), "--data", "fashion-mnist"]))
    _refused(capsys, evil, main(["export", str(evil["path"]), "-o", str(tmp_path / "x")]))
    assert not (tmp_path / "x").exists()
    assert main(["bench", str(evil["path"]), "--quick", "-t", "1", "-o", str(tmp_path)]) == 1
    assert "refusing to load" in capsys.readouterr().err
    assert not evil["marker"].exists()


@pytest.mark.parametrize("kind", ["qat", "float"])
def test_a_run_holding_the_file_is_refused(evil, tiny_run, tmp_path, capsys, kind):
    """A run someone sends you: its qat.h5, or an HDF5 file renamed best.keras."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run, ignore=shutil.ignore_patterns("export", "tb"))
    shutil.copy(evil["path"], Run(run).model_path(kind))
    _refused(capsys, evil, main(["export", str(run), "--verify", "0"]))
    if kind == "float":
        _refused(capsys, evil, main(["eval", str(run)]))


@pytest.mark.parametrize("setting", ["model.weights={}", "distill.teachers=[{}]"])
def test_training_from_the_file_is_refused(evil, tmp_path, capsys, setting):
    rc = main(
        [
            "train",
            "--recipe",
            "fashion_mnist_tiny",
            "--runs-dir",
            str(tmp_path),
            "--set",
            "model.name=gmp_xs",
            "--set",
            setting.format(evil["path"]),
        ]
    )
    _refused(capsys, evil, rc)
    assert Path(evil["path"]).is_file()
