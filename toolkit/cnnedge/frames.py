"""Where frames come from: the one list of source kinds of ``cnnedge predict`` and the edge demo.

    for item in frames.expand(["photos/", "shots/*.jpg", "clip.mp4", "0"], every=5):
        item.source, item.path if item.image is None else item.image, item.error

Kinds of source, in the order :func:`parse` tells them apart (a :class:`Spec` each):

- ``stream``: an ``rtsp://``, ``http(s)://``, ``rtmp://``, ``udp://`` or ``tcp://`` URL, or a
  ``/dev/videoN`` device; ``camera``: an index (``0``) that is no existing path. Both are live:
  opened by :func:`open_capture`, read as they come.
- ``folder``: its images, recursively, in sorted path order; ``image``: a file with an image
  suffix; ``glob``: a pattern (``photos/**/*.jpg``) that is no existing path, its matches in
  sorted order. :func:`image_files` lists their images.
- ``video``: a file with a video suffix, opened by :func:`open_capture`.
- ``file``: a regular file with another suffix (``predict`` reads it as an image, so the image
  reader names what it is not; the demo opens it as a video, so OpenCV/FFmpeg does).
- ``special``: a FIFO, socket or device; refused without being opened (it could block).
- ``missing``: none of these.

:func:`expand` turns sources into :class:`Item` s in order (what ``predict`` batches): image
files as paths (decoded later, in a thread pool, by :func:`cnnedge.preprocess.read_image`),
video, camera and stream frames decoded to RGB, and whatever cannot be opened as an item with
its error in one line, so that the other sources still run. The demo (``edge_demo/capture.py``)
reads the same kinds with its own threading (the newest frame of a live source, every frame of
a file): :func:`image_files` for image sources, :func:`open_capture` for the others.

A new kind of source is a branch in :func:`parse` plus its reader here (in
:func:`image_files` for images, :func:`open_capture` for anything OpenCV opens); ``predict``
and the demo both take it then. Needs numpy and OpenCV only, never TensorFlow.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnedge import preprocess
from cnnedge.errors import CnnedgeError
from cnnedge.preprocess import IMAGE_SUFFIXES, VIDEO_SUFFIXES

KINDS = ("camera", "stream", "video", "image", "folder", "glob", "file", "special", "missing")
LIVE = ("camera", "stream")  # read as they come: the newest frame, predicted at once
URL_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
DEVICE_PREFIX = "/dev/video"  # V4L2 cameras by path: OpenCV opens them like an index
MAX_CAMERA = 2**31 - 1  # OpenCV takes a C int


@dataclass(frozen=True)
class Spec:
    """What one source string names."""

    text: str  # as given
    kind: str  # one of KINDS
    target: int | str | Path  # camera index, URL or device path, file/folder path, or pattern

    @property
    def live(self) -> bool:
        return self.kind in LIVE

    @property
    def name(self) -> str:
        """How rows and messages name the source ("camera 0" for a camera index)."""
        return f"camera {self.text.strip()}" if self.kind == "camera" else self.text


@dataclass
class Item:
    """One image of a source: a file to decode, a decoded frame, or an error."""

    source: str
    path: Path | None = None  # an image file
    image: np.ndarray | None = None  # a decoded frame (RGB/gray H×W×C)
    frame: int | None = None  # video / camera frame number
    error: str | None = None
    live: bool = False  # a camera or stream frame: predicted at once, never held for a batch


def parse(source) -> Spec:
    """The :class:`Spec` of one source string (see the table in the module docstring)."""
    text = str(source)
    p = Path(text).expanduser()
    if text.lower().startswith(URL_PREFIXES):
        return Spec(text, "stream", text)
    if text.strip().isdigit() and not p.exists():  # an existing file or folder "0" wins
        return Spec(text, "camera", int(text.strip()))
    if text.startswith(DEVICE_PREFIX):
        return Spec(text, "stream", text)
    if p.is_dir():
        return Spec(text, "folder", p)
    if p.is_file():
        suffix = p.suffix.lower()
        kind = "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else "file"
        return Spec(text, kind, p)
    if p.exists():
        return Spec(text, "special", p)
    if glob.has_magic(text):
        return Spec(text, "glob", text)
    return Spec(text, "missing", p)


def glob_hits(pattern: str, suffixes=IMAGE_SUFFIXES + VIDEO_SUFFIXES) -> list[Path]:
    """Folders and files with one of ``suffixes`` that ``pattern`` matches (``**`` recursive),
    in sorted order."""
    hits = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    return [Path(h) for h in hits if Path(h).is_dir() or Path(h).suffix.lower() in suffixes]


def image_files(spec: Spec) -> list[Path]:
    """The image files of an ``image``, ``folder`` or ``glob`` source, in order: a folder
    recursively in sorted path order (hidden files and folders and ``__MACOSX`` skipped), a
    glob's folders likewise and its image files as matched. Empty when there are none."""
    if spec.kind in ("image", "file", "special"):
        return [Path(spec.target)]
    if spec.kind == "folder":
        return preprocess.list_images(spec.target)
    if spec.kind == "glob":
        hits = glob_hits(str(spec.target), IMAGE_SUFFIXES)
        return [f for h in hits for f in (preprocess.list_images(h) if h.is_dir() else [h])]
    raise CnnedgeError(f"{spec.text}: a {spec.kind} source has no image files")


