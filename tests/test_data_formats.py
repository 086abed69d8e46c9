"""Exact round trips of pixels and labels through every format, examples() and pipeline()."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_cifar_bin, write_cifar_py, write_folder, write_idx

from cnnedge import data
from cnnedge.data.idx import FASHION_CLASSES
from cnnedge.errors import CnnedgeError


def collect(ds):
    images, labels = [], []
    for x, y in ds.as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return images, labels


def stacked(src, split):
    images, labels = collect(src.examples(split))
    return np.stack(images), np.array(labels)


def batched(src, split, bs=3):
    images, labels = collect(src.pipeline(split, batch_size=bs))
    assert all(x.dtype == np.uint8 and y.dtype == np.int32 for x, y in zip(images, labels))
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    folder = tmp_path / "fashion-mnist"
    ref = write_idx(folder, gz=gz)
    src = data.open_dataset(str(folder))
    assert src.info.format == "idx" and src.info.class_names == FASHION_CLASSES
    assert src.info.channels == 1 and src.info.image_size == (4, 3)
    assert src.info.split_sizes == {"train": 40, "test": 12}
    for split, (images, labels) in ref.items():
        x, y = stacked(src, split)
        np.testing.assert_array_equal(x[..., 0], images)
        np.testing.assert_array_equal(y, labels)
        xb, yb = batched(src, split)
        np.testing.assert_array_equal(xb[..., 0], images)
        np.testing.assert_array_equal(yb, labels)


def test_fashion_name_via_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNEDGE_DATA", raising=False)
    write_idx(tmp_path / "fashion-mnist", gz=True)
    src = data.open_dataset("fashion_mnist", data_dir=tmp_path, download=False)
    assert src.info.name == "fashion-mnist" and src.info.source == str(tmp_path / "fashion-mnist")
    monkeypatch.setenv("CNNEDGE_DATA", str(tmp_path / "fashion-mnist"))
    assert data.open_dataset("fashion-mnist", download=False).num_examples("test") == 12


def test_cifar_bin_round_trip(tmp_path):
    ref = write_cifar_bin(tmp_path / "cifar-10-batches-bin")
    src = data.open_dataset(str(tmp_path / "cifar-10-batches-bin"))
    assert src.info.format == "cifar-bin" and src.info.class_names[0] == "airplane"
    assert src.info.split_sizes == {"train": 9, "test": 3}
    for split, (images, labels) in ref.items():
        for x, y in (stacked(src, split), batched(src, split, bs=4)):
            np.testing.assert_array_equal(x, images)
            np.testing.assert_array_equal(y, labels)


def test_cifar_py_round_trip_and_name_lookup(tmp_path, monkeypatch):
    ref = write_cifar_py(tmp_path / "cifar-10-batches-py")
    monkeypatch.setenv("CNNEDGE_DATA", str(tmp_path))
    src = data.open_dataset("cifar10")
    assert src.info.format == "cifar-py" and src.info.name == "cifar10"
    for split, (images, labels) in ref.items():
        for x, y in (stacked(src, split), batched(src, split, bs=2)):
            np.testing.assert_array_equal(x, images)
            np.testing.assert_array_equal(y, labels)


def test_png_folder_exact(tmp_path):
    items = write_folder(tmp_path / "pets", fmt="png")
    src = data.open_dataset(str(tmp_path / "pets"))
    assert src.info.name == "pets" and src.info.class_names == ("cat", "dog", "emu")
    assert src.info.image_size == (6, 5) and src.info.channels == 3
    assert src.splits == ("train",)
    x, y = stacked(src, "train")
    np.testing.assert_array_equal(x, np.stack([i for _, i, _ in items]))
    np.testing.assert_array_equal(y, [lab for _, _, lab in items])
    xb, yb = batched(src, "train", bs=5)
    np.testing.assert_array_equal(xb, x)
    np.testing.assert_array_equal(yb, y)


def test_split_folder_jpeg_and_grayscale(tmp_path):
    write_folder(tmp_path / "d" / "train", fmt="jpg", classes=("a", "b"), size=(8, 8))
    write_folder(tmp_path / "d" / "test", fmt="jpg", classes=("a", "b"), per_class=2, size=(8, 8), seed=1)
    src = data.open_dataset(str(tmp_path / "d"))
    assert src.info.split_sizes == {"train": 8, "test": 4}
    x, y = batched(src, "test", bs=3)
    assert x.shape == (4, 8, 8, 3) and y.tolist() == [0, 0, 1, 1]
    write_folder(tmp_path / "g", fmt="png", classes=("a", "b"), channels=1)
    g = data.open_dataset(str(tmp_path / "g"))
    assert g.info.channels == 1
    assert stacked(g, "train")[0].shape == (8, 6, 5, 1)


def test_pack_round_trip(tmp_path):
    items = write_folder(tmp_path / "pets", fmt="png", per_class=5)
    src = data.open_dataset(str(tmp_path / "pets"), val_fraction=0.2)
    out = data.pack(src, str(tmp_path / "packed"), shards=4)
    packed = data.open_dataset(out)
    assert packed.info.format == "tfrecord" and packed.info.split_sizes == src.info.split_sizes
    assert packed.info.class_names == src.info.class_names
    for split in src.splits:
        a, b = stacked(src, split), stacked(packed, split)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        xb, _ = batched(packed, split, bs=4)
        np.testing.assert_array_equal(xb, a[0])
    assert data.describe(packed)["splits"] == data.describe(src)["splits"]
    # packing a source without val, then carving val from the pack == carving from the source
    whole = data.open_dataset(str(tmp_path / "pets"))
    out2 = data.pack(whole, str(tmp_path / "packed2"), shards=3)
    for split in ("train", "val"):
        a = stacked(data.open_dataset(out2, val_fraction=0.4, seed=3), split)
        b = stacked(data.open_dataset(str(tmp_path / "pets"), val_fraction=0.4, seed=3), split)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert len(items) == 15


def test_pack_variable_sizes_and_overwrite(tmp_path):
    write_folder(tmp_path / "v", fmt="png", classes=("a", "b"), sizes=[(4, 6), (5, 3), (7, 7)])
    src = data.open_dataset(str(tmp_path / "v"), keep_size=True)
    out = data.pack(src, str(tmp_path / "p"), shards=3)
    with pytest.raises(CnnedgeError, match="already exists"):
        data.pack(src, str(tmp_path / "p"))
    data.pack(src, str(tmp_path / "p"), overwrite=True)
    packed = data.open_dataset(out, keep_size=True)
    a = list(src.examples("train").as_numpy_iterator())
    b = list(packed.examples("train").as_numpy_iterator())
    assert len(a) == len(b) == 8
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        assert ya == yb
    assert data.describe(packed)["splits"]["train"]["sizes"] == data.describe(src)["splits"]["train"]["sizes"]


def test_describe_counts(tmp_path):
    ref = write_idx(tmp_path / "m")
    info = data.describe(data.open_dataset(str(tmp_path / "m"), val_fraction=0.25))
    assert list(info["splits"]) == ["train", "val", "test"]
    tr, va = info["splits"]["train"], info["splits"]["val"]
    assert tr["count"] == 30 and va["count"] == 10
    total = np.array(tr["class_counts"]) + np.array(va["class_counts"])
    np.testing.assert_array_equal(total, np.bincount(ref["train"][1], minlength=10))
    assert tr["sizes"] == {"4x3x1": 30}
    assert info["class_names"] == [str(i) for i in range(10)]
