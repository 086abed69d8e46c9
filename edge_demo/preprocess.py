"""Camera frame -> model input: the demo's region of interest, then :mod:`cnnedge.preprocess`.

1. a region: a centred square (``roi`` × the frame's short side) for cameras and videos; for
   image files (``roi`` None) the whole image, so a folder is classified exactly as
   ``cnnedge predict`` classifies it. When the model resizes to a square size, the square's side
   is rounded down to a multiple of it, so the area resize below is exact k×k binning,
2. colour, size and resize policy by the shared module (``from_bgr``, then
   :class:`cnnedge.preprocess.Preprocessor` with the artifact's metadata: grayscale for 1-channel
   models, RGB for 3-channel ones, ``resize`` policy, ``size_policy``) — the demo and ``predict``
   cannot disagree. ``native_size`` (dynamic-H×W models) feeds the region at its own size; its
   default follows the model (``size_policy: keep``),
3. inversion (``invert``: "model", "auto", "on" or "off"). Fashion-MNIST garments are light on a
   black background; a garment photographed on a table is dark on light. "auto" inverts when the
   region's border is not dark (mean >= 48, the shared module's dark-background limit) and is
   clearly brighter than its centre or, when they are about equal, when it is light (> 127).
   "model" (the default) is "auto" for models whose metadata says their training images have a
   plain dark background and "off" otherwise.

Without a model (collecting only) the region is just cropped and converted to RGB/gray.
"""

from __future__ import annotations

import cv2
import numpy as np

from cnnedge import preprocess as P
from cnnedge.errors import CnnedgeError

INVERT_MODES = ("model", "auto", "on", "off")
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
    border = (_mean(img) * n - _mean(img[b : h - b, b : w - b]) * n_in) / max(1, n - n_in)
    centre = _mean(img[h // 4 : h - h // 4, w // 4 : w - w // 4])
    if border < P.DARK:  # already the training look: a sandal's strap at the edge around an
        return False  # empty centre is "brighter than the centre", not a light background
    if border - centre > AUTO_MARGIN:
        return True
    if centre - border > AUTO_MARGIN:
        return False
    return border > 127.0


def model_background(metadata: dict) -> str | None:
    """The metadata's ``background``; artifacts exported before the key existed were all
    Fashion-MNIST-like when 1-channel (dark) and natural photos when RGB (None)."""
    if "background" in metadata:
        return metadata["background"]
    return "dark" if int(metadata.get("channels", 0)) == 1 else None


class FramePreprocessor:
    """``pre(frame) -> (batch uint8 [1, H, W, C], inverted)`` for one model's metadata: the
    region, then the shared :class:`cnnedge.preprocess.Preprocessor`, then inversion
    (``metadata`` None: :meth:`crop` only, for collecting without a model)."""

    def __init__(
        self,
        metadata: dict | None,
        roi: float | None = 0.6,
        invert: str = "model",
        native_size: bool | None = None,
    ):
        if roi is not None and not 0.0 < float(roi) <= 1.0:
            raise CnnedgeError(f"--roi is a fraction of the frame's short side in (0, 1], got {roi}")
        if invert not in INVERT_MODES:
            raise CnnedgeError(f"--invert must be one of {', '.join(INVERT_MODES)}, got {invert!r}")
        self.roi = None if roi is None else float(roi)
        self.channels: int | None = None
        self.size: tuple[int, int] | None = None
        self.min_size = 1
        self.background = None
        self.invert = "off"
        self.native_size = False
        self.shared: P.Preprocessor | None = None
        if metadata is not None:
            self._for_model(metadata, invert, native_size)
        self._box_for: tuple | None = None
        self._box = (0, 0, 0, 0)
        self.last_crop: np.ndarray | None = None  # H×W×C RGB/gray region before resizing
        self.last_input: np.ndarray | None = None  # H×W(×3) view of what the model saw

    def _for_model(self, meta: dict, invert: str, native_size: bool | None) -> None:
        self.channels = int(meta["channels"])
        if self.channels not in (1, 3):
            raise CnnedgeError(
                f"the model expects {self.channels}-channel input; the demo feeds "
                f"grayscale (1) or RGB (3) camera frames"
            )
        dynamic = bool(meta.get("dynamic_hw", False))
        self.min_size = int(meta.get("min_input_size") or 1)
        size = meta.get("image_size")
        if native_size is None:  # follow the model: trained on images at their own size
            native_size = meta.get("size_policy") == "keep" and dynamic
        if native_size and not dynamic:
            raise CnnedgeError(
                f"--native-size needs a dynamic-H×W (GMP) model, but this one has a "
                f"fixed input size {size}; drop --native-size"
            )
        if not native_size and not size:
            raise CnnedgeError(
                "the model's metadata has no training image_size; use --native-size "
                "(dynamic model) or re-export it with cnnedge export"
            )
        self.native_size = bool(native_size)
        # native: the shared module's keep-size path; else force the training size even for a
        # keep-size model (the user asked for --no-native-size)
        self.shared = (
            P.Preprocessor(dict(meta, size_policy="keep"))
            if self.native_size
            else P.Preprocessor(meta, image_size=size)
        )
        self.size = self.shared.size
        self.background = model_background(meta)
        self.invert = ("auto" if self.background == "dark" else "off") if invert == "model" else invert

    # ------------------------------------------------------------------ geometry
    def region(self, shape) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the region the model sees in a frame of ``shape``."""
        if shape[:2] != self._box_for:
            h, w = shape[:2]
            if self.roi is None:
                self._box = (0, 0, w, h)
            else:
                s = int(round(self.roi * min(h, w)))
                if s < self.min_size:
                    raise CnnedgeError(
                        f"the ROI is {s}×{s} pixels ({self.roi:g} of a {w}×{h} "
                        f"frame), smaller than the model's minimum input "
                        f"{self.min_size}×{self.min_size}; use a larger --roi or "
                        f"a larger frame"
                    )
                if self.size and self.size[0] == self.size[1] and s >= self.size[0]:
                    s -= s % self.size[0]  # whole multiple: area resize = exact binning
                self._box = ((w - s) // 2, (h - s) // 2, s, s)
            self._box_for = shape[:2]
        return self._box

    def roi_box(self, shape) -> tuple[int, int, int]:
        """(x, y, side) of the centred square ROI (square mode)."""
        x, y, w, _ = self.region(shape)
        return x, y, w

    # ------------------------------------------------------------------ conversion
    def crop(self, frame: np.ndarray) -> np.ndarray:
        """The region of ``frame`` (BGR/BGRA/gray) as RGB or gray H×W×C at full resolution, in
        the model's channel count: what it sees before resizing (and what --collect saves)."""
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            raise CnnedgeError(f"frames must be uint8 H×W or H×W×C images, got {frame.dtype} {frame.shape}")
        x, y, w, h = self.region(frame.shape)
        img = P.from_bgr(frame[y : y + h, x : x + w])
        if self.channels is not None:
            img = P.to_channels(img, self.channels)
        self.last_crop = img
        return img

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, bool]:
        if self.shared is None:
            raise CnnedgeError("no model: the demo only collects frames")
        crop = self.crop(frame)
        img = self.shared(crop)
        inverted = self.invert == "on" or (self.invert == "auto" and should_invert(img))
        if inverted:
            if np.may_share_memory(img, frame) or np.may_share_memory(img, crop):
                img = img.copy()  # never invert the caller's frame or the collected crop
            cv2.bitwise_not(img, dst=img)
        img = np.ascontiguousarray(img)
        self.last_input = img.reshape(img.shape[:2]) if img.shape[2] == 1 else img
        return img.reshape(1, *img.shape), inverted
