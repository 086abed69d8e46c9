"""Splits, shuffling, take/cache/repeat, augmentation, resizing and variable-size batching."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_folder, write_idx

from cnnedge import data
from cnnedge.backend import tf
from cnnedge.data.base import carve_val
from cnnedge.errors import CnnedgeError
from cnnedge.utils import stratified_positions


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("idx")
    write_idx(folder, n_train=60, n_test=10, h=5, w=5)
    return folder


def images_of(ds):
    return np.concatenate([x for x, _ in ds.as_numpy_iterator()])


def fingerprints(src, split):
    """Each example's bytes (unique with overwhelming probability for random pixels)."""
    return [x.tobytes() for x, _ in src.examples(split).as_numpy_iterator()]


def test_val_split_deterministic_and_disjoint(idx_dir):
    a = data.open_dataset(str(idx_dir), val_fraction=0.2, seed=5)
    b = data.open_dataset(str(idx_dir), val_fraction=0.2, seed=5)
    c = data.open_dataset(str(idx_dir), val_fraction=0.2, seed=6)
    full = fingerprints(data.open_dataset(str(idx_dir)), "train")
    assert a.info.split_sizes == {"train": 48, "val": 12, "test": 10}
    tr, va = fingerprints(a, "train"), fingerprints(a, "val")
    assert va == fingerprints(b, "val") and tr == fingerprints(b, "train")
    assert va != fingerprints(c, "val")
    assert not set(tr) & set(va)
    assert sorted(tr + va) == sorted(full)
    # file order is kept inside each split
    assert tr == [f for f in full if f in set(tr)]
    np.testing.assert_array_equal(carve_val(100, 0.1, 1), carve_val(100, 0.1, 1))


def test_bad_split_and_fraction(idx_dir):
    src = data.open_dataset(str(idx_dir))
    with pytest.raises(CnnedgeError, match="available: train, test"):
        src.pipeline("val", batch_size=4)
    with pytest.raises(CnnedgeError, match="val_fraction"):
        data.open_dataset(str(idx_dir), val_fraction=1.5)


def test_shuffle_deterministic(idx_dir):
    src = data.open_dataset(str(idx_dir))
    plain = images_of(src.pipeline("train", batch_size=8))
    s1 = src.pipeline("train", batch_size=8, shuffle=True, seed=1)
    e1, e2 = images_of(s1), images_of(s1)
    again = images_of(src.pipeline("train", batch_size=8, shuffle=True, seed=1))
    other = images_of(src.pipeline("train", batch_size=8, shuffle=True, seed=2))
    np.testing.assert_array_equal(e1, again)
    assert not np.array_equal(e1, plain) and not np.array_equal(e1, other)
    assert not np.array_equal(e1, e2)  # reshuffled each epoch
    assert sorted(x.tobytes() for x in e1) == sorted(x.tobytes() for x in plain)


def test_take_repeat_cache_drop_remainder(idx_dir):
    src = data.open_dataset(str(idx_dir))
    ds = src.pipeline("train", batch_size=4, take=10)
    assert [x.shape[0] for x, _ in ds.as_numpy_iterator()] == [4, 4, 2]
    everything = images_of(src.examples("train").batch(1000))
    labels = src.split_index("train").labels
    keep = stratified_positions(labels, 10, 0)  # a seeded class-stratified sample, in file order
    np.testing.assert_array_equal(images_of(ds), everything[keep])
    ds = src.pipeline("train", batch_size=4, take=10, drop_remainder=True, repeat=True)
    shapes = [x.shape for x, _ in ds.take(5).as_numpy_iterator()]
    assert shapes == [(4, 5, 5, 1)] * 5
    cached = src.pipeline("train", batch_size=16, cache=True, shuffle=True, seed=3)
    np.testing.assert_array_equal(images_of(cached).shape, (60, 5, 5, 1))


