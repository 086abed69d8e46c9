"""Frame sources: camera index, video file, image file, folder or glob, RTSP/HTTP URL.

The kinds of source, and how a source string names one, are :mod:`cnnedge.frames` (the list
``cnnedge predict`` takes too); this module reads them with two disciplines:

* **live** (camera, URL): a capture thread keeps only the *newest* frame. When inference is
  slower than the camera, old frames are dropped (counted in ``dropped``) instead of queueing
  up, so what is shown is never more than one frame behind. A lost camera/stream is reopened
  ``reconnect`` times (with a growing pause), then reading fails with a clear error.
* **files** (video, images): every frame is read, in order. Decoding still runs ahead in a
  thread (a small bounded queue), so it overlaps with inference, but nothing is dropped and
  the result is deterministic (this is what the tests rely on). A folder is walked recursively
  in sorted path order (hidden files and folders and ``__MACOSX`` skipped) and decoded by
  :func:`cnnedge.preprocess.read_image`, like ``cnnedge predict``; an image that does not decode
  (or is no regular file, a FIFO say, which is never opened) is skipped with a warning
  (``on_skip``), not the end of the run. A glob's images are read in the order it matches.

Only OpenCV and numpy are used here.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import NamedTuple

from cnnedge import frames, imagefile
from cnnedge import preprocess as P
from cnnedge.errors import CnnedgeError

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # no V4L/FFmpeg warnings around our one-line errors
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402

try:  # the environment variable only counts if cv2 was not imported before us
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
except AttributeError:
    pass


class Frame(NamedTuple):
    image: object  # np.ndarray, BGR (or gray) uint8 as OpenCV decodes it
    index: int  # position in the source (live: capture counter, so gaps = dropped frames)
    t: float  # time.perf_counter() when it was decoded
    name: str | None = None  # image sources: the file


class Skipped(NamedTuple):
    """An image that did not decode: handed to the consumer thread, which warns and goes on."""

    message: str


_END = object()


class Source:
    """Base: ``read()`` -> the next :class:`Frame`, or None at the end of a file source."""

    live = False
    kind = "?"
    fps: float | None = None
    frame_shape: tuple = ()  # shape of the first frame (read when the source is opened)

    def __init__(self, spec: str):
        self.spec = spec
        self.dropped = 0
        self.skipped: list[str] = []  # warnings about files that were skipped
        self.on_skip = None  # called with each warning, in the thread that reads

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _OrderedSource(Source):
    """Every frame, in order, decoded ahead by a thread into a bounded queue."""

    def __init__(self, spec: str, depth: int = 8):
        super().__init__(spec)
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _frames(self):  # generator of (image, index); runs in the reader thread
        raise NotImplementedError

    def start(self):
        self._thread = threading.Thread(target=self._run, name=f"read:{self.kind}", daemon=True)
        self._thread.start()
        return self

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        try:
            for item in self._frames():
                if not isinstance(item, Skipped):
                    item = Frame(item[0], item[1], time.perf_counter(), *item[2:])
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            self._put(e)

    def read(self) -> Frame | None:
        item = self._q.get()
        while isinstance(item, Skipped):
            self._warn(item.message)
            item = self._q.get()
        if item is _END:
            self._q.put(_END)  # stay at the end for further reads
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def _warn(self, message: str) -> None:
        self.skipped.append(message)
        if self.on_skip is not None:
            self.on_skip(message)

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class VideoFileSource(_OrderedSource):
    kind = "video"

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path
        self._cap = frames.open_capture(path)
        ok, first = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok or first is None:
            self._cap.release()
            raise CnnedgeError(
                f"cannot read video {path}: OpenCV/FFmpeg cannot decode it (not a "
                f"video, corrupt or empty); re-encode it, e.g. ffmpeg -i {path.name} "
                f"out.mp4"
            )
        self._first = first
        self.frame_shape = first.shape
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def _frames(self):
        cap, i = self._cap, 0
        try:
            yield self._first, 0
            self._first = None
            while not self._stop.is_set():
                ok, img = cap.read()
                if not ok:
                    return
                i += 1
                yield img, i
        finally:
            cap.release()


class ImageSource(_OrderedSource):
    kind = "images"
    fps = 2.0  # frame rate of the annotated video written for image sources

    def __init__(self, spec: frames.Spec, on_skip=None):
        path = spec.target
        super().__init__(str(path))
        self.on_skip = on_skip
        files = frames.image_files(spec)
        several = spec.kind != "image"
        if not files and spec.kind == "glob":
            raise CnnedgeError(f"no images match {path} (looked for {', '.join(P.IMAGE_SUFFIXES)})")
        if not files:
            raise CnnedgeError(
                f"no images in folder {path} (looked for "
                f"{', '.join(P.IMAGE_SUFFIXES)} in it and its sub-folders)"
            )
        self.root = (
            path
            if spec.kind == "folder"
            else Path(os.path.commonpath([str(f.parent.absolute()) for f in files]))
        )
        self.files = files
        self.frame_count = len(files)
        # the first image that decodes gives the frame shape; a single file must decode
        problems = []
        for i, p in enumerate(files):
            try:
                self._first = (i, self._imread(p))
                break
            except CnnedgeError as e:
                if not several:
                    raise
                problems.append(str(e))
        else:
            where = "matching" if spec.kind == "glob" else "in folder"
            raise CnnedgeError(
                f"no readable images {where} {path}: all {len(files)} fail to decode (first: {problems[0]})"
            )
        for m in problems:  # warned only once the run can go on: an error is one line alone
            self._warn(f"skipping {m}")
        self.frame_shape = self._first[1].shape

    @staticmethod
    def _imread(p: Path):
        """The shared decoder (the one predict uses), back to OpenCV's BGR/gray frame layout."""
        img = P.read_image(p)
        return img.reshape(img.shape[:2]) if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)

    def _frames(self):
        start, first = self._first
        self._first = (start, None)
        for i, p in enumerate(self.files[start:], start):
            if self._stop.is_set():
                return
            if i == start:
                img = first
            else:
                try:
                    img = self._imread(p)
                except CnnedgeError as e:
                    yield Skipped(f"skipping {e}")
                    continue
            yield img, i, os.path.relpath(p.absolute(), self.root)


