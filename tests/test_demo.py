"""Edge demo (`cnnedge demo` / `python -m edge_demo`): headless runs on a generated 640×480 video
of real Fashion-MNIST test images, the JSON-lines log and annotated video, --native-size,
image folders, --invert auto, the live-capture thread, and the one-line errors.

Uses the session's exported tiny run (conftest.py): the fashion_mnist_tiny recipe trained for
2×150 steps (+ QAT) on the real Fashion-MNIST; skipped when the dataset files are absent.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from cnnedge.cli import main  # noqa: E402
from cnnedge.errors import CnnedgeError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_IMAGES, PER_IMAGE = 50, 4
W, H = 640, 480


def write_video(path: Path, images: np.ndarray, box, per_image: int = PER_IMAGE, scale=None):
    """A 640×480 mp4v video: each 28×28 image upscaled into ``box`` (x, y, side) on black."""
    x, y, s = box
    side = s if scale is None else 28 * scale
    x, y = x + (s - side) // 2, y + (s - side) // 2
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (W, H))
    assert w.isOpened()
    for img in images:
        f = np.zeros((H, W, 3), np.uint8)
        f[y : y + side, x : x + side] = cv2.resize(img[..., 0], (side, side), interpolation=cv2.INTER_LINEAR)[
            ..., None
        ]
        for _ in range(per_image):
            w.write(f)
    w.release()
    return path


@pytest.fixture(scope="module")
def demo(tiny_run, tmp_path_factory):
    from cnnedge.runtime import load

    root = tmp_path_factory.mktemp("demo")
    run = tiny_run["run"]
    x, y = tiny_run["x"][:N_IMAGES], tiny_run["y"][:N_IMAGES]
    model = run / "export" / "model_int8.tflite"
    runner = load(model, threads=1)
    raw_acc = float(np.mean(runner.predict(x).argmax(1) == y))

    from edge_demo.preprocess import FramePreprocessor

    box = FramePreprocessor(runner.metadata, roi=0.6).roi_box((H, W))  # where the demo will look
    video = write_video(root / "fashion.mp4", x, box)
    return {
        "root": root,
        "run": run,
        "model": model,
        "x": x,
        "y": y,
        "raw_acc": raw_acc,
        "video": video,
        "box": box,
        "runner": runner,
    }


def run_cli(*args) -> int:
    return main(["demo", *map(str, args)])


def read_log(path):
    lines = [json.loads(s) for s in Path(path).read_text().splitlines()]
    frames = [r for r in lines if "frame" in r]
    summaries = [r["summary"] for r in lines if "summary" in r]
    return frames, summaries[-1] if summaries else None


def video_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


# ------------------------------------------------------------------------------ headless
def test_headless_video_classifies_like_the_model(demo, tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    rc = run_cli(
        demo["video"],
        "-m",
        demo["run"],
        "--headless",
        "--out",
        out,
        "--smooth",
        "0",
        "--snapshot-at",
        41,
        "--snapshot-dir",
        tmp_path / "snaps",
    )
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "FPS end to end (decode + preprocess + infer + draw + video encode)" in printed

    frames, summary = read_log(out.with_suffix(".jsonl"))
    n = N_IMAGES * PER_IMAGE
    assert len(frames) == n and [r["frame"] for r in frames] == list(range(n))
    for key in ("frame", "source_frame", "t", "top", "pred", "inverted", "infer_ms", "proc_ms", "e2e_ms"):
        assert key in frames[0], key
    assert len(frames[0]["top"]) == 3 and set(frames[0]["top"][0]) == {"class", "index", "p"}
    ps = [t["p"] for t in frames[0]["top"]]
    assert ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1.0001
    assert all(r["infer_ms"] > 0 and r["e2e_ms"] >= r["proc_ms"] > 0 for r in frames)
    assert not any(r["inverted"] for r in frames)  # light garments on black: no inversion

    truth = np.repeat(demo["y"], PER_IMAGE)
    pred = np.array([r["pred"] for r in frames])
    shown = np.array([r["top"][0]["index"] for r in frames])
    np.testing.assert_array_equal(pred, shown)  # --smooth 0: what is shown is the raw top-1
    acc = float(np.mean(pred == truth))
    assert acc > 0.5, acc  # chance is 0.1
    assert abs(acc - demo["raw_acc"]) <= 0.10, (acc, demo["raw_acc"])

    assert summary["frames"] == n and summary["video_frames"] == n and summary["fps"] > 0
    assert summary["frame_size"] == [W, H] and summary["input"] == "28x28x1"
    assert summary["runtime"] == "litert" and summary["precision"] == "int8"
    assert summary["model"].endswith("export/model_int8.tflite") and summary["threads"] == 1
    assert out.is_file() and video_frames(out) == n
    cap = cv2.VideoCapture(str(out))
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (W, H)
    cap.release()
    snap = cv2.imread(str(tmp_path / "snaps" / "snapshot_000041.png"))
    assert snap is not None and snap.shape == (H, W, 3)


def test_smoothing_no_video_and_max_frames(demo, tmp_path):
    log = tmp_path / "only.jsonl"
    out = tmp_path / "never.mp4"
    assert (
        run_cli(
            demo["video"],
            "-m",
            demo["model"],
            "--headless",
            "--no-video",
            "--out",
            out,
            "--log",
            log,
            "--max-frames",
            40,
            "--smooth",
            "0.8",
        )
        == 0
    )
    frames, summary = read_log(log)
    assert len(frames) == 40 and not out.exists() and summary["video"] is None
    assert "video encode" not in summary["fps_includes"]
    # EMA: the first frame of a new image still shows mostly the previous image's class
    changed = [i for i in range(PER_IMAGE, 40, PER_IMAGE) if frames[i]["pred"] != frames[i - 1]["pred"]]
    assert changed and any(frames[i]["top"][0]["index"] != frames[i]["pred"] for i in changed)


def test_native_size_feeds_the_roi_as_is(demo, tmp_path):
    video = write_video(tmp_path / "native.mp4", demo["x"][:10], demo["box"], per_image=1, scale=2)
    log = tmp_path / "native.jsonl"
    assert run_cli(video, "-m", demo["model"], "--native-size", "--headless", "--no-video", "--log", log) == 0
    frames, summary = read_log(log)
    side = int(round(0.6 * H))  # no rounding to a multiple of 28 in native mode
    assert len(frames) == 10 and summary["input_shape"] == [1, side, side, 1]
    assert all(r["infer_ms"] > 0 and 0 <= r["pred"] < 10 for r in frames)


def test_image_folder_and_invert_auto(demo, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    x = demo["x"][:6, ..., 0]
    for i, img in enumerate(x[:5]):
        cv2.imwrite(str(folder / f"{i:02d}.png"), img)
    cv2.imwrite(str(folder / "05_light.png"), 255 - x[5])  # dark garment on a white background
    log = tmp_path / "imgs.jsonl"
    assert (
        run_cli(
            folder,
            "-m",
            demo["model"],
            "--headless",
            "--out",
            tmp_path / "imgs.mp4",
            "--log",
            log,
            "--smooth",
            "0",
        )
        == 0
    )
    frames, summary = read_log(log)
    assert summary["source_kind"] == "images" and summary["roi"] is None  # the whole image
    assert summary["smooth"] == 0.0 and summary["invert"] == "auto"  # 1-channel: dark background
    assert [r["inverted"] for r in frames] == [False] * 5 + [True]
    raw = demo["runner"].predict(x[..., None]).argmax(1)  # 28×28 at ROI 1.0: exactly the image
    assert [r["pred"] for r in frames] == raw.tolist()
    assert video_frames(tmp_path / "imgs.mp4") == 6

    log_off = tmp_path / "off.jsonl"
    assert (
        run_cli(
            folder / "05_light.png",
            "-m",
            demo["model"],
            "--headless",
            "--no-video",
            "--log",
            log_off,
            "--invert",
            "off",
        )
        == 0
    )
    assert read_log(log_off)[0][0]["inverted"] is False


def test_invert_rule():
    from edge_demo.preprocess import FramePreprocessor, should_invert

    dark_on_light = np.full((28, 28), 230, np.uint8)
    dark_on_light[7:21, 7:21] = 40
    assert should_invert(dark_on_light)
    assert not should_invert(255 - dark_on_light)
    assert should_invert(np.full((28, 28), 200, np.uint8))
    assert not should_invert(np.full((28, 28), 20, np.uint8))
    meta = {"channels": 1, "image_size": [28, 28], "dynamic_hw": True, "min_input_size": 8}
    frame = cv2.cvtColor(
        cv2.resize(dark_on_light, (280, 280), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR
    )
    batch, inverted = FramePreprocessor(meta, roi=1.0, invert="auto")(frame)
    assert inverted and batch.shape == (1, 28, 28, 1) and batch[0, 14, 14, 0] > 200
    assert batch[0, 1, 1, 0] < 40 and frame[0, 0, 0] == 230  # the frame itself is untouched
    plain, inverted = FramePreprocessor(meta, roi=1.0, invert="off")(frame)
    assert not inverted and plain[0, 1, 1, 0] == 230 and plain[0, 14, 14, 0] == 40
    assert FramePreprocessor(meta, roi=1.0, invert="on")(frame)[1]
    rgb = FramePreprocessor(dict(meta, channels=3), roi=0.5, invert="off")
    out, _ = rgb(np.zeros((100, 60), np.uint8))  # a grayscale frame for an RGB model
    assert out.shape == (1, 28, 28, 3)
    with pytest.raises(CnnedgeError, match="ROI is 3×3 pixels"):
        FramePreprocessor(meta, roi=0.05)(np.zeros((60, 80, 3), np.uint8))
    with pytest.raises(CnnedgeError, match="fixed input size"):
        FramePreprocessor(dict(meta, dynamic_hw=False), native_size=True)


def test_model_resolution(demo, tmp_path):
    from edge_demo.model import resolve_model

    assert resolve_model(demo["run"]) == demo["model"]
    assert resolve_model(demo["run"] / "export") == demo["model"]
    assert resolve_model(demo["model"]) == demo["model"]
    with pytest.raises(CnnedgeError, match="no exported model in .*cnnedge export"):
        resolve_model(tmp_path)


# ------------------------------------------------------------------------------ live capture
class FakeCamera:
    """Stands in for cv2.VideoCapture(0): ``frames`` frames at ~1 kHz, then a lost device."""

    opened = 0

    def __init__(self, target, *args):
        FakeCamera.opened += 1
        self.ok = FakeCamera.opened == 1  # reopening the lost camera never works
        self.i = 0

    def isOpened(self):
        return self.ok

    def set(self, *a):
        return True

    def get(self, prop):
        return 30.0

    def read(self):
        if not self.ok or self.i >= 300:
            time.sleep(0.001)
            return False, None
        self.i += 1
        time.sleep(0.001)
        return True, np.full((48, 64, 3), self.i % 256, np.uint8)

    def release(self):
        self.ok = False


def test_live_source_keeps_newest_frame_and_reports_lost_camera(monkeypatch):
    from edge_demo import capture

    FakeCamera.opened = 0
    monkeypatch.setattr(capture.cv2, "VideoCapture", FakeCamera)
    src = capture.open_source("0", reconnect=2)
    assert src.live and src.kind == "camera"
    seen = []
    with pytest.raises(CnnedgeError, match="lost camera 0: no frames after 2 reconnect attempts"):
        while True:
            f = src.read()
            seen.append(f.index)
            time.sleep(0.01)  # a slow consumer: the capture thread must drop, not queue
    src.close()
    assert seen == sorted(set(seen)) and src.dropped > 0
    assert src.dropped == seen[-1] + 1 - len(seen)
    assert FakeCamera.opened == 3  # first open + 2 reconnects
    assert not any(t.name.startswith("capture:") for t in threading.enumerate() if t.is_alive())


# ------------------------------------------------------------------------------ errors / install
def _demo_subprocess(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "edge_demo", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    "case", ["missing_model", "corrupt_model", "unreadable_video", "no_camera", "roi_too_small", "bad_out"]
)
def test_errors_are_one_line_exit_2(demo, tmp_path, case):
    model, video = demo["model"], demo["video"]
    args = {
        "missing_model": (video, "-m", tmp_path / "nope.tflite", "--headless"),
        "corrupt_model": (video, "-m", tmp_path / "bad.tflite", "--headless"),
        "unreadable_video": (tmp_path / "bad.mp4", "-m", model, "--headless"),
        "no_camera": ("9", "-m", model, "--headless"),
        "roi_too_small": (video, "-m", model, "--headless", "--roi", "0.01"),
        "bad_out": (video, "-m", model, "--headless", "--out", tmp_path / "x.mkv"),
    }[case]
    (tmp_path / "bad.tflite").write_bytes(Path(model).read_bytes()[:2000])
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 10)
    extra = ("--log", tmp_path / "o.jsonl") if case == "bad_out" else ("--out", tmp_path / "o.mp4")
    p = _demo_subprocess(*args, *extra)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr + p.stdout


def test_window_mode_without_gui_says_what_to_do(demo, monkeypatch, capsys):
    from edge_demo import app

    monkeypatch.setattr(app, "gui_problem", lambda: "this OpenCV build has no GUI (test)")
    assert run_cli(demo["video"], "-m", demo["model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: this OpenCV build has no GUI") and "--headless" in err


BLOCK_TF = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization"):
            raise ImportError(f"{name} is not installed (minimal edge install)")
sys.meta_path.insert(0, Block())
sys.argv = ["edge_demo", *sys.argv[1:]]
import runpy
try:
    runpy.run_module("edge_demo", run_name="__main__")
finally:
    assert "tensorflow" not in sys.modules
"""


def test_demo_runs_without_tensorflow(demo, tmp_path):
    log = tmp_path / "notf.jsonl"
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_TF,
            str(demo["video"]),
            "-m",
            str(demo["run"]),
            "--headless",
            "--out",
            str(tmp_path / "notf.mp4"),
            "--max-frames",
            "20",
            "--log",
            str(log),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "FPS end to end" in p.stdout and "INFO" not in p.stderr
    assert len(read_log(log)[0]) == 20
