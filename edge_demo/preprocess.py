"""Camera frame -> model input, as the artifact's embedded metadata prescribes.

1. a centred square region of interest (``roi`` × the frame's short side),
2. colour: grayscale for 1-channel models, BGR -> RGB for 3-channel models (the training data
   is RGB),
3. resize to the training ``image_size`` with area averaging (the ROI side is rounded down to a
   multiple of that size, so this is exact, fast k×k binning) — or, with ``native_size`` and a
   dynamic-H×W (GMP) model, the ROI as it is (at least ``min_input_size``),
4. inversion (``invert``: "on", "off" or "auto"). Fashion-MNIST garments are light on a black
   background; a garment photographed on a table is dark on light. "auto" inverts when the
   ROI's border is clearly brighter than its centre (a dark object on a light background) or,
   when they are about equal, when the border itself is light (mean > 127).

Only the ROI is converted; the output lives in a buffer reused from frame to frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from cnnedge.errors import CnnedgeError

INVERT_MODES = ("auto", "on", "off")
AUTO_MARGIN = 12.0  # border - centre difference (0..255) that counts as "clearly brighter"


def _mean(img: np.ndarray) -> float:
    m = cv2.mean(img)
    c = 1 if img.ndim == 2 else img.shape[2]
    return float(sum(m[:c]) / c)


def should_invert(img: np.ndarray) -> bool:
    """The "auto" rule on an H×W or H×W×C uint8 image: border vs centre brightness."""
    h, w = img.shape[:2]
    if min(h, w) < 4:
        return _mean(img) > 127.0
    b = max(1, min(h, w) // 8)  # border ring: the outer eighth
    n, n_in = h * w, (h - 2 * b) * (w - 2 * b)
    border = (_mean(img) * n - _mean(img[b:h - b, b:w - b]) * n_in) / max(1, n - n_in)
    centre = _mean(img[h // 4:h - h // 4, w // 4:w - w // 4])
    if border - centre > AUTO_MARGIN:
        return True
    if centre - border > AUTO_MARGIN:
        return False
    return border > 127.0


class Preprocessor:
    """``pre(frame) -> (batch uint8 [1, H, W, C], inverted)`` for one model's metadata."""

    def __init__(self, metadata: dict, roi: float = 0.6, invert: str = "auto",
                 native_size: bool = False):
        self.channels = int(metadata["channels"])
        if self.channels not in (1, 3):
            raise CnnedgeError(f"the model expects {self.channels}-channel input; the demo feeds "
                               f"grayscale (1) or RGB (3) camera frames")
        if not 0.0 < float(roi) <= 1.0:
            raise CnnedgeError(f"--roi is a fraction of the frame's short side in (0, 1], got {roi}")
        if invert not in INVERT_MODES:
            raise CnnedgeError(f"--invert must be one of {', '.join(INVERT_MODES)}, got {invert!r}")
        self.roi = float(roi)
        self.invert = invert
        self.dynamic = bool(metadata.get("dynamic_hw", False))
        self.min_size = int(metadata.get("min_input_size") or 1)
        size = metadata.get("image_size")
        self.native_size = bool(native_size)
        if self.native_size and not self.dynamic:
            raise CnnedgeError(f"--native-size needs a dynamic-H×W (GMP) model, but this one has a "
                               f"fixed input size {size}; drop --native-size")
        if not self.native_size and not size:
            raise CnnedgeError("the model's metadata has no training image_size; use --native-size "
                               "(dynamic model) or re-export it with cnnedge export")
        self.size = None if self.native_size else (int(size[0]), int(size[1]))
        self._box_for: tuple | None = None
        self._box = (0, 0, 0)
        self._buf: np.ndarray | None = None
        self.last_input: np.ndarray | None = None  # H×W(×C) view of what the model saw

    # ------------------------------------------------------------------ geometry
    def roi_box(self, shape) -> tuple[int, int, int]:
        """(x, y, side) of the centred square ROI in a frame of ``shape``."""
        if shape[:2] != self._box_for:
            h, w = shape[:2]
            s = int(round(self.roi * min(h, w)))
            if s < self.min_size:
                raise CnnedgeError(f"the ROI is {s}×{s} pixels ({self.roi:g} of a {w}×{h} frame), "
                                   f"smaller than the model's minimum input {self.min_size}×"
                                   f"{self.min_size}; use a larger --roi or a larger frame")
            if self.size and self.size[0] == self.size[1] and s >= self.size[0]:
                s -= s % self.size[0]  # whole multiple of the model size: area resize = exact binning
            self._box = ((w - s) // 2, (h - s) // 2, s)
            self._box_for = shape[:2]
        return self._box

    # ------------------------------------------------------------------ conversion
    def _colour(self, roi: np.ndarray) -> np.ndarray:
        c = 1 if roi.ndim == 2 else roi.shape[2]
        if self.channels == 1:
            if c == 1:
                return roi.reshape(roi.shape[:2])
            if c == 3:
                return cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY)
            if c == 4:
                return cv2.cvtColor(roi, cv2.COLOR_BGRA2GRAY)
        else:
            if c == 1:
                return cv2.cvtColor(roi.reshape(roi.shape[:2]), cv2.COLOR_GRAY2RGB)
            if c == 3:
                return cv2.cvtColor(roi, cv2.COLOR_BGR2RGB)
            if c == 4:
                return cv2.cvtColor(roi, cv2.COLOR_BGRA2RGB)
        raise CnnedgeError(f"cannot feed a {c}-channel frame to a {self.channels}-channel model "
                           f"(frames must be grayscale, BGR or BGRA)")

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, bool]:
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            raise CnnedgeError(f"frames must be uint8 H×W or H×W×C images, got {frame.dtype} "
                               f"{frame.shape}")
        x, y, s = self.roi_box(frame.shape)
        roi = frame[y:y + s, x:x + s]
        if self.size is None:  # native size: convert the ROI as it is
            img = self._colour(roi)
            if np.may_share_memory(img, frame) or not img.flags.c_contiguous:
                img = img.copy()  # never invert the caller's frame in place
        else:
            h, w = self.size
            shape = (h, w) if self.channels == 1 else (h, w, 3)
            if self._buf is None or self._buf.shape != shape:
                self._buf = np.empty(shape, np.uint8)
            # colour first on the ROI only, then area-resize into the reused buffer
            img = cv2.resize(self._colour(roi), (w, h), dst=self._buf, interpolation=cv2.INTER_AREA)
        inverted = self.invert == "on" or (self.invert == "auto" and should_invert(img))
        if inverted:
            cv2.bitwise_not(img, dst=img)
        self.last_input = img
        return img.reshape(1, img.shape[0], img.shape[1], self.channels), inverted
