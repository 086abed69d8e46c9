"""Probabilities (softmax + EMA smoothing, top-k), the on-frame overlay and the frame it is drawn
on (small frames enlarged, images of a folder letterboxed into one canvas).

Drawing uses only cheap OpenCV primitives (filled rectangles, Hershey text, one small
nearest-neighbour inset), straight into the frame: no alpha blending, no full-frame copies.
"""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, GREY, BLACK, PANEL = (255, 255, 255), (170, 170, 170), (0, 0, 0), (48, 48, 48)
GREEN, ORANGE, CYAN = (80, 220, 80), (0, 165, 255), (230, 200, 40)  # BGR
IMAGE_CANVAS = (640, 480)  # output frame (w, h) of image sources: see display_image


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64).ravel()
    e = np.exp(z - z.max())
    return e / e.sum()


class Smoother:
    """Exponential moving average of probability vectors: p = s * p_prev + (1 - s) * p_new."""

    def __init__(self, smooth: float):
        if not 0.0 <= float(smooth) < 1.0:
            raise ValueError(f"--smooth must be in [0, 1), got {smooth}")
        self.s = float(smooth)
        self.p: np.ndarray | None = None

    def __call__(self, p: np.ndarray) -> np.ndarray:
        if self.p is None or self.s == 0.0:
            self.p = p.copy()
        else:
            self.p *= self.s
            self.p += (1.0 - self.s) * p
        return self.p

    def reset(self):
        self.p = None


def top_k(p: np.ndarray, k: int) -> list[tuple[int, float]]:
    idx = np.argsort(-p, kind="stable")[:k]  # ties (int8 logits): lowest index, like argmax
    return [(int(i), float(p[i])) for i in idx]


class Overlay:
    """Draws the ROI, top-k bars, latency/FPS line and the model-input inset onto a BGR frame."""

    def __init__(self, class_names: list[str], label: str, keys_help: str | None = None, inset: bool = True):
        self.names = [n if len(n) <= 16 else n[:15] + "." for n in class_names]
        self.label = label
        self.keys_help = keys_help
        self.inset = inset
        self._geom_for = None
        self._inset_buf: np.ndarray | None = None
        self._inset_gray: np.ndarray | None = None

    def _geometry(self, shape):
        if shape[:2] != self._geom_for:
            h, w = shape[:2]
            f = max(0.45, min(w / 640.0, h / 480.0))  # text scale follows the frame size
            self.fs, self.th = 0.5 * f, max(1, int(round(f)))
            self.row, self.pad = int(26 * f), int(8 * f)
            self.panel_w = int(250 * f)
            self.bar_h = max(3, int(6 * f))
            self.inset_side = int(84 * f)
            self._geom_for = shape[:2]

    def _inset(self, small: np.ndarray, n: int) -> np.ndarray:
        """``small`` (H×W gray or H×W×3 RGB) enlarged to n×n BGR, in buffers reused per frame."""
        if self._inset_buf is None or self._inset_buf.shape[0] != n:
            self._inset_buf = np.empty((n, n, 3), np.uint8)
            self._inset_gray = np.empty((n, n), np.uint8)
        if small.ndim == 2:
            cv2.resize(small, (n, n), dst=self._inset_gray, interpolation=cv2.INTER_NEAREST)
            cv2.cvtColor(self._inset_gray, cv2.COLOR_GRAY2BGR, dst=self._inset_buf)
        else:
            big = cv2.resize(small, (n, n), interpolation=cv2.INTER_NEAREST)
            cv2.cvtColor(big, cv2.COLOR_RGB2BGR, dst=self._inset_buf)
        return self._inset_buf

    def draw(
        self,
        img: np.ndarray,
        box,
        top: list[tuple[int, float]],
        *,
        infer_ms: float,
        fps: float,
        inverted: bool,
        model_input: np.ndarray | None = None,
        frozen: bool = False,
        tag: str | None = None,
        notes: list[str] = (),
    ) -> np.ndarray:
        """``box`` (x, y, w, h): the region in ``img``; ``notes``: extra lines (collect counts)
        in a panel under the top-k panel."""
        self._geometry(img.shape)
        self._roi(img, box, inverted, tag)
        self._top_panel(img, top)
        if notes:
            self._notes_panel(img, notes, below=self.pad + self.row * len(top) + self.pad if top else 0)
        self._status(img, infer_ms, fps, frozen)
        if self.inset and model_input is not None:
            self._model_inset(img, model_input)
        return img

    def _text(self, img, text, org, colour, scale=1.0) -> None:
        cv2.putText(img, text, org, FONT, self.fs * scale, colour, self.th, cv2.LINE_AA)

    def _roi(self, img, box, inverted: bool, tag: str | None) -> None:
        fs, pad = self.fs, self.pad
        x, y, bw, bh = box
        colour = ORANGE if inverted else GREEN
        cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), colour, 2 * self.th)
        tag = (tag or f"ROI {bw}px") + (" inverted" if inverted else "")
        below = y + bh + int(24 * fs * 2) < img.shape[0]
        ty = y + bh + int(18 * fs * 2) if below else y + bh - pad
        self._text(img, tag, (x + 2 if below else x + pad, ty), colour)

    def _top_panel(self, img, top: list[tuple[int, float]]) -> None:
        """Solid background, name + percentage, confidence bar per class."""
        pad, row, pw = self.pad, self.row, self.panel_w
        x0, y0 = pad, pad
        if top:
            cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + pad + row * len(top)), PANEL, -1)
        for r, (i, p) in enumerate(top):
            ty = y0 + row * r + int(row * 0.62)
            colour = WHITE if r == 0 else GREY
            self._text(img, self.names[i] if i < len(self.names) else str(i), (x0 + pad, ty), colour)
            self._text(img, f"{100 * p:5.1f}%", (x0 + pw - int(62 * self.fs * 2), ty), colour)
            by = ty + int(row * 0.18)
            bw = pw - 2 * pad
            cv2.rectangle(img, (x0 + pad, by), (x0 + pad + bw, by + self.bar_h), (90, 90, 90), -1)
            bar_end = (x0 + pad + int(bw * min(1.0, p)), by + self.bar_h)
            cv2.rectangle(img, (x0 + pad, by), bar_end, GREEN if r == 0 else CYAN, -1)

    def _notes_panel(self, img, notes: list[str], below: int) -> None:
        pad, row, x0 = self.pad, self.row, self.pad
        y1 = pad + below
        cv2.rectangle(img, (x0, y1), (x0 + self.panel_w, y1 + pad + int(row * 0.8) * len(notes)), PANEL, -1)
        for r, line in enumerate(notes):
            self._text(img, line[:28], (x0 + pad, y1 + int(row * 0.8) * r + int(row * 0.6)), WHITE, 0.9)

    def _status(self, img, infer_ms: float, fps: float, frozen: bool) -> None:
        """The status line at the bottom."""
        h, w = img.shape[:2]
        pad = self.pad
        status = f"infer {infer_ms:.2f} ms  {fps:.0f} FPS  {self.label}"
        if frozen:
            status += "  [frozen]"
        if self.keys_help:
            status += f"  {self.keys_help}"
        (tw, tht), _ = cv2.getTextSize(status, FONT, self.fs, self.th)
        cv2.rectangle(img, (0, h - tht - 2 * pad), (min(w - 1, tw + 2 * pad), h - 1), PANEL, -1)
        self._text(img, status, (pad, h - pad), WHITE)

    def _model_inset(self, img, model_input: np.ndarray) -> None:
        """What the model saw (after crop, colour, resize, inversion), top-right."""
        h, w = img.shape[:2]
        n, pad = self.inset_side, self.pad
        if w > n + 2 * pad + self.panel_w and h > n + 3 * pad:
            xs, ys = w - n - pad, pad
            img[ys : ys + n, xs : xs + n] = self._inset(model_input, n)
            cv2.rectangle(img, (xs - 1, ys - 1), (xs + n, ys + n), WHITE, 1)
            self._text(img, "model input", (xs, ys + n + int(16 * self.fs * 2)), WHITE, 0.8)


