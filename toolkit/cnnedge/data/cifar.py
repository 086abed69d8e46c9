"""CIFAR-10 in its two original layouts: ``cifar-10-batches-bin`` and ``cifar-10-batches-py``.

* binary: records of 1 label byte + 3072 bytes (CHW), streamed with
  ``FixedLengthRecordDataset`` and decoded/transposed a batch at a time;
* python: pickled dicts, read one batch file at a time with a *restricted* unpickler that only
  rebuilds NumPy arrays (never plain ``pickle.load``), then validated key by key.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np

from cnnedge.backend import tf
from cnnedge.data.base import Source, SplitIndex, make_splits
from cnnedge.errors import CnnedgeError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
RECORD = 1 + 3072


def _batch_number(p: Path) -> int:
    m = re.search(r"(\d+)", p.name)
    return int(m.group(1)) if m else 0


def _split_files(folder: Path, suffix: str) -> dict[str, list[Path]]:
    train = sorted(
        (p for p in folder.glob("data_batch_*" + suffix) if p.is_file() and (suffix or "." not in p.name)),
        key=_batch_number,
    )
    test = folder / ("test_batch" + suffix)
    out = {}
    if train:
        out["train"] = train
    if test.is_file():
        out["test"] = [test]
    return out


def is_cifar_bin(folder: Path) -> bool:
    return bool(_split_files(folder, ".bin"))


def is_cifar_py(folder: Path) -> bool:
    return bool(_split_files(folder, ""))


def _check_labels(path, labels, n_classes):
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        raise CnnedgeError(
            f"{path}: label {int(labels[bad[0]])} at record {int(bad[0])} is out of range (0-{n_classes - 1})"
        )


class _CifarSource(Source):
    raw_bytes = RECORD

    def _decode_images(self, flat):  # uint8 [B, 3072] CHW -> [B, 32, 32, 3]
        return tf.transpose(tf.reshape(flat, [-1, 3, 32, 32]), [0, 2, 3, 1])

    def _finish(self, folder, name, fmt, class_names, base, counts, val_fraction, seed, resize, batch_mode):
        super().__init__(
            name=name,
            source=folder,
            format=fmt,
            class_names=class_names,
            channels=3,
            image_size=resize or (32, 32),
            splits=make_splits(base, val_fraction, seed),
            base_counts=counts,
            resize=resize,
            batch_mode=batch_mode,
        )

    def _explain(self, split, err):
        base = self.split_index(split).base if split else "train"
        files = ", ".join(str(p) for p in self._files.get(base, []))
        return f"{files}: cannot read CIFAR batches ({err.message})"


class CifarBinSource(_CifarSource):
    def __init__(
        self, folder: Path, *, name="cifar10", val_fraction=0.0, seed=0, resize=None, batch_mode="pad"
    ):
        folder = Path(folder)
        self._files = _split_files(folder, ".bin")
        if not self._files:
            raise CnnedgeError(f"{folder}: no data_batch_*.bin / test_batch.bin files")
        class_names = CIFAR10_CLASSES
        meta = folder / "batches.meta.txt"
        if meta.is_file():
            try:
                names = [ln.strip() for ln in meta.read_text("utf-8", "replace").splitlines()]
            except OSError as e:
                raise CnnedgeError(f"{meta}: cannot read ({e})") from None
            names = [n for n in names if n]
            if len(names) < 2:
                raise CnnedgeError(f"{meta}: expected one class name per line")
            class_names = tuple(names)
        base, counts = {}, {}
        for split, files in self._files.items():
            labels = [self._labels(p, len(class_names)) for p in files]
            base[split] = SplitIndex(split, np.concatenate(labels).astype(np.int32))
            counts[split] = len(base[split].labels)
        self._finish(
            folder, name, "cifar-bin", class_names, base, counts, val_fraction, seed, resize, batch_mode
        )

    @staticmethod
    def _labels(path: Path, n_classes: int) -> np.ndarray:
        try:
            size = path.stat().st_size
            if size == 0 or size % RECORD:
                raise CnnedgeError(
                    f"{path}: length {size} is not a positive multiple of "
                    f"{RECORD} (1 label byte + 32x32x3 pixels); truncated or corrupt"
                )
            labels = np.array(np.memmap(path, np.uint8, "r").reshape(-1, RECORD)[:, 0])
        except OSError as e:
            raise CnnedgeError(f"{path}: cannot read ({e.strerror or e})") from None
        _check_labels(path, labels, n_classes)
        return labels

    def _base_raw(self, base):
        return tf.data.FixedLengthRecordDataset(
            [str(p) for p in self._files[base]], RECORD, buffer_size=1 << 20
        )

    def _decode_batch(self, raw):
        flat = tf.reshape(tf.io.decode_raw(raw, tf.uint8), [-1, RECORD])
        return self._decode_images(flat[:, 1:]), tf.cast(flat[:, 0], tf.int32)


# ----------------------------------------------------------------------------- python pickles
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1"):
    # it only turns a string into bytes
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds NumPy arrays and plain Python containers; refuses every other global."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module == "numpy":
            return getattr(np, name)
        if module == "_codecs":
            import codecs

            return codecs.encode
        try:
            from numpy._core import multiarray
        except ImportError:  # NumPy 1.x
            from numpy.core import multiarray
        return getattr(multiarray, name)


def safe_unpickle(path: Path):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CnnedgeError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except RecursionError:
        raise CnnedgeError(f"{path}: not a CIFAR pickle (nesting too deep)") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CnnedgeError(
            f"{path}: not a valid CIFAR pickle ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        ) from None


def _get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def load_py_batch(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, 3072], int32 [N]) from one pickled batch, validated."""
    d = safe_unpickle(path)
    if not isinstance(d, dict):
        raise CnnedgeError(f"{path}: expected a dict, found {type(d).__name__}")
    data, labels = _get(d, "data"), _get(d, "labels")
    if data is None or labels is None:
        keys = ", ".join(repr(k) for k in list(d)[:8])
        raise CnnedgeError(f"{path}: missing 'data' or 'labels' key (found {keys})")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or data.shape[0] == 0
    ):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CnnedgeError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise CnnedgeError(f"{path}: 'labels' must be a 1-D integer array")
        lab = labels.astype(np.int64)
    elif isinstance(labels, (list, tuple)):
        if not all(type(v) is int for v in labels):
            raise CnnedgeError(f"{path}: 'labels' must be a list of ints")
        try:
            lab = np.array(labels, dtype=np.int64).reshape(-1)
        except OverflowError:
            raise CnnedgeError(f"{path}: 'labels' holds a value out of range") from None
    else:
        raise CnnedgeError(f"{path}: 'labels' must be a list, got {type(labels).__name__}")
    if len(lab) != data.shape[0]:
        raise CnnedgeError(f"{path}: {data.shape[0]} images but {len(lab)} labels")
    _check_labels(path, lab, n_classes)
    return np.ascontiguousarray(data), lab.astype(np.int32)


