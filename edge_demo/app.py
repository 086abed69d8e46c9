"""The demo loop: source -> ROI preprocessing -> exported model -> smoothed top-k overlay ->
window, or (``headless``) annotated video + JSON-lines log; with ``collect``, ROI crops saved
as an image-folder dataset (keys 1-9/0 in the window, every Nth frame headless), with or
without a model.

    from edge_demo import DemoConfig, run_demo
    summary = run_demo(DemoConfig(source="clip.mp4", model="runs/fashion_mnist/exp",
                                  headless=True, out="demo.mp4"))

``cnnedge demo ...`` and ``python -m edge_demo ...`` both call :func:`run_demo`. Needs numpy,
OpenCV and a runtime (ai_edge_litert or onnxruntime) only, never TensorFlow.
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
IMAGE_CANVAS = (640, 480)  # output frame (w, h) of image sources: see _display_image
COLLECT_EVERY = 10  # headless --collect default: 3 images a second of a 30 FPS video


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
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
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
            raise CnnedgeError(f"--collect {'with --headless ' if cfg.headless else ''}saves every "
                               f"Nth frame under one label: give one --label NAME"
                               f"{f' (got {len(labels)})' if labels else ''}")
        collect.check(cfg.collect, labels)
    if not cfg.headless:
        problem = gui_problem()
        if problem:
            raise CnnedgeError(f"{problem}: run with --headless (writes an annotated video and a "
                               f"JSON-lines log), or for a window: pip uninstall -y "
                               f"opencv-python-headless && pip install opencv-python")


def _percentile(v: list[float], q: float) -> float:
    return round(float(np.percentile(v, q)), 4) if v else 0.0


def run_demo(cfg: DemoConfig, echo: Callable[[str], None] | None = None,
             warn: Callable[[str], None] | None = None) -> dict:
    """Run the demo until the source ends, ``max_frames``, ``q`` or Ctrl-C; returns a summary.
    ``echo`` gets progress lines, ``warn`` the ``warning: ...`` lines (default: stderr)."""
    echo = echo or (lambda s: print(s, file=sys.stderr))
    warn = warn or (lambda s: print(s, file=sys.stderr))
    _check(cfg)
    import cv2

    from edge_demo import collect as C
    from edge_demo.capture import open_source
    from edge_demo.model import load_model
    from edge_demo.output import JsonLog, VideoSink
    from edge_demo.overlay import Overlay, Smoother, softmax, top_k
    from edge_demo.preprocess import Preprocessor

    model_arg = cfg.model or (None if cfg.collect else DEFAULT_MODEL)
    model_path, runner = load_model(model_arg, cfg.runtime, cfg.threads) if model_arg else (None, None)
    meta = runner.metadata if runner is not None else None
    names = list(meta["class_names"]) if meta else []
    collector = None
    if cfg.collect is not None:
        labels = C.parse_labels(cfg.label)
        if not labels:  # window mode without --label: the model's classes name the keys
            if not names:
                raise CnnedgeError("--collect without --model needs --label names (e.g. "
                                   "--label cat,dog: keys 1 and 2 save under cat/ and dog/)")
            labels = [C.folder_name(c) for c in names]
            if len(set(labels)) != len(labels) or len(labels) > len(C.KEYS):
                raise CnnedgeError(f"the model's {len(names)} classes cannot be keys 1-9 and 0; "
                                   f"give --label with up to {len(C.KEYS)} names")
            C.check(cfg.collect, labels)
        collector = C.Collector(cfg.collect, labels)
    src = open_source(cfg.source, reconnect=cfg.reconnect, start=False,
                      on_skip=lambda m: warn(f"warning: {m}"))
    images = src.kind == "images"
    video = log = None
    ok = False  # outputs are moved into place only when the run ends well
    try:
        roi = cfg.roi if cfg.roi is not None else (None if images else 0.6)
        pre = Preprocessor(meta, roi=roi, invert=cfg.invert, native_size=cfg.native_size)
        if runner is None:
            input_desc = "none"
        elif pre.size:
            input_desc = f"{pre.size[0]}x{pre.size[1]}x{pre.channels}"
        else:
            input_desc = f"native {'image' if roi is None else 'ROI'} x{pre.channels}"
        label = (f"{runner.runtime} {meta.get('precision', '?')} {input_desc}" if runner
                 else "no model: collecting")
        keys = None
        if not cfg.headless:
            keys = "q quit  s snapshot  space freeze"
            if collector is not None:
                last_key = C.KEYS[len(collector.labels) - 1]
                keys += f"  {'1' if last_key == '1' else '1-' + last_key} save"
        overlay = Overlay(names, label, keys_help=keys, inset=cfg.inset)
        # each image of a folder is its own scene: averaging it with the previous one is wrong
        smooth = 0.0 if images else float(cfg.smooth)
        smoother = Smoother(smooth)
        k = min(int(cfg.top_k), len(names))
        every = cfg.collect_every or (COLLECT_EVERY if cfg.headless else None)
        write_video = cfg.headless and not cfg.no_video
        log_path = cfg.log
        if log_path is None and cfg.headless:
            log_path = str(Path(cfg.out or "demo.mp4").with_suffix(".jsonl"))
        log = JsonLog(log_path) if log_path else None
        snap_dir = Path(cfg.snapshot_dir)
        snap_at = {int(i) for i in cfg.snapshot_at}
        snapshots: list[str] = []
        if snap_at or not cfg.headless:
            snap_dir.mkdir(parents=True, exist_ok=True)
        window = "cnnedge demo (q quit, s snapshot, space freeze)"
        if not cfg.headless:
            cv2.namedWindow(window, cv2.WINDOW_AUTOSIZE)
            echo(f"keys: {keys}")

        frame_size = IMAGE_CANVAS if images else _display_size(src.frame_shape)
        if write_video:
            video = VideoSink(cfg.out or "demo.mp4", src.fps or 30.0, frame_size)
            if video.path != Path(cfg.out or "demo.mp4"):
                echo(f"mp4v is not available here; writing {video.path} (MJPG)")

        def save(name: str | None, frame) -> str | None:
            if name is None:
                return None
            rel = collector.save(name, pre.crop(frame), frame)
            if not cfg.headless:
                echo(f"saved {Path(cfg.collect) / rel}")
            return rel

        def on_key(key: int, frame) -> None:
            if collector is not None and frame is not None:
                save(collector.key_label(key), frame)

        infer_ms: list[float] = []
        proc_ms: list[float] = []
        e2e_ms: list[float] = []
        n, fps, dt_avg, frozen, last, last_frame, batch = 0, 0.0, 0.0, False, None, None, None
        stopped = None
        t0, cpu0 = time.perf_counter(), time.process_time()
        t_prev = t0
        src.start()
        try:
            while cfg.max_frames is None or n < cfg.max_frames:
                if frozen:  # window mode only: keep showing the frozen frame
                    key = cv2.waitKey(30) & 0xFF
                    if key in KEY_QUIT:
                        break
                    if key in KEY_FREEZE:
                        frozen = False
                    elif key in KEY_SNAPSHOT and last is not None:
                        snapshots.append(_snapshot(cv2, last, snap_dir, n, echo))
                    else:
                        on_key(key, last_frame)
                    continue
                f = src.read()
                if f is None:
                    break
                t_in = time.perf_counter()
                shown, p, inverted = [], None, False
                if runner is not None:
                    batch, inverted = pre(f.image)
                    t_m = time.perf_counter()
                    logits = runner.predict(batch)
                    t_i = time.perf_counter()
                    p = softmax(logits[0])
                    shown = top_k(smoother(p), k)
                else:
                    t_m = t_i = time.perf_counter()
                saved = None
                if collector is not None and every and n % every == 0:
                    saved = save(collector.labels[0], f.image)
                # FPS shown: 1 / (moving average of the time between finished frames)
                dt, t_prev = t_i - t_prev, t_i
                dt_avg = dt if n == 0 else 0.95 * dt_avg + 0.05 * dt
                fps = 1.0 / dt_avg if dt_avg > 0 else 0.0
                box = pre.region(f.image.shape)
                tag = f"ROI {box[2]}px" if roi is not None else f"{box[2]}x{box[3]}"
                if images:
                    img, box = _display_image(cv2, f.image, box)
                else:
                    img, box = _display(cv2, f.image, box)
                overlay.draw(img, box, shown, infer_ms=(t_i - t_m) * 1e3, fps=fps,
                             inverted=inverted, model_input=pre.last_input, tag=tag,
                             notes=collector.lines() if collector is not None else ())
                if video is not None:
                    video.write(img)
                if n in snap_at:
                    snapshots.append(_snapshot(cv2, img, snap_dir, n, echo))
                t_out = time.perf_counter()
                infer_ms.append((t_i - t_m) * 1e3)
                proc_ms.append((t_out - t_in) * 1e3)
                e2e_ms.append((t_out - f.t) * 1e3)
                if log is not None:
                    rec = {"frame": n, "source_frame": f.index, "t": round(f.t - t0, 4),
                           "top": [{"class": names[i], "index": i, "p": round(q, 4)}
                                   for i, q in shown],
                           "pred": int(np.argmax(p)) if p is not None else None,
                           "inverted": inverted, "infer_ms": round(infer_ms[-1], 4),
                           "proc_ms": round(proc_ms[-1], 4), "e2e_ms": round(e2e_ms[-1], 4)}
                    if f.name is not None:
                        rec["file"] = f.name
                    if collector is not None:
                        rec["saved"] = saved
                    log.write(rec)
                n += 1
                if not cfg.headless:
                    cv2.imshow(window, img)
                    last, last_frame = img, f.image
                    key = cv2.waitKey(1) & 0xFF
                    if key in KEY_QUIT:
                        break
                    if key in KEY_SNAPSHOT:
                        snapshots.append(_snapshot(cv2, img, snap_dir, n - 1, echo))
                    elif key in KEY_FREEZE:
                        frozen = True
                    else:
                        on_key(key, f.image)
        except KeyboardInterrupt:
            echo("interrupted; finishing the video and log")
        except C.CollectError as e:  # the images saved so far and their log are kept
            stopped = CnnedgeError(f"{e}; collecting stopped with {sum(collector.saved.values())}"
                                   f" images saved" + (f", log {log.path} kept" if log else ""))
        if video is not None:
            video.close()  # flush the encoder queue: part of the measured time
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        parts = ["decode", "preprocess"] + (["infer"] if runner is not None else []) + ["draw"]
        if video is not None:
            parts.append("video encode")
        if not cfg.headless:
            parts.append("display")
        summary = {
            "frames": n, "seconds": round(wall, 4), "fps": round(n / wall, 2) if wall > 0 else 0.0,
            "fps_includes": " + ".join(parts),
            # CPU time of the whole process (all threads) per frame: load-independent cost;
            # with C cores the demo can reach at most about C * 1000 / cpu_ms_per_frame FPS
            "cpu_ms_per_frame": round(cpu * 1e3 / n, 4) if n else 0.0, "cpu_count": os.cpu_count(),
            "infer_ms_mean": round(float(np.mean(infer_ms)), 4) if infer_ms else 0.0,
            "infer_ms_p50": _percentile(infer_ms, 50), "infer_ms_p95": _percentile(infer_ms, 95),
            "proc_ms_mean": round(float(np.mean(proc_ms)), 4) if proc_ms else 0.0,
            "e2e_ms_p50": _percentile(e2e_ms, 50), "e2e_ms_p95": _percentile(e2e_ms, 95),
            "dropped_frames": src.dropped, "source": str(cfg.source), "source_kind": src.kind,
            "frame_size": [int(src.frame_shape[1]), int(src.frame_shape[0])],
            "output_size": list(frame_size),
            "model": str(model_path) if model_path else None,
            "runtime": runner.runtime if runner else None,
            "precision": meta.get("precision") if meta else None,
            "threads": runner.threads if runner else None, "input": input_desc,
            "input_shape": list(batch.shape) if batch is not None else None,
            "roi": roi, "invert": pre.invert, "background": pre.background, "smooth": smooth,
            "video": str(video.path) if video is not None else None,
            "video_frames": video.frames if video is not None else 0,
            "log": str(log.path) if log is not None else None, "snapshots": snapshots,
            "skipped": list(src.skipped),
            "collect": str(cfg.collect) if collector is not None else None,
            "collected": dict(collector.saved) if collector is not None else {},
        }
        if log is not None:
            log.write({"summary": summary})
        ok = True
        if stopped is not None:
            raise stopped
        return summary
    finally:
        src.close()
        if video is not None:
            video.close(commit=ok)
        if log is not None:
            log.close(commit=ok)
        if not cfg.headless:
            import cv2

            cv2.destroyAllWindows()


MIN_DISPLAY = 360  # smaller frames (e.g. 28×28 dataset images) are enlarged to draw the overlay


def _display_size(shape) -> tuple[int, int]:
    h, w = shape[:2]
    f = -(-MIN_DISPLAY // min(h, w)) if min(h, w) < MIN_DISPLAY else 1
    return w * f, h * f


def _bgr(cv2, img):
    if img.ndim == 2 or img.shape[2] != 3:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR if img.ndim == 2 or img.shape[2] == 1
                            else cv2.COLOR_BGRA2BGR)
    return img


def _display(cv2, frame, box):
    """The BGR frame to draw on (the decoded frame itself when possible) and the region in it."""
    img = _bgr(cv2, frame)
    h, w = img.shape[:2]
    if min(h, w) < MIN_DISPLAY:
        f = -(-MIN_DISPLAY // min(h, w))
        img = cv2.resize(img, (w * f, h * f), interpolation=cv2.INTER_NEAREST)
        box = tuple(v * f for v in box)
    return img, box


def _display_image(cv2, frame, box):
    """An image of a folder letterboxed at its own aspect into the fixed IMAGE_CANVAS, so the
    output video has one frame size whatever the images' sizes. Fixed 640×480 rather than the
    largest image: it needs no pass over the folder before the first frame, it is the size the
    overlay's text is laid out for, and it is the 4:3 of most camera frames. Small images are
    enlarged by a whole factor with nearest neighbour (crisp pixels), large ones area-averaged."""
    cw, ch = IMAGE_CANVAS
    img = _bgr(cv2, frame)
    h, w = img.shape[:2]
    s = min(cw / w, ch / h)
    if s >= 1:
        s = float(int(s))
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    canvas = np.zeros((ch, cw, 3), np.uint8)
    x0, y0 = (cw - nw) // 2, (ch - nh) // 2
    canvas[y0:y0 + nh, x0:x0 + nw] = cv2.resize(
        img, (nw, nh), interpolation=cv2.INTER_NEAREST if s >= 1 else cv2.INTER_AREA)
    x, y, bw, bh = box
    return canvas, (x0 + round(x * s), y0 + round(y * s), max(1, round(bw * s)),
                    max(1, round(bh * s)))


def _snapshot(cv2, img, folder: Path, n: int, echo) -> str:
    path = folder / f"snapshot_{n:06d}.png"
    if not cv2.imwrite(str(path), img):
        raise CnnedgeError(f"cannot write snapshot {path}")
    echo(f"saved {path}")
    return str(path)


def format_summary(s: dict) -> str:
    """The one-paragraph report printed at the end of a run."""
    size = "×".join(str(v) for v in s["frame_size"]) if s["frame_size"] else "?"
    inp = s["input"]
    if s.get("input_shape") and "native" in inp:
        inp = "x".join(str(v) for v in s["input_shape"][1:]) + f" ({inp.split(' x')[0]})"
    lines = [f"{s['frames']} frames ({size}, {s['source_kind']}) in {s['seconds']:.2f} s: "
             f"{s['fps']:.1f} FPS end to end ({s['fps_includes']})"]
    if s["model"]:
        lines.append(f"model {s['model']} ({s['runtime']} {s['precision']}, threads="
                     f"{s['threads']}, input {inp}): inference {s['infer_ms_mean']:.3f} ms mean, "
                     f"{s['infer_ms_p95']:.3f} ms p95; per-frame work {s['proc_ms_mean']:.3f} ms; "
                     f"CPU {s['cpu_ms_per_frame']:.2f} ms/frame (all threads, {s['cpu_count']} "
                     f"cores)")
    if s.get("collect"):
        got = s["collected"]
        lines.append(f"saved {sum(got.values())} images to {s['collect']} ("
                     + ", ".join(f"{k} {v}" for k, v in got.items()) + ")")
    if s.get("skipped"):
        lines.append(f"skipped {len(s['skipped'])} unreadable image(s) (see the warnings above)")
    if s["dropped_frames"]:
        lines.append(f"dropped {s['dropped_frames']} camera frames (inference slower than capture)")
    if s["video"]:
        lines.append(f"wrote {s['video']} ({s['video_frames']} frames)")
    if s["log"]:
        lines.append(f"wrote {s['log']}")
    return "\n".join(lines)
