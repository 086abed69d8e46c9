"""Edge demo, part 2: ``--collect`` (a camera or video -> an image-folder dataset), defaults that
follow the model (inversion, no smoothing across images), recursive image folders, the
letterboxed output of a folder, and bad input (unreadable image, empty folder, read-only
collect folder, bad labels) — all on small synthetic videos (MJPG .avi) and image folders.

Most tests need no trained model: collecting runs without one, and a hand-built two-class ONNX
"colour" model (logits = 10 × the mean red and green of the input, a 3-channel model whose
metadata has no ``background`` key, like artifacts exported before it existed) stands in where a
model is needed. Only the gray-crop test uses the session's trained tiny run (conftest.py).
"""

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import tree

cv2 = pytest.importorskip("cv2")

from cnnedge.cli import main  # noqa: E402
from cnnedge.preprocess import read_image  # noqa: E402


def run_cli(*args) -> int:
    return main(["demo", *map(str, args)])


def read_log(path):
    lines = [json.loads(s) for s in Path(path).read_text().splitlines()]
    return [r for r in lines if "frame" in r], lines[-1]["summary"]


def write_avi(path: Path, colours, size=(320, 240)) -> Path:
    """An MJPG video: frame i is flat BGR colour ``colours[i]``."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    assert w.isOpened()
    for c in colours:
        w.write(np.full((size[1], size[0], 3), c, np.uint8))
    w.release()
    return path


def flat(h, w, rgb) -> np.ndarray:
    """A flat colour image as OpenCV writes it (BGR)."""
    return np.full((h, w, 3), rgb[::-1], np.uint8)


RED, GREEN = (220, 20, 20), (20, 220, 20)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    """model_fp32.onnx: 2 classes (red, green), logits = 10/255 × mean R and mean G."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from cnnedge import artifacts

    w = np.array([[10 / 255, 0], [0, 10 / 255], [0, 0]], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["logits"]),
        ],
        "colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", "h", "w", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    artifacts.set_onnx_metadata(
        model,
        {
            "cnnedge_version": "test",
            "format": "onnx",
            "precision": "fp32",
            "source": "float",
            "class_names": ["red", "green"],
            "input_layout": "NHWC",
            "channels": 3,
            "input_name": "image",
            "output_name": "logits",
            "input_dtype": "float32",
            "input_scale": None,
            "input_zero_point": None,
            "output_dtype": "float32",
            "output_scale": None,
            "output_zero_point": None,
            "pixel_range": [0, 255],
            "image_size": [32, 32],
            "dynamic_hw": True,
            "min_input_size": 1,
        },
    )
    path = tmp_path_factory.mktemp("colour") / "model_fp32.onnx"
    onnx.save(model, str(path))
    return path


# ------------------------------------------------------------------------------ collecting
def test_collect_every_nth_frame_continues_the_numbering(tmp_path, capsys):
    colours = [(0, 0, 200), (0, 200, 0), (200, 0, 0)] * 8  # BGR: red, green, blue, ...
    video = write_avi(tmp_path / "clip.avi", colours[:23])
    data = tmp_path / "data"
    assert (
        run_cli(
            video,
            "--collect",
            data,
            "--label",
            "cat",
            "--collect-every",
            5,
            "--headless",
            "--no-video",
            "--log",
            tmp_path / "a.jsonl",
        )
        == 0
    )
    assert "saved 5 images to" in capsys.readouterr().out
    frames, summary = read_log(tmp_path / "a.jsonl")
    assert summary["model"] is None and summary["collected"] == {"cat": 5}
    assert [r["saved"] for r in frames if r["saved"]] == [f"cat/{i:04d}.png" for i in range(1, 6)]
    assert [r["frame"] for r in frames if r["saved"]] == [0, 5, 10, 15, 20]
    assert sorted(p.name for p in (data / "cat").iterdir()) == [f"{i:04d}.png" for i in range(1, 6)]
    for i, frame in zip(range(1, 6), (0, 5, 10, 15, 20)):
        roi = read_image(data / "cat" / f"{i:04d}.png")  # RGB, the ROI at full resolution
        assert roi.shape == (144, 144, 3)  # 0.6 × 240, no model: no rounding to its size
        want = np.array(colours[frame][::-1])
        assert np.abs(roi.reshape(-1, 3).mean(0) - want).max() < 12, (i, roi[0, 0], want)
        assert read_image(data / ".full" / "cat" / f"{i:04d}.png").shape == (240, 320, 3)

    before = tree(data)
    (data / "cat" / "0009.png").write_bytes((data / "cat" / "0001.png").read_bytes())
    (data / "cat" / "notes.txt").write_text("not an image")
    assert (
        run_cli(
            video,
            "--collect",
            data,
            "--label",
            "cat",
            "--collect-every",
            10,
            "--headless",
            "--no-video",
            "--log",
            tmp_path / "b.jsonl",
        )
        == 0
    )
    names = sorted(p.name for p in (data / "cat").iterdir())
    assert names == [*(f"{i:04d}.png" for i in (1, 2, 3, 4, 5, 9, 10, 11, 12)), "notes.txt"]
    assert all(tree(data)[k] == v for k, v in before.items())  # nothing overwritten
    assert not [p for p in data.rglob(".*") if p.is_file()]  # no temporary files left


