"""``--collect DIR``: turn a camera or video into an image-folder dataset, ``DIR/<label>/NNNN.png``.

Each saved image is the region the model looks at (the square ROI), in RGB (gray for a
1-channel model) at the camera's resolution, before resizing and without the demo's inversion:
a dataset records what the camera saw, and whatever model is trained on it gets its own
preprocessing from its own metadata. The full frame goes to ``DIR/.full/<label>/NNNN.png`` (same
number): a hidden folder, so that dataset loaders, which skip hidden folders, never train on it.
Numbers continue after the highest one already there and a file is never overwritten; each file
is written to a temporary name and linked into place, so an interrupted save leaves no partial
image. Labels and the folder are checked before anything runs (:func:`check`).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from cnnedge import preprocess as P
from cnnedge.errors import CnnedgeError
from cnnedge.files import default_mode
from cnnedge.utils import folder_name  # noqa: F401 (folder_name: the demo's name for it)

FULL = ".full"
KEYS = "1234567890"  # key 1 is the first label, ..., key 0 the tenth
_NUMBERED = re.compile(r"^(\d+)\.[A-Za-z0-9]+$")


def parse_labels(text: str | None) -> list[str]:
    """``"cat,dog"`` -> ["cat", "dog"]; every name must be a plain folder name."""
    if text is None:
        return []
    labels = [s.strip() for s in str(text).split(",")]
    for name in labels:
        problem = label_problem(name)
        if problem:
            raise CnnedgeError(f"--label {name!r}: not a valid folder name ({problem})")
    dup = sorted({n for n in labels if labels.count(n) > 1})
    if dup:
        raise CnnedgeError(f"--label names {', '.join(dup)} more than once")
    if len(labels) > len(KEYS):
        raise CnnedgeError(f"--label gives {len(labels)} labels; keys 1-9 and 0 save at most {len(KEYS)}")
    return labels


def label_problem(name: str) -> str | None:
    if not name:
        return "empty"
    if "/" in name or "\\" in name or os.sep in name:
        return "contains a path separator"
    if name in (".", ".."):
        return f"{name!r} is not a folder name"
    if name.startswith("."):
        return "starts with '.': a hidden folder, which dataset loaders skip"
    if any(ord(c) < 32 for c in name):
        return "contains a control character"
    return None


def check(root, labels: list[str]) -> Path:
    """Fail before the run when ``root`` (or what of it exists) cannot be written: a real write
    probe, because permission bits do not stop root and a read-only mount is not in them."""
    root = Path(root).expanduser()
    targets = [root, *(root / lb for lb in labels), root / FULL, *(root / FULL / lb for lb in labels)]
    for folder in targets:
        if folder.exists() and not folder.is_dir():
            raise CnnedgeError(f"--collect {root}: {folder} is a file, not a folder")
    probed = set()
    for folder in targets:
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
        if existing in probed:
            continue
        probed.add(existing)
        try:
            fd, probe = tempfile.mkstemp(prefix=".cnnedge-probe-", dir=existing)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise CnnedgeError(
                f"--collect {root}: cannot write in folder {existing} ({e.strerror or e})"
            ) from None
    return root


class CollectError(CnnedgeError):
    """An image could not be saved (a full disk): the run stops, keeping what it collected."""


class Collector:
    """Saves ROI crops (and full frames) under their labels; ``counts`` per label in the folder."""

    def __init__(self, root, labels: list[str]):
        self.root = Path(root).expanduser()
        self.labels = list(labels)
        self.counts = {lb: self._count(lb) for lb in self.labels}
        self.saved: dict[str, int] = dict.fromkeys(self.labels, 0)
        self.files: list[str] = []
        self._n = {lb: self._next(lb) for lb in self.labels}  # next free number per label

    def _count(self, label: str) -> int:
        d = self.root / label
        if not d.is_dir():
            return 0
        return sum(
            1
            for p in d.iterdir()
            if p.suffix.lower() in P.IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        )

    def _next(self, label: str) -> int:
        top = 0
        for d in (self.root / label, self.root / FULL / label):
            if d.is_dir():
                for name in os.listdir(d):
                    m = _NUMBERED.match(name)
                    if m:
                        top = max(top, int(m.group(1)))
        return top + 1

    def key_label(self, key: int) -> str | None:
        """The label a key code saves under (None: not a collect key)."""
        i = KEYS.find(chr(key)) if 0 <= key < 0x110000 else -1
        return self.labels[i] if 0 <= i < len(self.labels) else None

    def save(self, label: str, crop: np.ndarray, frame: np.ndarray | None = None) -> str:
        """Write ``crop`` (RGB/gray H×W×C) and the BGR ``frame``; returns the crop's path."""
        n = self._n[label]
        roi_png = _png(crop, rgb=True)
        full_png = None if frame is None else _png(frame, rgb=False)
        while True:
            path = self.root / label / f"{n:04d}.png"
            if _place(roi_png, path):
                break
            n += 1  # another collector took this number meanwhile
        self._n[label] = n + 1
        self.counts[label] += 1  # counted before the full frame: a failure there keeps the crop
        self.saved[label] += 1
        rel = f"{label}/{path.name}"
        self.files.append(rel)
        if full_png is not None:
            _place(full_png, self.root / FULL / label / path.name, replace=True)
        return rel

    def lines(self) -> list[str]:
        """Overlay text: one line per label with its key and the number of images."""
        return [f"{KEYS[i]} {lb}: {self.counts[lb]}" for i, lb in enumerate(self.labels)]


def _png(img: np.ndarray, rgb: bool) -> bytes:
    cv = P.cv2()
    if img.ndim == 3 and img.shape[2] == 1:
        img = img.reshape(img.shape[:2])
    elif rgb and img.ndim == 3:
        img = cv.cvtColor(img, cv.COLOR_RGB2BGR)
    ok, buf = cv.imencode(".png", img)
    if not ok:
        raise CnnedgeError(f"cannot encode a {img.shape} image as PNG")
    return buf.tobytes()


def _place(data: bytes, path: Path, replace: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically; False when ``path`` exists (and not ``replace``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise CollectError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        default_mode(tmp)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # unlike rename, never replaces an existing file
        except FileExistsError:
            return False
        except OSError:  # no hard links (FAT SD cards): rename, after checking
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    except OSError as e:
        raise CollectError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
