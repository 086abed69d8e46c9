"""Writers of tiny datasets in every format cnnedge.data reads (imported by the test_data_* files)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from cnnedge.backend import tf


def idx_bytes(images: np.ndarray, labels: np.ndarray) -> tuple[bytes, bytes]:
    n, h, w = images.shape
    img = struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()
    lab = struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    return img, lab


def write_idx(folder: Path, *, n_train=40, n_test=12, h=4, w=3, gz=False, seed=0, n_classes=10):
    """IDX files (train + t10k); returns {split: (images [N,h,w], labels [N])}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
        labels = rng.integers(0, n_classes, n, dtype=np.uint8)
        img, lab = idx_bytes(images, labels)
        for stem, data in ((f"{prefix}-images-idx3-ubyte", img), (f"{prefix}-labels-idx1-ubyte", lab)):
            if gz:
                (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / stem).write_bytes(data)
        out[split] = (images, labels.astype(np.int32))
    return out


def cifar_arrays(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int32)


def hwc(flat: np.ndarray) -> np.ndarray:
    return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def write_cifar_bin(folder: Path, sizes=(5, 4), n_test=3, seed=0):
    """cifar-10-batches-bin layout; returns {split: (images HWC, labels)}."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, n in enumerate(sizes, 1):
        data, labels = cifar_arrays(n, seed + i)
        rec = np.concatenate([labels[:, None].astype(np.uint8), data], axis=1)
        (folder / f"data_batch_{i}.bin").write_bytes(rec.tobytes())
        parts.append((data, labels))
    data, labels = cifar_arrays(n_test, seed + 100)
    rec = np.concatenate([labels[:, None].astype(np.uint8), data], axis=1)
    (folder / "test_batch.bin").write_bytes(rec.tobytes())
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    (folder / "batches.meta.txt").write_text("\n".join([*names, "", ""]))
    train = (hwc(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts]))
    return {"train": train, "test": (hwc(data), labels)}


def write_cifar_py(folder: Path, sizes=(5, 4), n_test=3, seed=0, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, n in enumerate(sizes, 1):
        data, labels = cifar_arrays(n, seed + i)
        d = {b"batch_label": b"training batch", b"labels": [int(v) for v in labels],
             b"data": data, b"filenames": [b"x.png"] * n}
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(d, f)
        parts.append((data, labels))
    data, labels = cifar_arrays(n_test, seed + 100)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"labels": [int(v) for v in labels], b"data": data}, f)
    names = names or [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                      b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    train = (hwc(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts]))
    return {"train": train, "test": (hwc(data), labels)}


def write_folder(root: Path, *, classes=("cat", "dog", "emu"), per_class=4, size=(6, 5),
                 channels=3, fmt="png", seed=0, sizes=None):
    """<root>/<class>/NNN.<fmt>; returns list of (path, image, label) in file order."""
    rng = np.random.default_rng(seed)
    out = []
    for label, c in enumerate(classes):
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            hw = sizes[(label * per_class + i) % len(sizes)] if sizes else size
            img = rng.integers(0, 256, (*hw, channels), dtype=np.uint8)
            if fmt == "png":
                data = tf.io.encode_png(img).numpy()
            else:
                data = tf.io.encode_jpeg(img, quality=95).numpy()
            p = d / f"{i:03d}.{fmt}"
            p.write_bytes(data)
            out.append((p, img, label))
    return out