def test_collect_with_a_gray_model_saves_the_roi_before_resizing(tiny_run, tmp_path):
    video = write_avi(tmp_path / "clip.avi", [(30, 60, 90)] * 4)
    data = tmp_path / "data"
    assert (
        run_cli(
            video,
            "-m",
            tiny_run["run"],
            "--collect",
            data,
            "--label",
            "shirt",
            "--collect-every",
            2,
            "--headless",
            "--no-video",
            "--log",
            tmp_path / "l.jsonl",
        )
        == 0
    )
    frames, summary = read_log(tmp_path / "l.jsonl")
    assert summary["collected"] == {"shirt": 2} and all(r["top"] for r in frames)
    roi = read_image(data / "shirt" / "0001.png")
    assert roi.shape == (140, 140, 1)  # 144 rounded down to 5 × 28: what is binned to 28×28
    assert abs(float(roi.mean()) - (0.299 * 90 + 0.587 * 60 + 0.114 * 30)) < 8


class FakeWindow:
    """cv2's window functions for a headless OpenCV: ``waitKey`` plays ``keys``, then q."""

    def __init__(self, keys):
        self.keys = [ord(k) if isinstance(k, str) else k for k in keys]
        self.shown = 0

    def install(self, monkeypatch):
        from edge_demo import app

        monkeypatch.setattr(app, "gui_problem", lambda: None)
        monkeypatch.setattr(cv2, "namedWindow", lambda *a: None)
        monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
        monkeypatch.setattr(cv2, "imshow", lambda name, img: setattr(self, "shown", self.shown + 1))
        monkeypatch.setattr(cv2, "waitKey", lambda ms: self.keys.pop(0) if self.keys else ord("q"))


def test_window_keys_save_under_their_labels(tmp_path, monkeypatch, colour_model):
    video = write_avi(tmp_path / "clip.avi", [(0, 0, 200)] * 30)
    data = tmp_path / "data"
    FakeWindow(["1", "2", 255, "1", " ", "2", " ", "x", "q"]).install(monkeypatch)
    monkeypatch.chdir(tmp_path)  # window mode writes snapshots to the current folder
    assert run_cli(video, "--collect", data, "--label", "cat,dog") == 0
    assert sorted(p.name for p in (data / "cat").iterdir()) == ["0001.png", "0002.png"]
    assert sorted(p.name for p in (data / "dog").iterdir()) == ["0001.png", "0002.png"]

    # no --label: the model's classes name the keys (1 = red, 2 = green)
    FakeWindow(["2", "q"]).install(monkeypatch)
    assert run_cli(video, "-m", colour_model, "--collect", data) == 0
    assert [p.name for p in (data / "green").iterdir()] == ["0001.png"]


