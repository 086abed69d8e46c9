"""Own classes end to end: `train --data` (automatic recipe), `eval --data`, `predict`, the
shared preprocessing, and fine-tuning with a new head. Trains on a generated folder of
coloured images of mixed sizes and formats (seconds)."""

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cnnedge import preprocess
from cnnedge.cli import main
from cnnedge.errors import CnnedgeError
from cnnedge.recipe import apply_overrides, load_recipe, parse_image_size

COLOURS = {"blue": (200, 40, 40), "green": (40, 200, 40), "red": (40, 40, 200)}  # BGR


def write_folder(root: Path, per_class: int, rng, sizes=(20, 60), imbalance=None):
    for i, (name, bgr) in enumerate(COLOURS.items()):
        d = root / name
        d.mkdir(parents=True)
        n = imbalance[i] if imbalance else per_class
        for j in range(n):
            h, w = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
            img = np.clip(np.array(bgr)[None, None] + rng.integers(-30, 31, (h, w, 3)), 0, 255)
            ext = ".png" if j % 2 else ".jpg"
            cv2.imwrite(str(d / f"{j:04d}{ext}"), img.astype(np.uint8))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "photos"
    rng = np.random.default_rng(0)
    write_folder(root / "train", 60, rng)
    write_folder(root / "test", 15, rng)
    return root


@pytest.fixture(scope="module")
def own_run(photos, tmp_path_factory):
    """`cnnedge train --data photos/train` from scratch, 2 short epochs, then int8 TFLite."""
    from cnnedge.export import export

    runs = tmp_path_factory.mktemp("runs")
    rc = main(
        [
            "train",
            "--data",
            str(photos / "train"),
            "--weights",
            "none",
            "--runs-dir",
            str(runs),
            "--set",
            "train.epochs=3",
            "--set",
            "qat.enabled=false",
            "--set",
            "train.batch_size=16",
        ]
    )
    assert rc == 0
    run = runs / "photos" / "exp"  # named after the data folder (train/ is a split folder)
    export(run, formats="tflite", precisions="int8", verify=0)
    return run


# ------------------------------------------------------------------------- the recipe
def test_image_size_syntax_is_one_everywhere():
    assert parse_image_size("64x48") == (64, 48) == parse_image_size("64,48")
    assert parse_image_size("32") == (32, 32) and parse_image_size("keep") == "keep"
    with pytest.raises(CnnedgeError, match="HxW"):
        parse_image_size("64x")
    r = apply_overrides(load_recipe("cifar10"), ["data.image_size=64x64"])
    assert r.data.image_size == (64, 64) and not r.data.keep_size
    r = apply_overrides(r, ["data.image_size=keep"])
    assert r.data.image_size is None and r.data.keep_size


def test_auto_recipe_from_the_data(photos, tmp_path):
    from cnnedge.auto import auto_recipe

    r, notes = auto_recipe(photos / "train", weights="none")
    assert r.name == "photos" and r.model.name == "gmp_xs" and r.model.weights is None
    assert r.data.image_size[0] % 8 == 0 and 32 <= r.data.image_size[0] <= 48
    assert r.data.val_fraction == 0.2 and r.qat.enabled and r.optim.name == "adamw"
    assert not r.train.class_weights and "jitter:20" in r.augment.ops
    assert any("median image size" in n for n in notes)
    assert auto_recipe(photos / "train", weights="none", image_size="keep")[0].data.keep_size
    assert auto_recipe(photos / "train", weights="none", image_size="40x24")[0].data.image_size == (40, 24)
    write_folder(tmp_path / "imb", 0, np.random.default_rng(1), imbalance=(40, 10, 12))
    r, notes = auto_recipe(tmp_path / "imb", weights="none")
    assert r.train.class_weights and any("weighted" in n for n in notes)
    with pytest.raises(CnnedgeError, match="not a folder"):
        auto_recipe(tmp_path / "nope")