class SourceError(CnnedgeError):
    """A source that cannot be opened; ``cause`` says why without naming the source."""

    def __init__(self, name: str, cause: str, what: str | None = None):
        super().__init__(f"{name}: {what} ({cause})" if what else f"{name}: {cause}")
        self.cause = cause


def open_capture(target, name: str | None = None):
    """``cv2.VideoCapture(target)`` of a camera index, device path, URL or video file; an index
    OpenCV cannot take or an OpenCV exception is a :class:`SourceError` in one line. Whether it
    opened is the caller's to check (``isOpened()``): cameras and files say it differently."""
    name = str(target) if name is None else name
    if isinstance(target, int) and target > MAX_CAMERA:
        raise SourceError(name, f"no such camera index (OpenCV takes 0 to {MAX_CAMERA})")
    cv = preprocess.cv2()
    try:
        return cv.VideoCapture(target if isinstance(target, int) else str(target))
    except cv.error as e:  # e.g. an index or a backend OpenCV refuses
        raise SourceError(name, preprocess.cv_cause(e), "cannot open") from None


# ------------------------------------------------------------------------------ predict's order
def expand(sources, every: int = 1, max_frames: int | None = None) -> Iterator[Item]:
    """Every image of ``sources`` in order: files, folders (recursive), globs, videos (every
    ``every``-th frame, at most ``max_frames`` each), cameras and streams. What cannot be
    opened is an item with its error."""
    for s in sources:
        spec = parse(s)
        s = spec.text
        if spec.kind in ("video", *LIVE):
            yield from read_frames(spec, every, max_frames)
        elif spec.kind == "folder":
            files = image_files(spec)
            if not files:
                yield Item(s, error=f"{s}: no images in folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            yield from (Item(str(f), path=f) for f in files)
        elif spec.kind in ("image", "file", "special"):  # the reader refuses a FIFO unopened
            yield Item(s, path=Path(spec.target))
        elif spec.kind == "glob":
            hits = glob_hits(s)
            if not hits:
                yield Item(s, error=f"{s}: nothing matches (images, videos or folders)")
            yield from expand(hits, every, max_frames)  # each hit as a file, video or folder
        else:
            yield Item(s, error=f"{s}: no such file, folder or camera")


def read_frames(spec: Spec, every: int = 1, max_frames: int | None = None) -> Iterator[Item]:
    """The frames of a video, camera or stream as RGB items; a failure is an item with its
    error, in one line."""
    name = spec.name
    try:
        cap = open_capture(spec.target, name)
    except SourceError as e:
        yield Item(name, error=str(e))
        return
    if not cap.isOpened():
        what = {"camera": "camera does not open", "stream": "stream does not open"}
        yield Item(name, error=f"{name}: {what.get(spec.kind, 'cannot open video')}")
        return
    cv = preprocess.cv2()
    try:
        i = n = 0
        while max_frames is None or n < max_frames:
            try:
                ok, frame = cap.read()
            except cv.error as e:
                yield Item(name, frame=i, error=f"{name}: cannot read frame {i} ({preprocess.cv_cause(e)})")
                break
            if not ok:
                if i == 0:
                    yield Item(name, error=f"{name}: no frames could be read")
                break
            if i % every == 0:
                yield Item(name, image=preprocess.from_bgr(frame), frame=i, live=spec.live)
                n += 1
            i += 1
    finally:
        cap.release()