def _meta_names(path: Path) -> tuple[str, ...]:
    d = safe_unpickle(path)
    names = _get(d, "label_names") if isinstance(d, dict) else None
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, (bytes, str)) for n in names):
        raise CnnedgeError(f"{path}: expected a dict with a 'label_names' list of strings")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


class CifarPySource(_CifarSource):
    def __init__(
        self, folder: Path, *, name="cifar10", val_fraction=0.0, seed=0, resize=None, batch_mode="pad"
    ):
        folder = Path(folder)
        self._files = _split_files(folder, "")
        if not self._files:
            raise CnnedgeError(f"{folder}: no data_batch_* / test_batch pickle files")
        meta = folder / "batches.meta"
        class_names = _meta_names(meta) if meta.is_file() else CIFAR10_CLASSES
        self._n_classes = len(class_names)
        base, counts = {}, {}
        for split, files in self._files.items():  # one ~30 MB batch file in memory at a time
            labels = [load_py_batch(p, self._n_classes)[1] for p in files]
            base[split] = SplitIndex(split, np.concatenate(labels))
            counts[split] = len(base[split].labels)
        self._finish(
            folder, name, "cifar-py", class_names, base, counts, val_fraction, seed, resize, batch_mode
        )

    def _base_raw(self, base):
        files, n_classes = list(self._files[base]), self._n_classes

        def gen():
            for p in files:
                yield load_py_batch(p, n_classes)

        sig = (tf.TensorSpec([None, 3072], tf.uint8), tf.TensorSpec([None], tf.int32))
        return tf.data.Dataset.from_generator(gen, output_signature=sig).unbatch()

    def _decode_batch(self, flat, labels):
        return self._decode_images(flat), labels
