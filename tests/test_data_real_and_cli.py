"""The real datasets on this machine (skipped when absent) and the `cnnedge data` commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import write_folder, write_idx

from cnnedge import data
from cnnedge.cli import main

FASHION = Path("/usr/share/datasets/fashion-mnist")
# the Makefile and CI pass the folder holding cifar10-images/ (the library never guesses it)
CIFAR = Path(os.environ.get("CNNEDGE_DATA") or "/nonexistent") / "cifar10-images"


@pytest.mark.skipif(
    not (FASHION / "train-labels-idx1-ubyte.gz").is_file(), reason="dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist():
    src = data.open_dataset(str(FASHION))
    assert src.info.name == "fashion-mnist" and src.info.split_sizes == {"train": 60000, "test": 10000}
    assert src.info.class_names[9] == "Ankle boot"
    x, y = next(src.pipeline("train", batch_size=4).as_numpy_iterator())
    assert x.shape == (4, 28, 28, 1) and y.tolist() == [9, 0, 0, 3]
    assert x[0].max() == 255  # raw pixels, not normalised
    counts = data.describe(src)["splits"]["test"]["class_counts"]
    assert counts == [1000] * 10


@pytest.mark.skipif(not CIFAR.is_dir(), reason="$CNNEDGE_DATA/cifar10-images absent")
def test_real_cifar10_folder():
    src = data.open_dataset(str(CIFAR))
    assert src.info.class_names == (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    assert src.info.split_sizes == {"train": 50000, "test": 10000}
    assert src.info.image_size == (32, 32) and src.info.channels == 3
    x, y = next(src.pipeline("test", batch_size=8, take=8).as_numpy_iterator())
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.uint8
    assert len(set(y.tolist())) == 8  # a stratified sample, not the first 8 (all airplanes)


def test_cli_info_json_and_table(tmp_path, capsys):
    write_idx(tmp_path / "fashion-mnist", gz=True)
    assert main(["data", "info", str(tmp_path / "fashion-mnist"), "--val-fraction", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "30" in out and "val" in out and "Ankle boot" in out
    assert main(["data", "info", str(tmp_path / "fashion-mnist"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["count"] == 40 and info["format"] == "idx"


def test_cli_preview_pack_bench(tmp_path, capsys):
    write_folder(tmp_path / "pets", classes=("a", "b"), per_class=5)
    png = tmp_path / "out" / "grid.png"
    assert main(["data", "preview", str(tmp_path / "pets"), "-o", str(png), "-n", "6"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in png.parent.iterdir()] == ["grid.png"]
    assert main(["data", "pack", str(tmp_path / "pets"), "-o", str(tmp_path / "pk"), "--shards", "2"]) == 0
    assert sorted(os.listdir(tmp_path / "pk")) == [
        "dataset.json",
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    capsys.readouterr()
    assert main(["data", "bench", str(tmp_path / "pk"), "--batch-size", "4", "--epochs", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 10 and res["images_per_s"] > 0 and res["format"] == "tfrecord"


def test_cli_bad_input_is_one_error_line(tmp_path, capfd):
    write_idx(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-3])
    assert main(["data", "info", str(tmp_path)]) == 2
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err
    assert main(["data", "info", str(tmp_path / "missing")]) == 2
    write_idx(tmp_path / "ok")
    capfd.readouterr()
    assert main(["data", "bench", str(tmp_path / "ok"), "--split", "nope"]) == 2
    assert "available: train, test" in capfd.readouterr().err