def test_python_resolves_the_recipe_the_cli_trained(photos, own_run):
    """resolve_recipe, which train(data=...) runs, gives the recipe `cnnedge train --data` saved;
    with a recipe name, each option sets its field."""
    from cnnedge.recipe import to_dict
    from cnnedge.run import Run
    from cnnedge.train import resolve_recipe, train

    r, notes = resolve_recipe(
        data=photos / "train",
        weights="none",
        overrides=["train.epochs=3", "qat.enabled=false", "train.batch_size=16"],
    )  # own_run's options
    assert to_dict(r) == to_dict(Run(own_run).recipe)
    assert any(n.startswith("model: gmp_xs from scratch") for n in notes)
    r, notes = resolve_recipe(
        "fashion_mnist",
        data=photos / "train",
        minutes=2,
        weights="none",
        image_size="32x32",
        overrides=["train.epochs=1"],
    )
    assert (
        r.name,
        r.data.dataset,
        r.train.max_minutes,
        r.data.image_size,
        r.model.weights,
        r.train.epochs,
        notes,
    ) == ("fashion_mnist", str(photos / "train"), 2.0, (32, 32), None, 1, [])
    with pytest.raises(CnnedgeError, match="give --data FOLDER"):
        resolve_recipe()
    with pytest.raises(CnnedgeError, match="drop --recipe/--set/--data"):
        train(resume=own_run, data=photos / "train")
    with pytest.raises(CnnedgeError, match="--from-best goes with --resume"):
        train("fashion_mnist", from_best=True)


def test_train_data_run_names_its_split(own_run):
    s = json.loads((own_run / "summary.json").read_text())
    assert s["eval_split"] == "val" and "test_accuracy" not in s
    assert s["val_images"] == 36 and s["val_accuracy"] > 0.6  # 20 % of 3 × 60, stratified
    assert s["size_policy"] == "fixed" and s["background"] is None
    assert s["input_size"][:2] == list(
        json.loads(
            json.dumps(
                __import__("yaml").safe_load((own_run / "recipe.yaml").read_text())["data"]["image_size"]
            )
        )
    )


def test_eval_scores_a_separate_folder(own_run, photos, capsys):
    from cnnedge.evaluate import evaluate_run

    ev = evaluate_run(own_run, dataset=str(photos / "test"))
    assert ev.split == "all" and ev.n == 45 and ev.accuracy > 0.6
    ev = evaluate_run(own_run, dataset=str(photos / "test"), take=12)
    assert ev.n == 12 and [sum(r) for r in ev.confusion] == [4, 4, 4]  # stratified
    assert main(["eval", str(own_run), "--data", str(photos / "test"), "-n", "12"]) == 0
    assert "on 12 images of" in capsys.readouterr().out


