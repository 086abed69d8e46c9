"""Outputs of a run: the annotated video (encoded in its own thread), the JSON-lines log and
the closing summary.

The video and the log are written to a hidden temporary file beside their name and renamed
into place only when the run ends well (``close(commit=True)``): a run that fails half-way leaves
no short video or log a later step could mistake for a result.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path

import cv2

from cnnedge.errors import CnnedgeError

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}


class VideoSink:
    """cv2.VideoWriter fed through a bounded queue by a writer thread (encoding overlaps the
    next frame's inference). ``.mp4`` uses mp4v; if this OpenCV cannot write it, the video goes
    to ``<name>.avi`` with MJPG instead (``path`` says which)."""

    def __init__(self, path, fps: float, size: tuple[int, int], depth: int = 16):
        path = Path(path)
        if path.suffix.lower() not in FOURCC:
            raise CnnedgeError(f"--out {path}: use a .mp4 (mp4v) or .avi (MJPG) file name")
        if path.parent and not path.parent.exists():
            raise CnnedgeError(f"--out {path}: folder {path.parent} does not exist")
        self.size = size
        w, h = size
        fps = float(fps) if fps and fps > 0 else 30.0
        writer = cv2.VideoWriter(
            str(_tmp(path)), cv2.VideoWriter_fourcc(*FOURCC[path.suffix.lower()]), fps, (w, h)
        )
        if not writer.isOpened() and path.suffix.lower() != ".avi":
            writer.release()
            _tmp(path).unlink(missing_ok=True)
            path = path.with_suffix(".avi")
            writer = cv2.VideoWriter(str(_tmp(path)), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
        if not writer.isOpened():
            raise CnnedgeError(
                f"cannot write video {path}: this OpenCV build has no mp4v/MJPG "
                f"encoder (or the folder is not writable); use --no-video"
            )
        self.path = path
        self.frames = 0
        self._w = writer
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._t = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self._t.start()

    def _run(self):
        try:
            while True:
                img = self._q.get()
                if img is None:
                    return
                self._w.write(img)
        except BaseException as e:  # noqa: BLE001 - reported by write()/close()
            self._error = e
            while self._q.get() is not None:  # keep draining so write() never blocks
                pass

    def write(self, img) -> None:
        if self._error is not None:
            raise CnnedgeError(f"writing {self.path} failed: {self._error}")
        if img.shape[1::-1] != self.size:  # image sources: frames of other sizes
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        self._q.put(img)
        self.frames += 1

    def close(self, commit: bool | None = None) -> None:
        """Flush the encoder; ``commit`` True moves the video into place, False deletes it."""
        if self._t.is_alive():
            self._q.put(None)
            self._t.join()
        self._w.release()
        _finish(self.path, commit)


class JsonLog:
    """One JSON object per line; per-frame records, then a final ``{"summary": {...}}``."""

    def __init__(self, path):
        path = Path(path)
        try:
            self._f = open(_tmp(path), "w", buffering=1 << 16)  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise CnnedgeError(f"cannot write log {path}: {e.strerror}") from e
        self.path = path

    def write(self, rec: dict) -> None:
        try:
            self._f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        except OSError as e:  # a full disk: the file is named, the temporary file removed
            self._fail(e)

    def close(self, commit: bool | None = None) -> None:
        if self._f.closed:
            return
        try:
            self._f.close()
        except OSError as e:
            self._fail(e)
        _finish(self.path, commit)

    def _fail(self, e: OSError):
        try:
            self._f.close()
        except OSError:
            pass  # the buffered rest cannot be written either
        _finish(self.path, False)
        raise CnnedgeError(f"cannot write log {self.path}: {e.strerror or e}") from None


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp{path.suffix}")  # the suffix picks the container


def _finish(path: Path, commit: bool | None) -> None:
    if commit is True and _tmp(path).exists():
        os.replace(_tmp(path), path)
    elif commit is False:
        _tmp(path).unlink(missing_ok=True)


def format_summary(s: dict) -> str:
    """The one-paragraph report printed at the end of a run."""
    size = "×".join(str(v) for v in s["frame_size"]) if s["frame_size"] else "?"
    inp = s["input"]
    if s.get("input_shape") and "native" in inp:
        inp = "x".join(str(v) for v in s["input_shape"][1:]) + f" ({inp.split(' x')[0]})"
    lines = [
        f"{s['frames']} frames ({size}, {s['source_kind']}) in {s['seconds']:.2f} s: "
        f"{s['fps']:.1f} FPS end to end ({s['fps_includes']})"
    ]
    if s["model"]:
        lines.append(
            f"model {s['model']} ({s['runtime']} {s['precision']}, threads="
            f"{s['threads']}, input {inp}): inference {s['infer_ms_mean']:.3f} ms mean, "
            f"{s['infer_ms_p95']:.3f} ms p95; per-frame work {s['proc_ms_mean']:.3f} ms; "
            f"CPU {s['cpu_ms_per_frame']:.2f} ms/frame (all threads, {s['cpu_count']} "
            f"cores)"
        )
    if s.get("collect"):
        got = s["collected"]
        lines.append(
            f"saved {sum(got.values())} images to {s['collect']} ("
            + ", ".join(f"{k} {v}" for k, v in got.items())
            + ")"
        )
    if s.get("skipped"):
        lines.append(f"skipped {len(s['skipped'])} unreadable image(s) (see the warnings above)")
    if s["dropped_frames"]:
        lines.append(f"dropped {s['dropped_frames']} camera frames (inference slower than capture)")
    if s["video"]:
        lines.append(f"wrote {s['video']} ({s['video_frames']} frames)")
    if s["log"]:
        lines.append(f"wrote {s['log']}")
    return "\n".join(lines)
