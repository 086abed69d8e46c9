"""IDX files (MNIST / Fashion-MNIST layout), raw or gzipped, streamed record by record.

Headers, lengths and labels are validated in Python when the dataset is opened (gzip files are
stream-decompressed once, which also checks their CRC); images then stream through
``tf.data.FixedLengthRecordDataset`` and are decoded a whole batch at a time.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from cnnedge.backend import tf
from cnnedge.data.base import Source, SplitIndex, make_splits
from cnnedge.errors import CnnedgeError

FASHION_CLASSES = (
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
)
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGES, _LABELS = 2051, 2049  # magic numbers: unsigned bytes, 3 dims / 1 dim
_CHUNK = 1 << 20
_CACHE: dict = {}  # (path, size, mtime_ns) -> validated header/labels


def find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = folder / name
        if p.is_file():
            return p
    return None


def has_idx(folder: Path) -> bool:
    return all(find_file(folder, s) is not None for s in SPLIT_FILES["train"])


def _read_all(path: Path, want_data: bool) -> tuple[bytes, int, bytes]:
    """(first 32 bytes, total uncompressed length, data if wanted) -- gzip CRC checked."""
    head, chunks, total = b"", [], 0
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            while True:
                b = f.read(_CHUNK)
                if not b:
                    break
                if len(head) < 32:
                    head = (head + b)[:32]
                if want_data:
                    chunks.append(b)
                total += len(b)
    except (OSError, EOFError, zlib.error) as e:
        raise CnnedgeError(f"{path}: corrupt or truncated file ({' '.join(str(e).split())})") from None
    return head, total, b"".join(chunks)


def inspect_idx(path: Path, kind: str) -> tuple[tuple[int, ...], int, np.ndarray | None]:
    """Validate an IDX file; returns (dims, header_bytes, labels for a label file)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise CnnedgeError(f"{path}: cannot read ({e.strerror or e})") from None
    key = (str(path), kind, st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    want_magic, ndim = (_IMAGES, 3) if kind == "images" else (_LABELS, 1)
    head, total, data = _read_all(path, want_data=(kind == "labels"))
    header_bytes = 4 + 4 * ndim
    if len(head) < header_bytes:
        raise CnnedgeError(f"{path}: truncated IDX header ({total} bytes)")
    magic = struct.unpack(">I", head[:4])[0]
    if magic != want_magic:
        raise CnnedgeError(f"{path}: not an IDX {kind} file (magic {magic}, expected {want_magic})")
    dims = struct.unpack(f">{ndim}I", head[4:header_bytes])
    if dims[0] == 0 or (ndim == 3 and (dims[1] == 0 or dims[2] == 0)):
        raise CnnedgeError(f"{path}: IDX dimensions {dims} contain a zero")
    if ndim == 3 and (dims[1] > 4096 or dims[2] > 4096):
        raise CnnedgeError(f"{path}: implausible IDX image size {dims[1]}x{dims[2]}")
    expected = header_bytes + int(np.prod(dims, dtype=np.int64))
    if total != expected:
        raise CnnedgeError(
            f"{path}: wrong length {total} bytes for IDX dims {dims} "
            f"(expected {expected}); truncated or corrupt"
        )
    labels = None
    if kind == "labels":
        labels = np.frombuffer(data, np.uint8, offset=header_bytes).astype(np.int32)
    _CACHE[key] = (dims, header_bytes, labels)
    return _CACHE[key]


class IdxSource(Source):
    raw_bytes = 800

    def __init__(
        self,
        folder: Path,
        *,
        name: str,
        class_names=None,
        val_fraction=0.0,
        seed=0,
        resize=None,
        batch_mode="pad",
    ):
        folder = Path(folder)
        self._files, self._label_files, base, counts, shape = {}, {}, {}, {}, None
        for split, (img_stem, lab_stem) in SPLIT_FILES.items():
            img, lab = find_file(folder, img_stem), find_file(folder, lab_stem)
            if img is None and lab is None and split == "test":
                continue
            if img is None or lab is None:
                missing = img_stem if img is None else lab_stem
                raise CnnedgeError(f"{folder}: missing IDX file {missing}(.gz)")
            dims, hb, _ = inspect_idx(img, "images")
            (n_lab,), _, labels = inspect_idx(lab, "labels")
            if dims[0] != n_lab:
                raise CnnedgeError(f"{img}: {dims[0]} images but {lab.name} has {n_lab} labels")
            if shape is not None and dims[1:] != shape:
                raise CnnedgeError(
                    f"{img}: images are {dims[1]}x{dims[2]}, train images are {shape[0]}x{shape[1]}"
                )
            shape = dims[1:]
            self._files[split] = (img, hb)
            self._label_files[split] = lab
            base[split] = SplitIndex(split, labels)
            counts[split] = n_lab
        top = max(int(b.labels.max()) for b in base.values())
        if class_names is None:
            class_names = tuple(str(i) for i in range(max(10, top + 1)))
        for split, b in base.items():
            bad = np.flatnonzero(b.labels >= len(class_names))
            if bad.size:
                raise CnnedgeError(
                    f"{self._label_files[split]}: label "
                    f"{b.labels[bad[0]]} at index {bad[0]} is out of range "
                    f"(0-{len(class_names) - 1})"
                )
        self._shape = shape
        self._base_labels = {k: v.labels for k, v in base.items()}
        super().__init__(
            name=name,
            source=folder,
            format="idx",
            class_names=class_names,
            channels=1,
            image_size=resize or shape,
            splits=make_splits(base, val_fraction, seed),
            base_counts=counts,
            resize=resize,
            batch_mode=batch_mode,
        )

    def _base_raw(self, base):
        path, header = self._files[base]
        h, w = self._shape
        records = tf.data.FixedLengthRecordDataset(
            str(path),
            record_bytes=h * w,
            header_bytes=header,
            compression_type="GZIP" if path.suffix == ".gz" else "",
            buffer_size=1 << 20,
        )
        labels = tf.data.Dataset.from_tensor_slices(self._base_labels[base])
        return tf.data.Dataset.zip((records, labels))

    def _decode_batch(self, raw, labels):
        h, w = self._shape
        return tf.reshape(tf.io.decode_raw(raw, tf.uint8), [-1, h, w, 1]), labels

    def _explain(self, split, err):
        path = self._files.get(self.split_index(split).base if split else "train", ("?",))[0]
        return f"{path}: cannot read IDX records ({err.message})"


def open_idx(folder, *, fashion: bool, name: str | None = None, **kw) -> IdxSource:
    folder = Path(folder)
    return IdxSource(
        folder,
        name=name or ("fashion-mnist" if fashion else folder.name),
        class_names=FASHION_CLASSES if fashion else None,
        **kw,
    )


__all__ = ["FASHION_CLASSES", "IdxSource", "has_idx", "inspect_idx", "open_idx"]
