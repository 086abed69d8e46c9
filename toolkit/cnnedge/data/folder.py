"""Image folders: ``<root>/<class>/*`` or ``<root>/{train,val,test}/<class>/*``.

Files are listed once (``os.scandir``, sorted by name) and their *headers* are read in Python
when the folder is opened (:mod:`cnnedge.imagefile`, the reader ``predict`` and the demo use):
that checks every file's signature, pixel count and file size and gives each image's size and
channel count without decoding anything. Images are then read and decoded in parallel inside
tf.data (``decode_jpeg``/``decode_png`` when the folder holds only one kind, else
``decode_image``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnnedge import imagefile
from cnnedge.backend import tf
from cnnedge.data.base import Source, SplitIndex, make_splits
from cnnedge.errors import CnnedgeError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_DIRS = ("train", "val", "test")
TRAIN_KINDS = ("jpeg", "png", "bmp", "gif")  # what tf.io.decode_image reads


def image_header(path: str) -> tuple[str, int, int, int]:
    """(kind, height, width, channels-after-decode) from the first bytes of an image file, by
    the shared reader's checks (regular file, pixel limit, file size against the header)."""
    try:
        hdr = imagefile.probe(path)
    except imagefile.BadImage as e:
        raise CnnedgeError(f"{path}: unreadable image ({e.reason})") from None
    if hdr.kind not in TRAIN_KINDS:
        raise CnnedgeError(
            f"{path}: unreadable image (a {hdr.kind.upper()} file; training "
            f"reads JPEG, PNG, BMP and GIF: convert it)"
        )
    return hdr.kind, hdr.height, hdr.width, hdr.channels


def _list_images(class_dir: Path) -> list[str]:
    try:
        with os.scandir(class_dir) as it:
            names = [
                e.name
                for e in it
                if not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in EXTENSIONS
                and e.is_file()
            ]
    except OSError as e:
        raise CnnedgeError(f"{class_dir}: cannot list ({e.strerror or e})") from None
    return [os.path.join(class_dir, n) for n in sorted(names)]


IGNORED_DIRS = ("__MACOSX",)  # archive metadata extracted beside the real folders


def _subdirs(folder: Path) -> list[str]:
    """Class folders: visible sub-folders; a link back to the folder itself or above it is an
    error (it would turn the dataset into one more class)."""
    try:
        with os.scandir(folder) as it:
            entries = [
                e for e in it if e.is_dir() and not e.name.startswith(".") and e.name not in IGNORED_DIRS
            ]
    except OSError as e:
        raise CnnedgeError(f"{folder}: cannot list ({e.strerror or e})") from None
    here = Path(folder).resolve()
    for e in entries:
        target = Path(e.path).resolve()
        if e.is_symlink() and (target == here or target in here.parents):
            raise CnnedgeError(
                f"{e.path}: a link to {target}, which holds this folder; remove "
                f"it (class folders must hold images)"
            )
    return sorted(e.name for e in entries)


def scan_layout(root: Path) -> tuple[tuple[str, ...], dict[str, list[tuple[str, int]]]]:
    """(class names, {split: [(path, label), ...]}) of an image folder."""
    subs = _subdirs(root)
    split_dirs = [s for s in SPLIT_DIRS if s in subs]
    if split_dirs and "train" in split_dirs:
        roots = {s: root / s for s in split_dirs}
        class_names = _subdirs(root / "train")
    elif split_dirs and all(s in SPLIT_DIRS for s in subs):
        roots = {s: root / s for s in split_dirs}
        class_names = sorted({c for s in split_dirs for c in _subdirs(root / s)})
    else:
        roots = {"train": root}
        class_names = subs
    where = roots.get("train", next(iter(roots.values())))
    if not class_names:
        raise CnnedgeError(f"{where}: no class folders (expected <class>/<image files>)")
    if len(class_names) < 2:
        raise CnnedgeError(f"{where}: only one class folder ({class_names[0]}); need at least two")
    lookup = {c: i for i, c in enumerate(class_names)}
    splits = {}
    for split, sroot in roots.items():
        items = []
        for c in _subdirs(sroot):
            if c not in lookup:
                raise CnnedgeError(f"{sroot / c}: class folder not present in {roots.get('train', root)}")
            images = _list_images(sroot / c)
            if not images and split == "train":  # an empty class would still be trained on
                raise CnnedgeError(
                    f"{sroot / c}: class folder holds no images "
                    f"({', '.join(EXTENSIONS)}); add images or remove it"
                )
            items += [(p, lookup[c]) for p in images]
        if not items:
            raise CnnedgeError(f"{sroot}: no images ({', '.join(EXTENSIONS)}) in its class folders")
        splits[split] = items
    return tuple(class_names), splits