# ------------------------------------------------------------------------- predict
def test_predict_folder_files_and_errors(own_run, photos, tmp_path):
    from cnnedge.predict import predict

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "garbage.jpg").write_bytes(b"not an image")
    good = next((photos / "test" / "red").glob("*.jpg")).read_bytes()
    (bad / "cut.jpg").write_bytes(good[: len(good) // 2])
    res = predict([photos / "test", bad, str(tmp_path / "missing.png")], own_run, top_k=2)
    rows = res.predictions
    assert len(rows) == 45 + 3 and res.model.suffix == ".tflite"
    errs = {Path(p.source).name: p.error for p in res.errors}
    assert "truncated JPEG" in errs["cut.jpg"] and "cannot decode" in errs["garbage.jpg"]
    assert "no such file" in errs["missing.png"]
    ok = [p for p in rows if not p.error]
    right = sum(Path(p.source).parent.name == p.top[0][0] for p in ok)
    assert right / len(ok) > 0.6 and all(len(p.top) == 2 for p in ok)
    assert all(abs(sum(pr for _, pr in p.top) - 1) < 1 for p in ok)


def test_predict_cli_json_csv_save_dir_and_exit_code(own_run, photos, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted((photos / "test" / "blue").iterdir())[:3]:
        (src / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "sorted"
    rc = main(
        [
            "predict",
            str(src),
            "-m",
            str(own_run),
            "--save-dir",
            str(out),
            "--json",
            str(tmp_path / "p.json"),
            "--csv",
            str(tmp_path / "p.csv"),
        ]
    )
    assert rc == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    assert len(doc["predictions"]) == 3 and doc["runtime"] == "litert"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert [r["class1"] for r in rows] == [p["top"][0]["class"] for p in doc["predictions"]]
    saved = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert saved == sorted(f.name for f in src.iterdir())  # copied under <class>/
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["predict", str(src), "-m", str(own_run)]) == 1  # the others still ran
    assert "3 images, 1 errors" in capsys.readouterr().out


def test_predict_video_every_nth_frame_and_glob(own_run, photos, tmp_path):
    from cnnedge.predict import predict

    video = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(10):
        vw.write(np.full((48, 64, 3), COLOURS["green"], np.uint8))
    vw.release()
    res = predict([video], own_run, every=3)
    assert [p.frame for p in res] == [0, 3, 6, 9] and {p.top[0][0] for p in res} == {"green"}
    res = predict([str(photos / "test" / "*" / "*.png")], own_run)
    assert len(res) == 3 * 7 and not res.errors
    with pytest.raises(CnnedgeError, match="no model"):
        predict([video], tmp_path)


def test_predict_keras_model_and_gray_images_into_rgb(own_run, tmp_path):
    from cnnedge.predict import predict

    gray = tmp_path / "g.png"
    cv2.imwrite(str(gray), np.full((30, 30), 120, np.uint8))
    res = predict([gray], own_run / "best.keras")
    assert not res.errors and res.runtime == "keras"
    assert any("grayscale images converted to RGB" in n for n in res.notes)


# ------------------------------------------------------------------------- preprocessing
def test_fit_policies_and_metadata():
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255
    assert preprocess.fit(img, (16, 16), "stretch").shape == (16, 16, 3)
    lb = preprocess.fit(img, (16, 16), "letterbox")
    assert lb.shape == (16, 16, 3) and lb[0].max() == 0 and lb[8, 0].max() == 255  # black bars
    crop = preprocess.fit(img, (16, 16), "crop")
    assert crop[:, :6].min() == 255 and crop[:, -6:].max() == 0  # the centre of the image
    meta = {
        "channels": 1,
        "image_size": [28, 28],
        "dynamic_hw": True,
        "min_input_size": 8,
        "size_policy": "keep",
    }
    pre = preprocess.Preprocessor(meta)
    assert pre(np.zeros((50, 70, 3), np.uint8)).shape == (50, 70, 1)  # keep: own size
    assert pre(np.zeros((4, 6, 1), np.uint8)).shape == (8, 12, 1)  # enlarged to the minimum
    assert preprocess.background([np.zeros((28, 28, 1), np.uint8)]) == "dark"
    assert preprocess.background([np.full((8, 8, 3), 128, np.uint8)]) is None
    with pytest.raises(CnnedgeError, match="resize policy"):
        preprocess.Preprocessor(meta, resize="squash")


def test_decode_sixteen_bit_gray_and_alpha(tmp_path):
    p16 = tmp_path / "a.png"
    cv2.imwrite(str(p16), np.full((5, 6), 65535, np.uint16))
    assert preprocess.read_image(p16).shape == (5, 6, 1) and preprocess.read_image(p16).max() == 255
    rgba = tmp_path / "b.png"
    cv2.imwrite(str(rgba), np.dstack([np.full((4, 4), v, np.uint8) for v in (10, 20, 30, 255)]))
    assert preprocess.read_image(rgba)[0, 0].tolist() == [30, 20, 10]  # RGB, alpha dropped
    with pytest.raises(CnnedgeError, match="empty file"):
        (tmp_path / "e.jpg").write_bytes(b"")
        preprocess.read_image(tmp_path / "e.jpg")


# ------------------------------------------------------------------------- fine-tuning
def test_new_head_and_gray_from_rgb_checkpoint(own_run):
    from cnnedge import models
    from cnnedge.weights import init_weights

    src = models.load_model(own_run / "best.keras")
    five = models.create_model("gmp_xs", num_classes=5, channels=3)
    assert "new head: 3 -> 5 classes" in init_weights(five, own_run)
    np.testing.assert_array_equal(five.get_layer("logits").get_weights()[0].shape, (64, 5))
    first = next(layer for layer in src.layers if layer.weights)
    np.testing.assert_array_equal(five.get_layer(first.name).get_weights()[0], first.get_weights()[0])
    gray = models.create_model("gmp_xs", num_classes=3, channels=1)
    assert "summed to grayscale" in init_weights(gray, own_run)
    with pytest.raises(CnnedgeError, match="does not match|no layer"):
        init_weights(models.create_model("gmp_s", num_classes=3, channels=3), own_run)


def test_keep_size_records_the_true_policy(photos, tmp_path):
    from cnnedge import artifacts
    from cnnedge.auto import auto_recipe
    from cnnedge.export import export
    from cnnedge.train import train

    r, _ = auto_recipe(photos / "train", weights="none", image_size="keep")
    assert r.data.keep_size and r.data.batch_mode == "bucket"  # the recipe reaches bucketing
    r = apply_overrides(
        r, ["train.epochs=1", "train.steps_per_epoch=3", "qat.enabled=false", "train.batch_size=16"]
    )
    run = train(r, runs_dir=tmp_path, verbose=0).run_dir
    s = json.loads((run / "summary.json").read_text())
    assert s["size_policy"] == "keep" and 20 <= s["input_size"][0] <= 60  # the median, not 32
    export(run, formats="tflite", precisions="fp32", verify=0)
    meta = artifacts.read_metadata(run / "export" / "model_fp32.tflite")
    assert meta["size_policy"] == "keep" and meta["image_size"] == s["input_size"][:2]
    assert meta["resize"] == "stretch" and meta["color_order"] == "RGB"


def test_edge_cases_found_in_review(own_run, tmp_path):
    """Trailing data after a JPEG, a video saved by class, a glob of videos, a tiny class in
    the stratified split, a model file without its run's size, the frozen rescale layer."""
    from cnnedge import models
    from cnnedge.data.base import carve_val
    from cnnedge.predict import predict
    from cnnedge.weights import init_weights

    ok, buf = cv2.imencode(".jpg", np.full((20, 20, 3), 200, np.uint8))
    (tmp_path / "motion.jpg").write_bytes(buf.tobytes() + b"\0" * 4096)  # e.g. a motion photo
    assert preprocess.read_image(tmp_path / "motion.jpg").shape == (20, 20, 3)
    vids = tmp_path / "vids"
    vids.mkdir()
    vw = cv2.VideoWriter(str(vids / "c.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 32))
    for _ in range(3):
        vw.write(np.full((32, 32, 3), COLOURS["red"], np.uint8))
    vw.release()
    res = predict([str(vids / "*.avi")], own_run, save_dir=tmp_path / "out", max_frames=2)
    assert not res.errors and len(res) == 2
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["c_f000000.png", "c_f000001.png"]
    val = carve_val(41, 0.2, 0, labels=np.array([0] * 20 + [1] + [2] * 20))
    counts = np.bincount(np.array([0] * 20 + [1] + [2] * 20)[val], minlength=3)
    assert counts.tolist() == [4, 0, 4]  # a 1-image class stays in train
    lone = tmp_path / "m.keras"
    lone.write_bytes((own_run / "best.keras").read_bytes())
    with pytest.raises(CnnedgeError, match="--image-size"):
        predict([vids / "c.avi"], lone)
    assert not predict([vids / "c.avi"], lone, image_size=(32, 32)).errors
    gray = models.create_model("gmp_xs", num_classes=3, channels=1)
    before = gray.get_layer("rescale").get_weights()[0].copy()
    init_weights(gray, own_run)
    np.testing.assert_array_equal(gray.get_layer("rescale").get_weights()[0], before)


def test_rgb_data_starts_from_the_shipped_cifar10_checkpoint(photos):
    from cnnedge import models, weights
    from cnnedge.auto import auto_recipe
    from cnnedge.weights import init_weights

    assert "cifar10" in weights.names() and weights.path("cifar10").stat().st_size < 500_000
    r, notes = auto_recipe(photos / "train")
    ref_model = weights.info("cifar10")["model"]  # whichever member the shipped file is
    assert (r.model.weights, r.model.name, r.data.image_size) == ("cifar10", ref_model, (32, 32))
    assert any("fine-tuned from the cifar10 checkpoint" in n for n in notes)
    three = models.create_model(ref_model, num_classes=3, channels=3)
    assert "new head: 10 -> 3 classes" in init_weights(three, "cifar10")
    with pytest.raises(CnnedgeError, match="reference checkpoint"):
        weights.path("imagenet")


# ------------------------------------------------------------------------- grey from colour
def test_colour_data_decodes_as_grey_and_grey_as_rgb(photos, easy_idx):
    """``channels=1``: each colour image becomes its luma (OpenCV's grey within a step);
    ``channels=3``: a grey image becomes three equal channels; the data's info says so."""
    from cnnedge import data

    colour = data.open_dataset(str(photos / "train"), keep_size=True)
    grey = data.open_dataset(str(photos / "train"), keep_size=True, channels=1)
    assert (colour.info.channels, grey.info.channels) == (3, 1)
    for (x3, y3), (x1, y1) in zip(colour.examples("train").take(4), grey.examples("train").take(4)):
        x3, x1 = x3.numpy(), x1.numpy()
        assert x1.shape == (*x3.shape[:2], 1) and int(y1) == int(y3)
        luma = cv2.cvtColor(x3, cv2.COLOR_RGB2GRAY).astype(int)
        assert np.abs(x1[..., 0].astype(int) - luma).max() <= 1
    rgb = data.open_dataset(str(easy_idx), channels=3, val_fraction=0.2, val_split="stratified")
    x, _ = next(iter(rgb.pipeline("train", batch_size=4)))
    assert rgb.info.channels == 3 and x.shape[-1] == 3
    assert (x[..., 0] == x[..., 1]).numpy().all() and (x[..., 1] == x[..., 2]).numpy().all()
    with pytest.raises(CnnedgeError, match="channels must be 1"):
        data.open_dataset(str(easy_idx), channels=2)


def test_a_grey_model_of_colour_photos_end_to_end(photos, tmp_path, capsys):
    """``--set data.channels=1`` trains a one-channel model on colour photos; its int8 file
    says GRAY and passes the quick parity check on the converted test images, predict feeds it a
    colour photo as grey, and its model file exports and evaluates on colour data."""
    from cnnedge.export import export
    from cnnedge.run import Run
    from cnnedge.runtime import read_metadata

    runs = tmp_path / "runs"
    args = ["--weights", "none", "--runs-dir", str(runs), "--name", "grey"]
    sets = ["data.channels=1", "train.epochs=1", "qat.enabled=false", "train.batch_size=16"]
    assert (
        main(["train", "--data", str(photos / "train"), *args, *[a for s in sets for a in ("--set", s)]]) == 0
    )
    run = Run(runs / "photos" / "grey")
    assert run.recipe.data.channels == 1 and run.summary["input_size"][2] == 1
    images, _, _ = run.test_images(8)
    assert images.shape[-1] == 1
    res = export(run.path, formats="tflite", precisions="int8", verify=16)
    meta = read_metadata(res.artifacts[0]["path"])
    assert meta["channels"] == 1 and meta["color_order"] == "GRAY"
    assert res.passed
    photo = next((photos / "test" / "red").iterdir())
    out = tmp_path / "p.json"
    assert main(["predict", str(photo), "-m", str(run.path), "--json", str(out)]) == 0
    row = json.loads(out.read_text())["predictions"][0]
    assert row["error"] is None and row["top"][0]["class"] in ("blue", "green", "red")
    # the model file alone: colour data is converted for its calibration and its evaluation,
    # and its metadata is its run's (photos: no dark background to invert frames against)
    from helpers import write_folder

    write_folder(tmp_path / "calib", classes=("blue", "green", "red"), size=(24, 24))  # one size
    alone = export(
        run.path / "best.keras",
        formats="tflite",
        precisions="int8",
        calibration=str(tmp_path / "calib"),
        out_dir=tmp_path / "alone",
        verify=0,
    )
    meta = read_metadata(alone.artifacts[0]["path"])
    assert meta["channels"] == 1 and meta["background"] == run.preprocessing()["background"] != "dark"
    capsys.readouterr()
    args = ["eval", str(run.path / "best.keras"), "--data", str(photos / "test"), "--image-size", "24x24"]
    assert main(args) == 0, capsys.readouterr().err
    assert "accuracy" in capsys.readouterr().out
