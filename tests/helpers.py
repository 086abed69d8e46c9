"""What the tests share besides fixtures (those live in conftest.py): the assertions of the
bad-input tests, writers of tiny datasets in every format cnnedge.data reads, a small recipe and
the CLI in a fresh process. Found through ``pythonpath`` in pyproject.toml."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


# ------------------------------------------------------------ bad input, failed gates
def one_error(capsys, rc, *needles) -> str:
    """The command failed with exit 2 and exactly one ``error: …`` line holding ``needles``."""
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, err)
    return err


def tree(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes ('nothing lost' means this is unchanged); a
    run's lock file, which lives only while a command runs, aside."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def disagree(monkeypatch, name: str) -> None:
    """Make the exported file ``name`` disagree with Keras on every image (each top-1 moves to
    the next class): a gate that fails at the default bars, no impossible one needed (the
    --min-* options are percentages in [0, 100])."""
    from cnnedge import runtime

    real = runtime.load

    def load(path, *args, **kwargs):
        runner = real(path, *args, **kwargs)
        if Path(path).name == name:
            predict = runner.predict
            runner.predict = lambda x, *a, **k: np.roll(predict(x, *a, **k), 1, axis=1)
        return runner

    monkeypatch.setattr(runtime, "load", load)


# ------------------------------------------------------------------------------ training
def small_recipe(data_dir, **over):
    """fashion_mnist_tiny on ``data_dir`` (gmp_xs, 2 epochs × 20 steps, no QAT); ``over`` sets
    more recipe keys."""
    from cnnedge.recipe import apply_overrides, load_recipe

    sets = [
        f"data.dataset={data_dir}",
        "model.name=gmp_xs",
        "train.epochs=2",
        "train.batch_size=32",
        "train.steps_per_epoch=20",
        "train.eval_images=none",
        "augment.ops=[]",
        "optim.lr=0.01",
        "optim.warmup_epochs=0",
        "qat.enabled=false",
    ]
    sets += [f"{k}={v}" for k, v in over.items()]
    return apply_overrides(load_recipe("fashion_mnist_tiny"), sets)


def cli(*args, env=None, **kw):
    """``cnnedge ARGS`` in a fresh Python process; the CompletedProcess with text output."""
    return subprocess.run(
        [sys.executable, "-m", "cnnedge", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,
    )


# ------------------------------------------------------------------ tiny datasets on disk
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
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta.txt").write_text("\n".join([*names, "", ""]))
    train = (hwc(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts]))
    return {"train": train, "test": (hwc(data), labels)}


def write_cifar_py(folder: Path, sizes=(5, 4), n_test=3, seed=0, names=None):
    """cifar-10-batches-py layout (pickles); returns {split: (images HWC, labels)}."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, n in enumerate(sizes, 1):
        data, labels = cifar_arrays(n, seed + i)
        d = {
            b"batch_label": b"training batch",
            b"labels": [int(v) for v in labels],
            b"data": data,
            b"filenames": [b"x.png"] * n,
        }
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(d, f)
        parts.append((data, labels))
    data, labels = cifar_arrays(n_test, seed + 100)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"labels": [int(v) for v in labels], b"data": data}, f)
    names = names or [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    train = (hwc(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts]))
    return {"train": train, "test": (hwc(data), labels)}


def write_folder(
    root: Path,
    *,
    classes=("cat", "dog", "emu"),
    per_class=4,
    size=(6, 5),
    channels=3,
    fmt="png",
    seed=0,
    sizes=None,
):
    """<root>/<class>/NNN.<fmt>; returns list of (path, image, label) in file order."""
    from cnnedge.backend import tf

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