# ------------------------------------------------------------------ the frame drawn on
MIN_DISPLAY = 360  # smaller frames (e.g. 28×28 dataset images) are enlarged to draw the overlay


def display_size(shape) -> tuple[int, int]:
    h, w = shape[:2]
    f = -(-MIN_DISPLAY // min(h, w)) if min(h, w) < MIN_DISPLAY else 1
    return w * f, h * f


def _bgr(img):
    if img.ndim == 2 or img.shape[2] != 3:
        return cv2.cvtColor(
            img, cv2.COLOR_GRAY2BGR if img.ndim == 2 or img.shape[2] == 1 else cv2.COLOR_BGRA2BGR
        )
    return img


def display_frame(frame, box):
    """The BGR frame to draw on (the decoded frame itself when possible) and the region in it."""
    img = _bgr(frame)
    h, w = img.shape[:2]
    if min(h, w) < MIN_DISPLAY:
        f = -(-MIN_DISPLAY // min(h, w))
        img = cv2.resize(img, (w * f, h * f), interpolation=cv2.INTER_NEAREST)
        box = tuple(v * f for v in box)
    return img, box


def display_image(frame, box):
    """An image of a folder letterboxed at its own aspect into the fixed IMAGE_CANVAS, so the
    output video has one frame size whatever the images' sizes. Fixed 640×480 rather than the
    largest image: it needs no pass over the folder before the first frame, it is the size the
    overlay's text is laid out for, and it is the 4:3 of most camera frames. Small images are
    enlarged by a whole factor with nearest neighbour (crisp pixels), large ones area-averaged."""
    cw, ch = IMAGE_CANVAS
    img = _bgr(frame)
    h, w = img.shape[:2]
    s = min(cw / w, ch / h)
    if s >= 1:
        s = float(int(s))
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    canvas = np.zeros((ch, cw, 3), np.uint8)
    x0, y0 = (cw - nw) // 2, (ch - nh) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(
        img, (nw, nh), interpolation=cv2.INTER_NEAREST if s >= 1 else cv2.INTER_AREA
    )
    x, y, bw, bh = box
    return canvas, (x0 + round(x * s), y0 + round(y * s), max(1, round(bw * s)), max(1, round(bh * s)))
