"""Image folders: ``<root>/<class>/*`` or ``<root>/{train,val,test}/<class>/*``.

Files are listed once (``os.scandir``, sorted by name) and their *headers* are read in Python
when the folder is opened: that checks every file's signature and gives each image's size and
channel count without decoding anything. Images are then read and decoded in parallel inside
tf.data (``decode_jpeg``/``decode_png`` when the folder holds only one kind, else
``decode_image``).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from cnnedge.backend import tf
from cnnedge.data.base import Source, SplitIndex, make_splits
from cnnedge.errors import CnnedgeError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_DIRS = ("train", "val", "test")
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class _BadImage(Exception):
    pass


def image_header(path: str) -> tuple[str, int, int, int]:
    """(kind, height, width, channels-after-decode) from the first bytes of an image file."""
    with open(path, "rb") as f:
        head = f.read(1024)
        if head[:2] == b"\xff\xd8":
            h, w, c = _jpeg_header(f, head)
            return "jpeg", h, w, c
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            if len(head) < 26 or head[12:16] != b"IHDR":
                raise _BadImage("truncated PNG header")
            w, h = struct.unpack(">II", head[16:24])
            color = head[25]
            if h == 0 or w == 0 or color not in (0, 2, 3, 4, 6):
                raise _BadImage(f"unsupported PNG header ({h}x{w}, color type {color})")
            return "png", h, w, 1 if color in (0, 4) else 3
        if head[:2] == b"BM":
            if len(head) < 30:
                raise _BadImage("truncated BMP header")
            dib = struct.unpack("<I", head[14:18])[0]
            if dib == 12:
                w, h, _planes, bpp = struct.unpack("<hhHH", head[18:26])
            else:
                w, h, _planes, bpp = struct.unpack("<iiHH", head[18:30])
            h = abs(h)
            if h == 0 or w <= 0:
                raise _BadImage(f"unsupported BMP size {h}x{w}")
            return "bmp", h, w, 1 if bpp <= 8 else 3
        if head[:6] in (b"GIF87a", b"GIF89a"):
            if len(head) < 10:
                raise _BadImage("truncated GIF header")
            w, h = struct.unpack("<HH", head[6:10])
            if h == 0 or w == 0:
                raise _BadImage("GIF with zero size")
            return "gif", h, w, 3
    raise _BadImage("not a JPEG, PNG, BMP or GIF file (unknown signature)")


def _jpeg_header(f, head: bytes) -> tuple[int, int, int]:
    """Walk JPEG segments from the start of the file until the frame (SOF) header."""
    pos, buf, buf_start = 2, head, 0

    def need(k):  # make sure buf holds bytes [pos, pos+k) of the file
        nonlocal buf, buf_start, pos
        if pos + k <= len(buf):
            return True
        absolute = buf_start + pos
        f.seek(absolute)
        buf, buf_start, pos = f.read(max(k, 4096)), absolute, 0
        return len(buf) >= k

    while True:
        if not need(2):
            raise _BadImage("JPEG ends before its frame header")
        if buf[pos] != 0xFF:
            raise _BadImage("corrupt JPEG marker")
        marker = buf[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            raise _BadImage("JPEG has no frame header")
        if not need(4):
            raise _BadImage("truncated JPEG segment")
        length = struct.unpack(">H", buf[pos + 2:pos + 4])[0]
        if length < 2:
            raise _BadImage("corrupt JPEG segment length")
        if marker in _SOF:
            if not need(10):
                raise _BadImage("truncated JPEG frame header")
            h, w = struct.unpack(">HH", buf[pos + 5:pos + 9])
            comps = buf[pos + 9]
            if h == 0 or w == 0 or comps not in (1, 3, 4):
                raise _BadImage(f"unsupported JPEG frame ({h}x{w}, {comps} components)")
            return h, w, 1 if comps == 1 else 3
        pos += 2 + length


def _list_images(class_dir: Path) -> list[str]:
    try:
        with os.scandir(class_dir) as it:
            names = [e.name for e in it if not e.name.startswith(".")
                     and os.path.splitext(e.name)[1].lower() in EXTENSIONS and e.is_file()]
    except OSError as e:
        raise CnnedgeError(f"{class_dir}: cannot list ({e.strerror or e})") from None
    return [os.path.join(class_dir, n) for n in sorted(names)]


IGNORED_DIRS = ("__MACOSX",)  # archive metadata extracted beside the real folders


def _subdirs(folder: Path) -> list[str]:
    """Class folders: visible sub-folders; a link back to the folder itself or above it is an
    error (it would turn the dataset into one more class)."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if e.is_dir() and not e.name.startswith(".")
                       and e.name not in IGNORED_DIRS]
    except OSError as e:
        raise CnnedgeError(f"{folder}: cannot list ({e.strerror or e})") from None
    here = Path(folder).resolve()
    for e in entries:
        target = Path(e.path).resolve()
        if e.is_symlink() and (target == here or target in here.parents):
            raise CnnedgeError(f"{e.path}: a link to {target}, which holds this folder; remove "
                               f"it (class folders must hold images)")
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
        raise CnnedgeError(f"{where}: only one class folder ({class_names[0]}); "
                           "need at least two")
    lookup = {c: i for i, c in enumerate(class_names)}
    splits = {}
    for split, sroot in roots.items():
        items = []
        for c in _subdirs(sroot):
            if c not in lookup:
                raise CnnedgeError(f"{sroot / c}: class folder not present in "
                                   f"{roots.get('train', root)}")
            images = _list_images(sroot / c)
            if not images and split == "train":  # an empty class would still be trained on
                raise CnnedgeError(f"{sroot / c}: class folder holds no images "
                                   f"({', '.join(EXTENSIONS)}); add images or remove it")
            items += [(p, lookup[c]) for p in images]
        if not items:
            raise CnnedgeError(f"{sroot}: no images ({', '.join(EXTENSIONS)}) in its class folders")
        splits[split] = items
    return tuple(class_names), splits


