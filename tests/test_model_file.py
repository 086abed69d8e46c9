"""One model resolver for `predict` and the demo (cnnedge.model_file): it knows the shipped
reference checkpoints as `eval` and `--weights` do, and feeds them at their sidecar's training
size with their class names."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cnnedge import model_file, weights
from cnnedge.cli import main
from cnnedge.errors import CnnedgeError

cv2 = pytest.importorskip("cv2")

# the Makefile and CI pass the folder holding cifar10-images/ (the library never guesses it)
CIFAR = Path(os.environ.get("CNNEDGE_DATA") or "/nonexistent") / "cifar10-images"


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 48×64 colour photo: not 32×32, so a model without its training size could not run."""
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    img = np.zeros((48, 64, 3), np.uint8)
    img[8:40, 16:48] = (40, 90, 200)
    assert cv2.imwrite(str(path), img)
    return path


def test_reference_names_resolve_like_eval_and_weights(tmp_path, monkeypatch):
    assert model_file.resolve_model("cifar10") == weights.path("cifar10")
    assert model_file.resolve_model("fashion-mnist") == weights.path("fashion_mnist")
    monkeypatch.chdir(tmp_path)
    Path("cifar10").write_bytes(b"x")  # a file of that name in the way is what -m means
    assert model_file.resolve_model("cifar10") == Path("cifar10")


def test_a_mistyped_name_is_one_line_with_a_hint():
    with pytest.raises(
        CnnedgeError,
        match=r"^no model file or run directory at cifar1; did you "
        r"mean the reference checkpoint 'cifar10'\?$",
    ):
        model_file.resolve_model("cifar1")
    with pytest.raises(CnnedgeError, match=r"^no model file or run directory at nope/x$"):
        model_file.resolve_model("nope/x")


def test_the_sidecar_completes_a_reference_checkpoints_metadata():
    info = weights.info("cifar10")
    meta = model_file.keras_preprocessing(weights.path("cifar10"), len(info["class_names"]))
    assert meta["image_size"] == [32, 32] and meta["class_names"] == info["class_names"]
    assert meta["size_policy"] == "fixed" and meta["background"] is None
    assert weights.preprocessing("fashion_mnist")["background"] == "dark"
    # names that do not fit the model's head are not used; other .keras files get nothing here
    assert "class_names" not in model_file.keras_preprocessing(weights.path("cifar10"), 3)
    assert model_file.keras_preprocessing(Path("elsewhere/model.keras"), 10) == {}
    assert weights.reference_of(weights.path("cifar10")) == "cifar10"
    assert weights.reference_of("elsewhere/cifar10.keras") is None


def test_the_demo_resolves_the_same_names_and_refuses_keras(tmp_path):
    from edge_demo.model import load_model, resolve_model

    assert resolve_model("cifar10") == weights.path("cifar10")
    with pytest.raises(CnnedgeError, match="cifar10.keras: the demo runs exported .tflite or .onnx models"):
        load_model("cifar10")
    with pytest.raises(CnnedgeError, match="no exported model in .*cnnedge export"):
        resolve_model(tmp_path)


def _rows(path: Path):
    doc = json.loads(path.read_text())
    return doc["model"], [
        (p["source"], [t["class"] for t in p["top"]], p["error"]) for p in doc["predictions"]
    ]


def test_predict_by_name_or_file_uses_the_sidecar(photo, tmp_path, capsys):
    """`predict photo -m cifar10` runs (it used to be "no model file"), and the shipped .keras
    file by path needs no --image-size and answers class names, not indices."""
    names = weights.info("cifar10")["class_names"]
    by_name, by_file = tmp_path / "name.json", tmp_path / "file.json"
    assert main(["predict", str(photo), "-m", "cifar10", "--json", str(by_name)]) == 0
    assert main(["predict", str(photo), "-m", str(weights.path("cifar10")), "--json", str(by_file)]) == 0
    model, rows = _rows(by_name)
    assert model == str(weights.path("cifar10")) and _rows(by_file) == (model, rows)
    [(source, top, error)] = rows
    assert source == str(photo) and error is None
    assert len(top) == 3 and set(top) <= set(names)  # "cat", not "3"
    assert "--image-size" not in capsys.readouterr().err


@pytest.mark.skipif(not CIFAR.is_dir(), reason="$CNNEDGE_DATA/cifar10-images absent")
def test_cifar_cats_are_cats():
    from cnnedge.predict import predict

    cats = sorted((CIFAR / "test" / "cat").glob("*.jpg"))[:8]
    res = predict(cats, "cifar10", top_k=1)
    top1 = [p.top[0][0] for p in res]
    assert not res.errors and res.runtime == "keras"
    assert top1.count("cat") >= 6, top1  # the checkpoint scores 87.5 % on the test split