class FolderSource(Source):
    vectorized = False
    raw_bytes = 256

    def __init__(
        self,
        root: Path,
        *,
        name=None,
        val_fraction=0.0,
        seed=0,
        resize=None,
        keep_size=False,
        batch_mode="pad",
    ):
        root = Path(root)
        class_names, items = scan_layout(root)
        self._paths, base, counts = {}, {}, {}
        kinds, chans, shapes = set(), set(), {}
        for split, pairs in items.items():
            hdr = np.zeros((len(pairs), 2), np.int32)
            for i, (p, _) in enumerate(pairs):
                kind, h, w, c = image_header(p)
                hdr[i] = (h, w)
                kinds.add(kind)
                chans.add(c)
            self._paths[split] = np.array([p for p, _ in pairs])
            shapes[split] = hdr
            labels = np.array([lab for _, lab in pairs], np.int32)
            base[split] = SplitIndex(split, labels)
            counts[split] = len(labels)
        channels = 1 if chans == {1} else 3
        sizes = {tuple(s) for hdr in shapes.values() for s in np.unique(hdr, axis=0)}
        if resize:
            image_size = tuple(int(v) for v in resize)
        elif len(sizes) == 1:
            image_size = next(iter(sizes))
        elif keep_size:
            image_size = None
            for split, hdr in shapes.items():
                base[split].shapes = np.concatenate([hdr, np.full((len(hdr), 1), channels, np.int32)], axis=1)
        else:
            few = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
            raise CnnedgeError(
                f"{root}: images differ in size ({few}, ...); choose a "
                "size: --image-size HxW (e.g. 64x64) or --image-size keep "
                "(recipe: data.image_size=64x64 | keep)"
            )
        self._kind = kinds.pop() if len(kinds) == 1 else "mixed"
        super().__init__(
            name=name or root.name,
            source=root,
            format="folder",
            class_names=class_names,
            channels=channels,
            image_size=image_size,
            splits=make_splits(base, val_fraction, seed),
            base_counts=counts,
            resize=resize,
            keep_size=keep_size,
            batch_mode=batch_mode,
        )

    def _raw(self, split):
        idx = self.split_index(split)
        paths = self._paths[idx.base]
        if idx.select is not None:
            paths = paths[idx.select]
        return tf.data.Dataset.from_tensor_slices((paths, idx.labels))

    def _decode_one(self, path, label):
        data = tf.io.read_file(path)
        c = self.decoded_channels
        if self._kind == "jpeg":
            image = tf.io.decode_jpeg(data, channels=c)
        elif self._kind == "png":
            image = tf.io.decode_png(data, channels=c, dtype=tf.uint8)
        else:
            image = tf.io.decode_image(data, channels=c, dtype=tf.uint8, expand_animations=False)
        return image, label

    def _explain(self, split, err):
        """Find which file(s) fail to decode (only on the error path: one fast pass)."""
        msg = " ".join(str(getattr(err, "message", err)).split())
        try:
            splits = [split] if split else list(self.splits)
            for s in splits:
                raw = self._raw(s)
                ok = (
                    raw.enumerate()
                    .map(lambda i, pl: (i, tf.shape(self._decode_one(*pl)[0])[0]), num_parallel_calls=-1)
                    .ignore_errors()
                )
                good = {int(i) for i, _ in ok.as_numpy_iterator()}
                idx = self.split_index(s)
                paths = self._paths[idx.base] if idx.select is None else self._paths[idx.base][idx.select]
                bad = [paths[i] for i in range(len(paths)) if i not in good]
                if bad:
                    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                    return f"{bad[0]}: cannot decode image{more} ({msg})"
        except Exception:  # noqa: BLE001, S110 - fall back to TensorFlow's message
            pass
        return f"{self.info.source}: {msg}"
