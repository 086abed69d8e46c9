"""Pixels from image files, video frames and cameras -> what a cnnedge model was trained on.

The one preprocessing path of ``cnnedge predict`` and the edge demo. Images are decoded to RGB
(or grayscale) uint8, converted to the model's channel count, then fitted to its input by the
policy the artifact's metadata records: ``stretch`` (resize to the training ``image_size``, as
training did), ``letterbox`` (keep the aspect, pad with black) or ``crop`` (centre-crop to the
aspect, then resize); a model trained with ``size_policy: keep`` gets each image at its own size.
Models take uint8 pixels and rescale inside the graph, so nothing here normalises. Shrinking uses
area averaging, enlarging bilinear interpolation (training resizes with antialiasing, which is the
same filter up to rounding). Files are read by :mod:`cnnedge.imagefile`, which refuses
non-regular files, oversized files and images of more than its pixel limit before any decoder
runs. Needs numpy and OpenCV only, never TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnedge import imagefile
from cnnedge.errors import CnnedgeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
RESIZE_POLICIES = ("stretch", "letterbox", "crop")
DARK, LIGHT = 48.0, 207.0  # mean border brightness under/over which a dataset has a plain background


def cv2():
    try:
        import cv2 as _cv2
    except ImportError:
        raise CnnedgeError("OpenCV is not installed: pip install opencv-python-headless")
    return _cv2


def cv_cause(e: Exception) -> str:
    """An OpenCV exception as one line: its kind and message, without build and source path."""
    import re

    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else type(e).__name__
    m = re.search(r"error: \((-?\d+):([^)]*)\)\s*(.*)", first)
    return f"OpenCV: {m.group(2)}{': ' + m.group(3) if m.group(3) else ''}" if m else first


def list_images(folder) -> list[Path]:
    """Image files under ``folder``, recursively, in sorted path order; hidden files and
    folders (``.git``, macOS ``._x.jpg``) and ``__MACOSX`` are not images of the dataset."""
    import os

    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        out += [
            Path(root) / f
            for f in sorted(files)
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES
        ]
    return out


# ------------------------------------------------------------------------------- decoding
def decode(data: bytes | np.ndarray, name: str = "image") -> np.ndarray:
    """Encoded image bytes -> uint8 H×W×C, C = 1 (gray) or 3 (RGB); alpha is dropped and 16-bit
    images are scaled to 8 bits. A file that does not decode, or a truncated JPEG (which OpenCV
    would decode half grey with only a warning), is a :class:`CnnedgeError` naming ``name``;
    so is one whose header claims more pixels than :func:`cnnedge.imagefile.max_pixels`."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
    imagefile.check_bytes(buf.tobytes(), name)  # before any decoder sees it
    return _decode(buf, name)


def _decode(buf: np.ndarray, name: str) -> np.ndarray:
    """:func:`decode` of bytes whose header passed the checks."""
    cv = cv2()
    if buf[:2].tobytes() == b"\xff\xd8":
        data = buf.tobytes()  # an end-of-image marker after the last scan (data may follow it)
        if data.find(b"\xff\xd9", max(2, data.rfind(b"\xff\xda"))) < 0:
            raise CnnedgeError(f"{name}: truncated JPEG (no end-of-image marker)")
    try:
        img = cv.imdecode(buf, cv.IMREAD_UNCHANGED)
    except cv.error as e:  # e.g. a damaged header
        raise CnnedgeError(f"{name}: cannot decode image ({cv_cause(e)})") from None
    if img is None:
        img = _decode_pillow(buf, name)  # formats some OpenCV builds lack (GIF)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise CnnedgeError(f"{name}: unsupported pixel type {img.dtype}")
    if img.ndim == 3 and img.shape[2] not in (1, 3, 4):
        raise CnnedgeError(f"{name}: {img.shape[2]}-channel image; expected gray, RGB or RGBA")
    return from_bgr(img)


def _decode_pillow(buf: np.ndarray, name: str) -> np.ndarray:
    import io

    try:
        from PIL import Image

        with Image.open(io.BytesIO(buf.tobytes())) as im:
            im.load()
            mode = "L" if im.mode in ("1", "L", "I;16", "I") else "RGB"
            rgb = np.asarray(im.convert(mode))
    except Exception as e:  # noqa: BLE001 - any decoder failure is the same bad file
        raise CnnedgeError(f"{name}: cannot decode image (not an image, or damaged: {type(e).__name__})")
    # back to OpenCV's order, so that decode() has one colour conversion path
    return rgb if rgb.ndim == 2 else np.ascontiguousarray(rgb[..., ::-1])


def read_image(path) -> np.ndarray:
    """Decode the image file ``path`` (see :func:`decode`): a FIFO, device or socket is refused
    without being opened, and a file larger than its header allows is not read."""
    _, data = imagefile.read(path, str(path))  # regular files only, header checked, bounded
    return _decode(np.frombuffer(data, np.uint8), str(path))


def from_bgr(frame: np.ndarray) -> np.ndarray:
    """An OpenCV frame (BGR, BGRA or gray) -> RGB or gray H×W×C."""
    cv = cv2()
    if frame.ndim == 2:
        return frame[..., None]
    if frame.shape[2] == 4:
        return cv.cvtColor(frame, cv.COLOR_BGRA2RGB)
    if frame.shape[2] == 3:
        return cv.cvtColor(frame, cv.COLOR_BGR2RGB)
    return frame


