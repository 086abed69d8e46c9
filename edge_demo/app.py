"""The demo loop: source -> ROI preprocessing -> exported model -> smoothed top-k overlay ->
window, or (``headless``) annotated video + JSON-lines log; with ``collect``, ROI crops saved
as an image-folder dataset (keys 1-9/0 in the window, every Nth frame headless), with or
without a model.

    from edge_demo import DemoConfig, run_demo
    summary = run_demo(DemoConfig(source="clip.mp4", model="runs/fashion_mnist/exp",
                                  headless=True, out="demo.mp4"))

``cnnedge demo ...`` and ``python -m edge_demo ...`` both call :func:`run_demo`: its setup,
per-frame step and finish are the methods of ``_Demo``. Needs numpy, OpenCV and a runtime
(ai_edge_litert or onnxruntime) only, never TensorFlow.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError

KEY_QUIT, KEY_SNAPSHOT, KEY_FREEZE = (ord("q"), 27), (ord("s"),), (ord(" "),)
DEFAULT_MODEL = "runs/fashion_mnist/exp"
COLLECT_EVERY = 10  # headless --collect default: 3 images a second of a 30 FPS video
WINDOW = "cnnedge demo (q quit, s snapshot, space freeze)"


@dataclass
class DemoConfig:
    source: str = "0"
    model: str | None = None  # default: DEFAULT_MODEL, or none when collecting
    runtime: str | None = None  # default: by file type (litert for .tflite, onnxruntime for .onnx)
    threads: int = 1  # 1: leaves the other core(s) to decoding/encoding
    roi: float | None = None  # fraction of the short side; default 0.6 (image sources: whole)
    invert: str = "model"  # "auto" for models trained on a dark background, else "off"
    native_size: bool | None = None  # default: the model's size_policy ("keep": native)
    smooth: float = 0.6  # EMA weight of the previous probabilities (0: off; never for images)
    top_k: int = 3
    headless: bool = False
    out: str | None = "demo.mp4"
    no_video: bool = False
    log: str | None = None  # default (headless): <out>.jsonl
    max_frames: int | None = None
    snapshot_dir: str = "."
    snapshot_at: list[int] = field(default_factory=list)  # frame numbers saved as PNG
    reconnect: int = 3
    inset: bool = True
    collect: str | None = None  # dataset folder: save ROI crops under DIR/<label>/
    label: str | None = None  # "cat,dog": keys 1, 2 (headless: one label, every Nth frame)
    collect_every: int | None = None  # save every Nth frame (headless default COLLECT_EVERY)


def gui_problem() -> str | None:
    """Why cv2.imshow cannot work here (None when it can)."""
    import cv2

    m = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.M)
    if m and m.group(1).upper() == "NONE":
        return "this OpenCV build has no GUI (opencv-python-headless)"
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "there is no display (DISPLAY is not set)"
    return None


def _check(cfg: DemoConfig) -> None:
    if cfg.threads is not None and int(cfg.threads) < 1:
        raise CnnedgeError(f"--threads must be >= 1, got {cfg.threads}")
    if not 0.0 <= float(cfg.smooth) < 1.0:
        raise CnnedgeError(f"--smooth is the EMA weight of past frames in [0, 1), got {cfg.smooth}")
    if int(cfg.top_k) < 1:
        raise CnnedgeError(f"--top-k must be >= 1, got {cfg.top_k}")
    if cfg.max_frames is not None and int(cfg.max_frames) < 1:
        raise CnnedgeError(f"--max-frames must be >= 1, got {cfg.max_frames}")
    if cfg.collect is None and (cfg.label is not None or cfg.collect_every is not None):
        raise CnnedgeError("--label and --collect-every need --collect DIR (the dataset folder)")
    if cfg.collect is not None:
        from edge_demo import collect

        labels = collect.parse_labels(cfg.label)
        if cfg.collect_every is not None and int(cfg.collect_every) < 1:
            raise CnnedgeError(f"--collect-every must be >= 1, got {cfg.collect_every}")
        if (cfg.headless or cfg.collect_every is not None) and len(labels) != 1:
            raise CnnedgeError(
                f"--collect {'with --headless ' if cfg.headless else ''}saves every "
                f"Nth frame under one label: give one --label NAME"
                f"{f' (got {len(labels)})' if labels else ''}"
            )
        collect.check(cfg.collect, labels)
    if not cfg.headless:
        problem = gui_problem()
        if problem:
            raise CnnedgeError(
                f"{problem}: run with --headless (writes an annotated video and a "
                f"JSON-lines log), or for a window: pip uninstall -y "
                f"opencv-python-headless && pip install opencv-python"
            )


def _percentile(v: list[float], q: float) -> float:
    return round(float(np.percentile(v, q)), 4) if v else 0.0


def run_demo(
    cfg: DemoConfig, echo: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None
) -> dict:
    """Run the demo until the source ends, ``max_frames``, ``q`` or Ctrl-C; returns a summary.
    ``echo`` gets progress lines, ``warn`` the ``warning: ...`` lines (default: stderr)."""
    echo = echo or (lambda s: print(s, file=sys.stderr))
    warn = warn or (lambda s: print(s, file=sys.stderr))
    _check(cfg)
    demo = _Demo(cfg, echo, warn)
    ok = False  # outputs are moved into place only when the run ends well
    try:
        demo.setup()
        stopped = demo.loop()
        summary = demo.finish()
        ok = True
        if stopped is not None:
            raise stopped
        return summary
    finally:
        demo.close(commit=ok)


class _Demo:
    """One run of the demo, in the order :func:`run_demo` calls it: ``_Demo()`` opens the model,
    the collector and the source (not started yet); :meth:`setup` the preprocessing, overlay,
    log, video and window; :meth:`loop` reads frames and keys, :meth:`step` handles one frame;
    :meth:`finish` makes the summary (the log's last line); :meth:`close` releases everything."""

    def __init__(self, cfg: DemoConfig, echo, warn):
        import cv2  # noqa: F401 - before capture sets OpenCV's log level (as it always was)

        from edge_demo.capture import open_source
        from edge_demo.model import load_model

        self.cfg, self.echo = cfg, echo
        model_arg = cfg.model or (None if cfg.collect else DEFAULT_MODEL)
        self.model_path, self.runner = (
            load_model(model_arg, cfg.runtime, cfg.threads) if model_arg else (None, None)
        )
        self.meta = self.runner.metadata if self.runner is not None else None
        self.names = list(self.meta["class_names"]) if self.meta else []
        self.collector = self._collector()
        self.src = open_source(
            cfg.source, reconnect=cfg.reconnect, start=False, on_skip=lambda m: warn(f"warning: {m}")
        )
        self.images = self.src.kind == "images"
        self.video = self.log = None

    def _collector(self):
        from edge_demo import collect as C

        cfg = self.cfg
        if cfg.collect is None:
            return None
        labels = C.parse_labels(cfg.label)
        if not labels:  # window mode without --label: the model's classes name the keys
            if not self.names:
                raise CnnedgeError(
                    "--collect without --model needs --label names (e.g. "
                    "--label cat,dog: keys 1 and 2 save under cat/ and dog/)"
                )
            labels = [C.folder_name(c) for c in self.names]
            if len(set(labels)) != len(labels) or len(labels) > len(C.KEYS):
                raise CnnedgeError(
                    f"the model's {len(self.names)} classes cannot be keys 1-9 "
                    f"and 0; give --label with up to {len(C.KEYS)} names"
                )
            C.check(cfg.collect, labels)
        return C.Collector(cfg.collect, labels)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Preprocessing and overlay for the model, then the outputs: log, snapshots, window,
        video."""
        from edge_demo import collect as C
        from edge_demo.overlay import Overlay, Smoother
        from edge_demo.preprocess import FramePreprocessor

        cfg, runner = self.cfg, self.runner
        self.roi = cfg.roi if cfg.roi is not None else (None if self.images else 0.6)
        self.pre = pre = FramePreprocessor(
            self.meta, roi=self.roi, invert=cfg.invert, native_size=cfg.native_size
        )
        if runner is None:
            self.input_desc = "none"
        elif pre.size:
            self.input_desc = f"{pre.size[0]}x{pre.size[1]}x{pre.channels}"
        else:
            self.input_desc = f"native {'image' if self.roi is None else 'ROI'} x{pre.channels}"
        label = (
            f"{runner.runtime} {self.meta.get('precision', '?')} {self.input_desc}"
            if runner
            else "no model: collecting"
        )
        keys = None
        if not cfg.headless:
            keys = "q quit  s snapshot  space freeze"
            if self.collector is not None:
                last_key = C.KEYS[len(self.collector.labels) - 1]
                keys += f"  {'1' if last_key == '1' else '1-' + last_key} save"
        self.overlay = Overlay(self.names, label, keys_help=keys, inset=cfg.inset)
        # each image of a folder is its own scene: averaging it with the previous one is wrong
        self.smooth = 0.0 if self.images else float(cfg.smooth)
        self.smoother = Smoother(self.smooth)
        self.k = min(int(cfg.top_k), len(self.names))
        self.every = cfg.collect_every or (COLLECT_EVERY if cfg.headless else None)
        self._outputs(keys)
        self.infer_ms: list[float] = []
        self.proc_ms: list[float] = []
        self.e2e_ms: list[float] = []
        self.n, self.dt_avg, self.batch = 0, 0.0, None

    def _outputs(self, keys: str | None) -> None:
        import cv2

        from edge_demo.output import JsonLog, VideoSink
        from edge_demo.overlay import IMAGE_CANVAS, display_size

        cfg = self.cfg
        log_path = cfg.log
        if log_path is None and cfg.headless:
            log_path = str(Path(cfg.out or "demo.mp4").with_suffix(".jsonl"))
        self.log = JsonLog(log_path) if log_path else None
        self.snap_dir = Path(cfg.snapshot_dir)
        self.snap_at = {int(i) for i in cfg.snapshot_at}
        self.snapshots: list[str] = []
        if self.snap_at or not cfg.headless:
            self.snap_dir.mkdir(parents=True, exist_ok=True)
        if not cfg.headless:
            cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
            self.echo(f"keys: {keys}")
        self.frame_size = IMAGE_CANVAS if self.images else display_size(self.src.frame_shape)
        if cfg.headless and not cfg.no_video:
            self.video = VideoSink(cfg.out or "demo.mp4", self.src.fps or 30.0, self.frame_size)
            if self.video.path != Path(cfg.out or "demo.mp4"):
                self.echo(f"mp4v is not available here; writing {self.video.path} (MJPG)")

    # ------------------------------------------------------------------ frames
    def loop(self) -> CnnedgeError | None:
        """Frames (and, in a window, keys) until the source ends, ``max_frames``, ``q`` or
        Ctrl-C; returns the error that stopped collecting, if one did (what was saved stays)."""
        import cv2

        from edge_demo.collect import CollectError

        cfg = self.cfg
        frozen, last, last_frame = False, None, None
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()
        self.t_prev = self.t0
        self.src.start()
        try:
            while cfg.max_frames is None or self.n < cfg.max_frames:
                if frozen:  # window mode only: keep showing the frozen frame
                    key = cv2.waitKey(30) & 0xFF
                    if key in KEY_QUIT:
                        break
                    if key in KEY_FREEZE:
                        frozen = False
                    elif key in KEY_SNAPSHOT and last is not None:
                        self._snapshot(last, self.n)
                    else:
                        self._on_key(key, last_frame)
                    continue
                f = self.src.read()
                if f is None:
                    break
                img = self.step(f)
                if not cfg.headless:
                    cv2.imshow(WINDOW, img)
                    last, last_frame = img, f.image
                    key = cv2.waitKey(1) & 0xFF
                    if key in KEY_QUIT:
                        break
                    if key in KEY_SNAPSHOT:
                        self._snapshot(img, self.n - 1)
                    elif key in KEY_FREEZE:
                        frozen = True
                    else:
                        self._on_key(key, f.image)
        except KeyboardInterrupt:
            self.echo("interrupted; finishing the video and log")
        except CollectError as e:  # the images saved so far and their log are kept
            return CnnedgeError(
                f"{e}; collecting stopped with "
                f"{sum(self.collector.saved.values())} images saved"
                + (f", log {self.log.path} kept" if self.log else "")
            )
        return None

    def step(self, f) -> np.ndarray:
        """One frame: infer, collect, draw, write to the video and the log; the drawn image."""
        from edge_demo.overlay import display_frame, display_image, softmax, top_k

        t_in = time.perf_counter()
        shown, p, inverted = [], None, False
        if self.runner is not None:
            self.batch, inverted = self.pre(f.image)
            t_m = time.perf_counter()
            logits = self.runner.predict(self.batch)
            t_i = time.perf_counter()
            p = softmax(logits[0])
            shown = top_k(self.smoother(p), self.k)
        else:
            t_m = t_i = time.perf_counter()
        saved = None
        if self.collector is not None and self.every and self.n % self.every == 0:
            saved = self._save(self.collector.labels[0], f.image)
        # FPS shown: 1 / (moving average of the time between finished frames)
        dt, self.t_prev = t_i - self.t_prev, t_i
        self.dt_avg = dt if self.n == 0 else 0.95 * self.dt_avg + 0.05 * dt
        fps = 1.0 / self.dt_avg if self.dt_avg > 0 else 0.0
        box = self.pre.region(f.image.shape)
        tag = f"ROI {box[2]}px" if self.roi is not None else f"{box[2]}x{box[3]}"
        img, box = (display_image if self.images else display_frame)(f.image, box)
        self.overlay.draw(
            img,
            box,
            shown,
            infer_ms=(t_i - t_m) * 1e3,
            fps=fps,
            inverted=inverted,
            model_input=self.pre.last_input,
            tag=tag,
            notes=self.collector.lines() if self.collector is not None else (),
        )
        if self.video is not None:
            self.video.write(img)
        if self.n in self.snap_at:
            self._snapshot(img, self.n)
        t_out = time.perf_counter()
        self.infer_ms.append((t_i - t_m) * 1e3)
        self.proc_ms.append((t_out - t_in) * 1e3)
        self.e2e_ms.append((t_out - f.t) * 1e3)
        if self.log is not None:
            self.log.write(self._record(f, shown, p, inverted, saved))
        self.n += 1
        return img

    def _record(self, f, shown, p, inverted: bool, saved) -> dict:
        """The frame's JSON-lines log record."""
        rec = {
            "frame": self.n,
            "source_frame": f.index,
            "t": round(f.t - self.t0, 4),
            "top": [{"class": self.names[i], "index": i, "p": round(q, 4)} for i, q in shown],
            "pred": int(np.argmax(p)) if p is not None else None,
            "inverted": inverted,
            "infer_ms": round(self.infer_ms[-1], 4),
            "proc_ms": round(self.proc_ms[-1], 4),
            "e2e_ms": round(self.e2e_ms[-1], 4),
        }
        if f.name is not None:
            rec["file"] = f.name
        if self.collector is not None:
            rec["saved"] = saved
        return rec

    def _save(self, name: str | None, frame) -> str | None:
        if name is None:
            return None
        rel = self.collector.save(name, self.pre.crop(frame), frame)
        if not self.cfg.headless:
            self.echo(f"saved {Path(self.cfg.collect) / rel}")
        return rel

    def _on_key(self, key: int, frame) -> None:
        if self.collector is not None and frame is not None:
            self._save(self.collector.key_label(key), frame)

    def _snapshot(self, img, n: int) -> None:
        import cv2

        self.snapshots.append(_snapshot(cv2, img, self.snap_dir, n, self.echo))

    # ------------------------------------------------------------------ the end
    def finish(self) -> dict:
        """The run's summary, also written as the log's last line; the video is flushed first
        (the encoder's queue is part of the measured time)."""
        if self.video is not None:
            self.video.close()
        wall, cpu = time.perf_counter() - self.t0, time.process_time() - self.cpu0
        cfg, runner, meta, src, video, log = (
            self.cfg,
            self.runner,
            self.meta,
            self.src,
            self.video,
            self.log,
        )
        n, infer_ms, collector = self.n, self.infer_ms, self.collector
        parts = ["decode", "preprocess"] + (["infer"] if runner is not None else []) + ["draw"]
        if video is not None:
            parts.append("video encode")
        if not cfg.headless:
            parts.append("display")
        summary = {
            "frames": n,
            "seconds": round(wall, 4),
            "fps": round(n / wall, 2) if wall > 0 else 0.0,
            "fps_includes": " + ".join(parts),
            # CPU time of the whole process (all threads) per frame: load-independent cost;
            # with C cores the demo can reach at most about C * 1000 / cpu_ms_per_frame FPS
            "cpu_ms_per_frame": round(cpu * 1e3 / n, 4) if n else 0.0,
            "cpu_count": os.cpu_count(),
            "infer_ms_mean": round(float(np.mean(infer_ms)), 4) if infer_ms else 0.0,
            "infer_ms_p50": _percentile(infer_ms, 50),
            "infer_ms_p95": _percentile(infer_ms, 95),
            "proc_ms_mean": round(float(np.mean(self.proc_ms)), 4) if self.proc_ms else 0.0,
            "e2e_ms_p50": _percentile(self.e2e_ms, 50),
            "e2e_ms_p95": _percentile(self.e2e_ms, 95),
            "dropped_frames": src.dropped,
            "source": str(cfg.source),
            "source_kind": src.kind,
            "frame_size": [int(src.frame_shape[1]), int(src.frame_shape[0])],
            "output_size": list(self.frame_size),
            "model": str(self.model_path) if self.model_path else None,
            "runtime": runner.runtime if runner else None,
            "precision": meta.get("precision") if meta else None,
            "threads": runner.threads if runner else None,
            "input": self.input_desc,
            "input_shape": list(self.batch.shape) if self.batch is not None else None,
            "roi": self.roi,
            "invert": self.pre.invert,
            "background": self.pre.background,
            "smooth": self.smooth,
            "video": str(video.path) if video is not None else None,
            "video_frames": video.frames if video is not None else 0,
            "log": str(log.path) if log is not None else None,
            "snapshots": self.snapshots,
            "skipped": list(src.skipped),
            "collect": str(cfg.collect) if collector is not None else None,
            "collected": dict(collector.saved) if collector is not None else {},
        }
        if log is not None:
            log.write({"summary": summary})
        return summary

    def close(self, commit: bool) -> None:
        """Stop the reader; move the video and log into place if ``commit``, else drop them."""
        self.src.close()
        if self.video is not None:
            self.video.close(commit=commit)
        if self.log is not None:
            self.log.close(commit=commit)
        if not self.cfg.headless:
            import cv2

            cv2.destroyAllWindows()


def _snapshot(cv2, img, folder: Path, n: int, echo) -> str:
    path = folder / f"snapshot_{n:06d}.png"
    if not cv2.imwrite(str(path), img):
        raise CnnedgeError(f"cannot write snapshot {path}")
    echo(f"saved {path}")
    return str(path)