class FolderSource(Source):
    vectorized = False
    raw_bytes = 256

    def __init__(self, root: Path, *, name=None, val_fraction=0.0, seed=0, resize=None,
                 keep_size=False, batch_mode="pad"):
        root = Path(root)
        class_names, items = scan_layout(root)
        self._paths, base, counts = {}, {}, {}
        kinds, chans, shapes = set(), set(), {}
        for split, pairs in items.items():
            hdr = np.zeros((len(pairs), 2), np.int32)
            for i, (p, _) in enumerate(pairs):
                try:
                    kind, h, w, c = image_header(p)
                except _BadImage as e:
                    raise CnnedgeError(f"{p}: unreadable image ({e})") from None
                except OSError as e:
                    raise CnnedgeError(f"{p}: cannot read ({e.strerror or e})") from None
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
                base[split].shapes = np.concatenate(
                    [hdr, np.full((len(hdr), 1), channels, np.int32)], axis=1)
        else:
            few = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
            raise CnnedgeError(f"{root}: images differ in size ({few}, ...); choose a "
                               "size: --image-size HxW (e.g. 64x64) or --image-size keep "
                               "(recipe: data.image_size=64x64 | keep)")
        self._kind = kinds.pop() if len(kinds) == 1 else "mixed"
        super().__init__(
            name=name or root.name, source=root, format="folder", class_names=class_names,
            channels=channels, image_size=image_size,
            splits=make_splits(base, val_fraction, seed), base_counts=counts, resize=resize,
            keep_size=keep_size, batch_mode=batch_mode)

    def _raw(self, split):
        idx = self.split_index(split)
        paths = self._paths[idx.base]
        if idx.select is not None:
            paths = paths[idx.select]
        return tf.data.Dataset.from_tensor_slices((paths, idx.labels))

    def _decode_one(self, path, label):
        data = tf.io.read_file(path)
        c = self.info.channels
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
                ok = raw.enumerate().map(
                    lambda i, pl: (i, tf.shape(self._decode_one(*pl)[0])[0]),
                    num_parallel_calls=-1).ignore_errors()
                good = {int(i) for i, _ in ok.as_numpy_iterator()}
                idx = self.split_index(s)
                paths = self._paths[idx.base] if idx.select is None else \
                    self._paths[idx.base][idx.select]
                bad = [paths[i] for i in range(len(paths)) if i not in good]
                if bad:
                    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                    return f"{bad[0]}: cannot decode image{more} ({msg})"
        except Exception:  # noqa: BLE001, S110 - fall back to TensorFlow's message
            pass
        return f"{self.info.source}: {msg}"