def test_collect_labels_and_counts():
    from edge_demo.collect import Collector, folder_name, parse_labels

    assert parse_labels(" cat , dog ") == ["cat", "dog"]
    assert folder_name("T-shirt/top") == "T-shirt_top" and folder_name("..") == "_"
    c = Collector("/nonexistent/data", ["cat", "dog"])
    assert c.key_label(ord("2")) == "dog" and c.key_label(ord("3")) is None
    assert c.lines() == ["1 cat: 0", "2 dog: 0"]


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` read-only for this process; as root, permission bits do not count, so the
    folder is made immutable (chattr +i) instead, or the test is skipped."""
    folder.chmod(0o555)
    immutable = False
    try:
        try:
            (folder / ".probe").touch()
            (folder / ".probe").unlink()
            writable = True
        except OSError:
            writable = False
        if writable:
            chattr = shutil.which("chattr")
            ok = chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0
            if not ok:
                pytest.skip("cannot make a read-only folder here (root, no chattr +i)")
            immutable = True
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


@pytest.mark.parametrize(
    "case",
    [
        "read_only",
        "read_only_parent",
        "slash",
        "dotdot",
        "empty",
        "hidden",
        "two_labels_headless",
        "label_without_collect",
    ],
)
def test_collect_problems_fail_before_anything_runs(tmp_path, capsys, case):
    video = write_avi(tmp_path / "clip.avi", [(0, 0, 200)] * 3)
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "cat").mkdir()
    target, label, needle = {
        "read_only": (ro, "cat", str(ro)),
        "read_only_parent": (ro / "new", "cat", str(ro)),
        "slash": (tmp_path / "d", "a/b", "'a/b': not a valid folder name (contains a path"),
        "dotdot": (tmp_path / "d", "..", "'..': not a valid folder name"),
        "empty": (tmp_path / "d", "cat,", "'': not a valid folder name (empty)"),
        "hidden": (tmp_path / "d", ".cat", "'.cat': not a valid folder name (starts with"),
        "two_labels_headless": (tmp_path / "d", "cat,dog", "give one --label NAME (got 2)"),
        "label_without_collect": (None, "cat", "--label and --collect-every need --collect"),
    }[case]
    before = tree(tmp_path)
    args = [video, "--label", label, "--headless", "--out", tmp_path / "o.mp4"]
    if target is not None:
        args += ["--collect", target]
    with read_only(ro) if case.startswith("read_only") else contextlib.nullcontext():
        rc = run_cli(*args)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    if case.startswith("read_only"):
        assert "cannot write in folder" in lines[0]
    assert tree(tmp_path) == before and not (tmp_path / "d").exists()


def test_bad_sources_name_the_path_and_write_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub" / ".git").mkdir(parents=True)
    (empty / ".hidden.png").write_bytes(b"x")
    (empty / "sub" / "readme.txt").write_text("no images")
    data = tmp_path / "data"
    for source, needle in ((empty, f"no images in folder {empty}"), ("9", "cannot open camera 9")):
        rc = run_cli(source, "--collect", data, "--label", "cat", "--headless", "--out", tmp_path / "o.mp4")
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"\x89PNG broken")
    (bad / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    rc = run_cli(bad, "--collect", data, "--label", "cat", "--headless", "--out", tmp_path / "o.mp4")
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"no readable images in folder {bad}" in err and "a.png" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "empty"]


# ------------------------------------------------------------------------------ image folders
def test_folder_is_walked_recursively_in_sorted_order(tmp_path, colour_model, capsys):
    root = tmp_path / "photos"
    files = {
        "top.jpg": RED,
        "a/10.png": GREEN,
        "a/2.png": RED,
        "a/sub/z.png": GREEN,
        "b/x.png": RED,
        ".hidden/h.png": RED,
        "a/.h.png": RED,
        "__MACOSX/a/._2.png": RED,
    }
    for name, rgb in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), flat(40, 60, rgb))
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "b" / "bad.png").write_bytes(b"\x89PNG broken")
    log = tmp_path / "r.jsonl"
    assert run_cli(root, "-m", colour_model, "--headless", "--no-video", "--log", log) == 0
    warn = capsys.readouterr().err.strip().splitlines()
    assert len(warn) == 1 and warn[0].startswith("warning: skipping ") and "b/bad.png" in warn[0]
    frames, summary = read_log(log)
    order = ["top.jpg", "a/10.png", "a/2.png", "a/sub/z.png", "b/x.png"]
    assert [r["file"] for r in frames] == order
    assert [r["top"][0]["class"] for r in frames] == ["red" if files[f] == RED else "green" for f in order]
    assert len(summary["skipped"]) == 1 and summary["frames"] == 5


def test_no_smoothing_across_the_images_of_a_folder(tmp_path, colour_model):
    root = tmp_path / "imgs"
    root.mkdir()
    mixes = [RED, GREEN, (120, 100, 0), GREEN, (60, 200, 0)]
    for i, rgb in enumerate(mixes):
        cv2.imwrite(str(root / f"{i}.png"), flat(32, 48, rgb))
    log = tmp_path / "all.jsonl"
    assert run_cli(root, "-m", colour_model, "--headless", "--no-video", "--log", log, "--smooth", "0.9") == 0
    frames, summary = read_log(log)
    assert summary["smooth"] == 0.0 and len(frames) == len(mixes)
    for i, r in enumerate(frames):
        one = tmp_path / f"one{i}.jsonl"
        assert run_cli(root / f"{i}.png", "-m", colour_model, "--headless", "--no-video", "--log", one) == 0
        assert r["top"] == read_log(one)[0][0]["top"]  # as if it were the only image
        assert r["top"][0]["index"] == r["pred"]

    video = write_avi(tmp_path / "v.avi", [(0, 0, 200)] * 3 + [(0, 200, 0)] * 3)
    assert (
        run_cli(video, "-m", colour_model, "--headless", "--no-video", "--log", log, "--smooth", "0.9") == 0
    )
    frames, summary = read_log(log)  # a video still is smoothed: green shows late
    assert summary["smooth"] == 0.9 and frames[3]["pred"] == 1 and frames[3]["top"][0]["index"] == 0


def test_a_folder_video_has_one_letterboxed_frame_size(tmp_path, colour_model):
    root = tmp_path / "imgs"
    root.mkdir()
    sizes = [(28, 28), (100, 300), (400, 100), (900, 1200)]  # (h, w)
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(root / f"{i}.png"), flat(h, w, (255, 255, 255)))
    out = tmp_path / "out.avi"
    assert run_cli(root, "-m", colour_model, "--headless", "--out", out) == 0
    assert read_log(out.with_suffix(".jsonl"))[1]["output_size"] == [640, 480]
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) == 4 and all(f.shape == (480, 640, 3) for f in frames)
    tall = frames[2]  # 100×400 at scale 1, centred: columns 270..369, rows 40..439
    assert tall[240, 320].min() > 200 and tall[240, 150].max() < 40 and tall[240, 500].max() < 40
    assert frames[3][240, 100].min() > 200  # 1200×900 shrunk to fill 640×480


# ------------------------------------------------------------------------------ inversion
def test_invert_default_follows_the_model(tmp_path, colour_model):
    from edge_demo.preprocess import FramePreprocessor, should_invert

    base = {"image_size": [28, 28], "dynamic_hw": True}
    for meta, want in [
        ({"channels": 3}, "off"),
        ({"channels": 3, "background": "dark"}, "auto"),
        ({"channels": 1}, "auto"),
        ({"channels": 1, "background": None}, "off"),
        ({"channels": 1, "background": "light"}, "off"),
    ]:
        assert FramePreprocessor({**base, **meta}).invert == want, meta
    assert FramePreprocessor({**base, "channels": 3}, invert="on").invert == "on"
    sandal = np.zeros((28, 28), np.uint8)  # bright strap on the border, empty centre
    sandal[2:6, :] = 255
    assert not should_invert(sandal)

    photo = tmp_path / "dark_on_light.png"
    img = flat(64, 64, (235, 235, 235))
    img[16:48, 16:48] = (20, 20, 120)
    cv2.imwrite(str(photo), img)
    log = tmp_path / "i.jsonl"
    assert run_cli(photo, "-m", colour_model, "--headless", "--no-video", "--log", log) == 0
    frames, summary = read_log(log)
    assert summary["invert"] == "off" and summary["background"] is None
    assert frames[0]["inverted"] is False
    assert (
        run_cli(photo, "-m", colour_model, "--headless", "--no-video", "--log", log, "--invert", "auto") == 0
    )
    assert read_log(log)[0][0]["inverted"] is True


def test_native_size_follows_a_keep_size_model(tmp_path):
    from edge_demo.preprocess import FramePreprocessor

    keep = {"channels": 3, "image_size": None, "dynamic_hw": True, "size_policy": "keep"}
    pre = FramePreprocessor(keep, roi=None)
    batch, _ = pre(np.zeros((50, 70, 3), np.uint8))
    assert pre.native_size and batch.shape == (1, 50, 70, 3)  # the whole image, its own size
    fixed = FramePreprocessor({**keep, "image_size": [32, 32]}, roi=0.5, native_size=False)
    assert fixed(np.zeros((100, 80, 3), np.uint8))[0].shape == (1, 32, 32, 3)


# ------------------------------------------------------------------------------ a real window
def _gui_build() -> bool:
    import re

    m = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.M)
    return bool(m) and m.group(1).upper() != "NONE"


@pytest.fixture
def xvfb():
    """A virtual X display (Xvfb) for a GUI build of OpenCV (opencv-python); skipped with the
    headless build, which the default install and CI use."""
    if not _gui_build():
        pytest.skip(
            "OpenCV without a GUI: pip uninstall -y opencv-python-headless && pip install opencv-python"
        )
    if not (shutil.which("Xvfb") and shutil.which("import")):
        pytest.skip("needs Xvfb and ImageMagick's import (apt-get install xvfb imagemagick)")
    display = f":{90 + os.getpid() % 9}"
    proc = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock = Path(f"/tmp/.X11-unix/X{display[1:]}")
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.05)
    try:
        yield display
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def scene(h=480, w=640, ball=(40, 40, 210)) -> np.ndarray:
    """A red ball on a light, slightly shaded table (BGR)."""
    img = np.linspace(170, 225, h, dtype=np.uint8)[:, None, None].repeat(w, 1).repeat(3, 2)
    cv2.circle(img, (w // 2 + 10, h // 2), 70, ball, -1, cv2.LINE_AA)
    cv2.circle(img, (w // 2 - 15, h // 2 - 25), 18, (120, 120, 245), -1, cv2.LINE_AA)
    return img


def test_window_mode_under_xvfb_takes_a_screenshot(tmp_path, monkeypatch, colour_model, xvfb):
    """The real window (Qt) on a virtual display: keys 1 and 2 collect, the overlay shows the
    counts, and ``import -window root`` grabs the screen (CNNEDGE_DEMO_WINDOW_PNG: copy it)."""
    monkeypatch.setenv("DISPLAY", xvfb)
    video = tmp_path / "ball.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for i in range(60):
        w.write(np.roll(scene(), 2 * i - 60, axis=1))
    w.release()
    real_wait, shot, seen = cv2.waitKey, tmp_path / "window.png", []
    keys = {5: "1", 9: "1", 14: "2", 20: "1"}

    def wait(ms):  # the real event loop runs; keys come from the script, not a keyboard
        real_wait(max(1, ms))
        seen.append(1)
        if len(seen) == 40:
            for _ in range(20):
                real_wait(10)  # let Qt paint the last frame
            subprocess.run(["import", "-window", "root", str(shot)], check=True, timeout=30)
            return ord("q")
        return ord(keys.get(len(seen), "\xff"))

    monkeypatch.setattr(cv2, "waitKey", wait)
    monkeypatch.chdir(tmp_path)
    assert run_cli(video, "-m", colour_model, "--collect", tmp_path / "data", "--label", "cat,dog") == 0
    assert len(list((tmp_path / "data" / "cat").iterdir())) == 3
    assert len(list((tmp_path / "data" / "dog").iterdir())) == 1
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (600, 800)
    window = img[:480, :640]
    assert window.std() > 20 and (window[..., 2] > 180).mean() > 0.02  # the red ball, drawn
    if os.environ.get("CNNEDGE_DEMO_WINDOW_PNG"):  # the window alone (no window manager: at 0, 0)
        ys, xs = np.nonzero(img.max(axis=2))
        cv2.imwrite(os.environ["CNNEDGE_DEMO_WINDOW_PNG"], img[: ys.max() + 1, : xs.max() + 1])