class LiveSource(Source):
    """Camera index or stream URL: a capture thread that keeps only the newest frame."""

    live = True

    def __init__(self, spec: str, target, reconnect: int = 3, read_timeout: float = 10.0):
        super().__init__(spec)
        self.kind = "camera" if isinstance(target, int) else "stream"
        self._target = target
        self.reconnect = int(reconnect)
        self.read_timeout = float(read_timeout)
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._seen = -1
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._cap = self._open()
        ok, img = self._first_read(self._cap)
        if not ok:
            self._cap.release()
            raise CnnedgeError(self._open_error())
        self._latest = Frame(img, 0, time.perf_counter())
        self.frame_shape = img.shape
        self._count = 1
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.kind}", daemon=True)

    def _open(self):
        try:
            cap = frames.open_capture(self._target)
        except frames.SourceError as e:  # an index OpenCV cannot take, an OpenCV exception
            raise CnnedgeError(f"cannot open {self.kind} {self.spec}: {e.cause}") from None
        if isinstance(self._target, int) and cap.isOpened():
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # drivers that honour it queue 1 frame, not 4
        return cap

    @staticmethod
    def _first_read(cap):
        if not cap.isOpened():
            return False, None
        for _ in range(5):  # some cameras deliver a few empty frames while starting
            ok, img = cap.read()
            if ok and img is not None:
                return True, img
            time.sleep(0.05)
        return False, None

    def _open_error(self) -> str:
        if self.kind == "camera":
            return (
                f"cannot open camera {self._target} (no camera at that index, or it is busy); "
                f"check the device (ls /dev/video*) and try another --source index"
            )
        return (
            f"cannot open stream {self.spec} (unreachable, wrong URL/credentials, or a "
            f"protocol this OpenCV build does not support)"
        )

    def start(self):
        with self._cond:  # the frame read while opening counts from now, not from the open
            self._latest = self._latest._replace(t=time.perf_counter())
        self._thread.start()
        return self

    def _publish(self, img):
        with self._cond:
            self._latest = Frame(img, self._count, time.perf_counter())
            self._count += 1
            self._cond.notify_all()

    def _run(self):
        cap, failures = self._cap, 0
        try:
            while not self._stop.is_set():
                ok, img = cap.read()
                if ok and img is not None:
                    failures = 0
                    self._publish(img)
                    continue
                # lost: reopen a few times, pausing longer each time
                cap.release()
                failures += 1
                if failures > self.reconnect:
                    raise CnnedgeError(
                        f"lost {self.kind} {self.spec}: no frames after "
                        f"{self.reconnect} reconnect attempts; check the "
                        f"{'cable/driver' if self.kind == 'camera' else 'network/URL'}"
                        f" and restart the demo"
                    )
                self._stop.wait(0.5 * failures)
                cap = self._cap = self._open()
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            with self._cond:
                self._error = e
                self._cond.notify_all()
        finally:
            cap.release()

    def read(self) -> Frame | None:
        with self._cond:
            deadline = time.monotonic() + self.read_timeout
            while (self._latest is None or self._latest.index <= self._seen) and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CnnedgeError(
                        f"{self.kind} {self.spec} delivered no frame for {self.read_timeout:.0f} s"
                    )
                self._cond.wait(left)
            if self._error is not None:
                raise self._error
            f = self._latest
            self.dropped += f.index - self._seen - 1
            self._seen = f.index
            return f

    def close(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        else:
            self._cap.release()


def open_source(spec, reconnect: int = 3, start: bool = True, on_skip=None) -> Source:
    """A :class:`Source` for ``spec`` (:func:`cnnedge.frames.parse`): camera index ("0"),
    /dev/videoN, a URL, a video file, an image file, a folder or a glob of images. Opening
    checks that a first frame can be read; ``start`` starts the reader thread (else call
    ``.start()``); ``on_skip`` gets a warning for each image that does not decode."""
    s = frames.parse(str(spec).strip())
    if s.live:
        src: Source = LiveSource(s.text, s.target, reconnect=reconnect)
    elif s.kind == "missing":
        raise CnnedgeError(
            f"no such file or folder: {s.text} (--source takes a camera index "
            f"like 0, a video, an image, a folder or a glob of images, or a URL)"
        )
    elif s.kind in ("image", "folder", "glob"):
        if s.kind == "image":  # a FIFO or device would block the reader: never opened
            imagefile.check_regular(s.target)
        src = ImageSource(s, on_skip=on_skip)
    else:  # a video, a file of another suffix, or a FIFO/device (refused unopened)
        imagefile.check_regular(s.target)
        src = VideoFileSource(s.target)
    return src.start() if start else src