# ------------------------------------------------------------------------------- fitting
def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Gray <-> RGB as the model needs (H×W×C in, H×W×channels out)."""
    c = img.shape[2] if img.ndim == 3 else 1
    if c == channels:
        return img if img.ndim == 3 else img[..., None]
    cv = cv2()
    if channels == 3 and c == 1:
        return cv.cvtColor(img.reshape(img.shape[:2]), cv.COLOR_GRAY2RGB)
    if channels == 1 and c == 3:
        return cv.cvtColor(img, cv.COLOR_RGB2GRAY)[..., None]
    raise CnnedgeError(f"cannot convert a {c}-channel image to the model's {channels} channels")


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize H×W×C to ``size`` (H, W): area averaging to shrink, bilinear to enlarge."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    cv = cv2()
    shrink = h <= img.shape[0] and w <= img.shape[1]
    out = cv.resize(img, (w, h), interpolation=cv.INTER_AREA if shrink else cv.INTER_LINEAR)
    return out.reshape(h, w, img.shape[2] if img.ndim == 3 else 1)


def fit(img: np.ndarray, size: tuple[int, int], policy: str = "stretch") -> np.ndarray:
    """``img`` fitted into ``size`` by ``policy`` (stretch | letterbox | crop)."""
    if policy not in RESIZE_POLICIES:
        raise CnnedgeError(f"resize policy must be one of {', '.join(RESIZE_POLICIES)}, got {policy!r}")
    h, w = size
    ih, iw = img.shape[:2]
    if policy == "stretch" or (ih, iw) == (h, w):
        return resize(img, size)
    if policy == "crop":  # the largest centred box of the target aspect
        if iw * h > ih * w:
            cw = max(1, round(ih * w / h))
            x = (iw - cw) // 2
            img = img[:, x : x + cw]
        else:
            ch = max(1, round(iw * h / w))
            y = (ih - ch) // 2
            img = img[y : y + ch]
        return resize(np.ascontiguousarray(img), size)
    s = min(h / ih, w / iw)  # letterbox: the whole image, black bars (what keep-size padding is)
    nh, nw = max(1, round(ih * s)), max(1, round(iw * s))
    out = np.zeros((h, w, img.shape[2]), np.uint8)
    y, x = (h - nh) // 2, (w - nw) // 2
    out[y : y + nh, x : x + nw] = resize(img, (nh, nw))
    return out


def background(images) -> str | None:
    """ "dark", "light" or None: the mean brightness of the images' outer border ring. A plain
    dark background (Fashion-MNIST, MNIST) is what makes inverting a photo of a dark object on
    a light table the right input; natural photos have no such background."""
    rings = []
    for img in images:
        img = np.asarray(img).reshape(np.asarray(img).shape[-3:])
        h, w = img.shape[:2]
        b = max(1, min(h, w) // 8)
        mask = np.ones((h, w), bool)
        mask[b : h - b, b : w - b] = False
        rings.append(float(img[mask].mean()))
    if not rings:
        return None
    m = float(np.mean(rings))
    return "dark" if m < DARK else "light" if m > LIGHT else None


class Preprocessor:
    """``pre(img RGB/gray H×W×C) -> uint8 H×W×C`` for one model's metadata.

    ``resize``/``image_size`` override the metadata's policy and size; ``notes`` collects what
    was converted (e.g. grayscale images into an RGB model), so a caller can say it once.
    """

    def __init__(self, metadata: dict, *, resize: str | None = None, image_size=None):
        self.channels = int(metadata["channels"])
        if self.channels not in (1, 3):
            raise CnnedgeError(
                f"the model expects {self.channels}-channel input; images are fed as grayscale (1) or RGB (3)"
            )
        self.policy = resize or metadata.get("resize") or "stretch"
        if self.policy not in RESIZE_POLICIES:
            raise CnnedgeError(
                f"resize policy must be one of {', '.join(RESIZE_POLICIES)}, got {self.policy!r}"
            )
        self.dynamic = bool(metadata.get("dynamic_hw", False))
        self.min_size = int(metadata.get("min_input_size") or 1)
        keep = metadata.get("size_policy") == "keep" and image_size is None
        size = image_size or metadata.get("image_size")
        if keep and self.dynamic:
            self.size = None
        elif size:
            self.size = (int(size[0]), int(size[1]))
        else:  # feeding each image at its own size would not be what the model was trained on
            raise CnnedgeError(
                "the model's metadata says no training image size (a model file "
                "outside its run?); pass one: --image-size HxW"
            )
        if self.size and self.dynamic and min(self.size) < self.min_size:
            raise CnnedgeError(
                f"image size {self.size[0]}x{self.size[1]} is smaller than the "
                f"model's minimum input {self.min_size}x{self.min_size}"
            )
        self.notes: set[str] = set()

    def __call__(self, img: np.ndarray) -> np.ndarray:
        c = img.shape[2] if img.ndim == 3 else 1
        if c != self.channels:
            self.notes.add(
                f"{'grayscale' if c == 1 else 'colour'} images converted to "
                f"{'RGB' if self.channels == 3 else 'grayscale'} for this "
                f"{self.channels}-channel model"
            )
        img = to_channels(img, self.channels)
        if self.size is not None:
            return fit(img, self.size, self.policy)
        h, w = img.shape[:2]
        if min(h, w) < self.min_size:  # too small for the model's strides: enlarge, keep aspect
            s = self.min_size / min(h, w)
            img = resize(img, (max(self.min_size, round(h * s)), max(self.min_size, round(w * s))))
            self.notes.add(
                f"images smaller than the model's minimum {self.min_size}×{self.min_size} were enlarged"
            )
        return img