def test_augment_shapes_changes_and_determinism(idx_dir):
    src = data.open_dataset(str(idx_dir))
    plain = images_of(src.pipeline("train", batch_size=16))
    for names in (["flip"], ["crop2"], ["pad_crop:1"], ["translate:2"], "flip,crop1,translate1"):
        aug = data.build_augment(names, seed=0)
        ds = src.pipeline("train", batch_size=16, augment=aug, seed=4)
        out1, out2 = images_of(ds), images_of(ds)
        assert out1.dtype == np.uint8 and out1.shape == plain.shape
        assert not np.array_equal(out1, plain), names
        assert not np.array_equal(out1, out2), names  # new randomness each epoch
        again = images_of(src.pipeline("train", batch_size=16, augment=aug, seed=4))
        np.testing.assert_array_equal(out1, again)


def test_flip_and_crop_semantics():
    images = tf.constant(np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3))
    labels = tf.constant([0, 1], tf.int32)
    out, lab = data.random_flip()(images, labels, seed=tf.constant(7, tf.int64))
    for o, i in zip(out.numpy(), images.numpy()):
        assert np.array_equal(o, i) or np.array_equal(o, i[:, ::-1])
    assert lab.numpy().tolist() == [0, 1]
    out, _ = data.pad_and_crop(0)(images, labels, seed=tf.constant(1, tf.int64))
    np.testing.assert_array_equal(out.numpy(), images.numpy())
    out, _ = data.random_translate(3)(images, labels)
    assert out.dtype == tf.uint8 and out.shape == images.shape
    # translated pixels are either zero fill or come from the image
    assert set(np.unique(out.numpy())) <= set(np.unique(images.numpy())) | {0}
    plain = data.compose(lambda x, y: (x, y + 1))
    assert plain(images, labels)[1].numpy().tolist() == [1, 2]


def test_build_augment_errors():
    with pytest.raises(CnnedgeError, match="available: flip"):
        data.build_augment(["rotate90"])
    with pytest.raises(CnnedgeError, match="unknown augmentation"):
        data.build_augment(["crop:x"])
    assert data.build_augment([]) is None


def test_image_size_resize(tmp_path):
    write_folder(tmp_path / "v", fmt="png", classes=("a", "b"), sizes=[(4, 6), (5, 3), (7, 7)])
    with pytest.raises(CnnedgeError, match="differ in size.*image_size"):
        data.open_dataset(str(tmp_path / "v"))
    src = data.open_dataset(str(tmp_path / "v"), image_size=(8, 9))
    assert src.info.image_size == (8, 9)
    x = images_of(src.pipeline("train", batch_size=3))
    assert x.shape == (8, 8, 9, 3) and x.dtype == np.uint8
    assert data.describe(src)["splits"]["train"]["sizes"] == {"8x9x3": 8}
    # uniform image: resize keeps the value (rounding, not truncation)
    write_folder(tmp_path / "u", fmt="png", classes=("a", "b"), per_class=1, size=(4, 4))
    small = data.open_dataset(str(tmp_path / "u"), image_size=(2, 2))
    assert images_of(small.pipeline("train", batch_size=2)).shape == (2, 2, 2, 3)


@pytest.mark.parametrize("mode", ["pad", "bucket"])
def test_keep_size_batching(tmp_path, mode):
    sizes = [(4, 6), (5, 3), (4, 6), (5, 3)]
    items = write_folder(tmp_path / "v", fmt="png", classes=("a", "b"), per_class=4, sizes=sizes)
    src = data.open_dataset(str(tmp_path / "v"), keep_size=True, batch_mode=mode)
    assert src.info.image_size is None
    batches = list(src.pipeline("train", batch_size=2).as_numpy_iterator())
    assert sum(len(y) for _, y in batches) == 8
    if mode == "pad":
        x, _ = batches[0]
        assert x.shape == (2, 5, 6, 3)
        np.testing.assert_array_equal(x[0, :4, :6], items[0][1])
        assert not x[0, 4:].any() and not x[1, :, 3:].any()
    else:
        for x, _ in batches:
            assert x.shape[1:3] in ((4, 6), (5, 3))
    info = data.describe(src)["splits"]["train"]["sizes"]
    assert info == {"4x6x3": 4, "5x3x3": 4}
