"""One list of frame sources (cnnedge.frames) for `predict` and the demo: how a source string is
told apart, predict's rows (errors included), and the demo reading the same kinds (a glob of
images too)."""

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from cnnedge import frames
from cnnedge.errors import CnnedgeError

cv2 = pytest.importorskip("cv2")


def write_png(path: Path, value: int, size=(24, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))
    return path


def write_avi(path: Path, n: int) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((24, 32, 3), 20 * i, np.uint8))
    w.release()
    return path


@pytest.fixture
def tree(tmp_path):
    """photos/ with nested and hidden images and a text file, a video, a FIFO, an odd file."""
    root = tmp_path / "photos"
    for rel, v in (
        ("b.png", 10),
        ("a/2.png", 20),
        ("a/10.png", 30),
        ("a/sub/z.png", 40),
        (".hidden/h.png", 50),
        ("a/.h.png", 60),
    ):
        write_png(root / rel, v)
    (root / "notes.txt").write_text("not an image")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "data.bin").write_bytes(b"\x00" * 64)
    return {
        "root": root,
        "video": write_avi(tmp_path / "clip.avi", 5),
        "fifo": tmp_path / "pipe.png",
        "odd": tmp_path / "data.bin",
        "tmp": tmp_path,
    }


def test_each_source_string_has_one_kind(tree, monkeypatch):
    t = tree
    kinds = {
        "0": "camera",
        "2147483648": "camera",
        "rtsp://cam.local/live": "stream",
        "HTTP://cam/x.mjpg": "stream",
        "/dev/video7": "stream",
        str(t["root"]): "folder",
        str(t["root"] / "b.png"): "image",
        str(t["video"]): "video",
        str(t["odd"]): "file",
        str(t["fifo"]): "special",
        str(t["root"] / "**" / "*.png"): "glob",
        str(t["tmp"] / "missing.png"): "missing",
    }
    for text, kind in kinds.items():
        spec = frames.parse(text)
        assert (spec.kind, spec.live) == (kind, kind in frames.LIVE), text
    assert frames.parse("3").name == "camera 3" and frames.parse("3").target == 3
    monkeypatch.chdir(t["tmp"])
    (t["tmp"] / "0").mkdir()  # an existing folder named 0 is the folder, not camera 0
    assert frames.parse("0").kind == "folder"


def test_expand_gives_predict_its_rows_in_order(tree):
    t = tree
    empty = t["tmp"] / "empty"
    empty.mkdir()
    items = list(
        frames.expand(
            [
                t["root"],
                str(t["root"] / "a" / "*.png"),
                t["video"],
                empty,
                t["fifo"],
                "nope.png",
                str(t["tmp"] / "*.jpeg"),
                str(2**31),
            ],
            every=2,
        )
    )
    rel = [str(Path(i.path).relative_to(t["root"])) for i in items if i.path and i.path.is_file()]
    assert rel == ["b.png", "a/10.png", "a/2.png", "a/sub/z.png", "a/10.png", "a/2.png"]
    video = [i for i in items if i.source == str(t["video"])]
    assert [i.frame for i in video] == [0, 2, 4] and video[0].image.shape == (24, 32, 3)
    assert not any(i.live for i in video)
    errors = [i.error for i in items if i.error]
    assert errors == [
        f"{empty}: no images in folder (looked for {', '.join(frames.IMAGE_SUFFIXES)})",
        "nope.png: no such file, folder or camera",
        f"{t['tmp'] / '*.jpeg'}: nothing matches (images, videos or folders)",
        f"camera {2**31}: no such camera index (OpenCV takes 0 to {2**31 - 1})",
    ]
    fifo = [i for i in items if i.source == str(t["fifo"])]
    assert fifo[0].path == t["fifo"] and fifo[0].error is None  # the reader refuses it unopened


def test_a_stream_that_does_not_open_is_a_row():
    [item] = frames.expand(["/dev/video99"])
    assert item.error == "/dev/video99: stream does not open" and item.source == "/dev/video99"


def test_the_demo_reads_the_same_folder_and_a_glob(tree):
    """The demo walks a folder as predict does, and now takes a glob of images too."""
    from edge_demo.capture import open_source

    t = tree
    want = [i.path for i in frames.expand([t["root"]])]

    def names(spec):
        src = open_source(spec)
        try:
            out = []
            while (f := src.read()) is not None:
                out.append(f.name)
            return src.kind, out
        finally:
            src.close()

    kind, got = names(str(t["root"]))
    assert kind == "images" and got == [str(p.relative_to(t["root"])) for p in want]
    assert names(str(t["root"] / "a" / "*.png")) == ("images", ["10.png", "2.png"])
    assert names(str(t["root"] / "**" / "z.png")) == ("images", ["z.png"])
    with pytest.raises(CnnedgeError, match=r"^no images match .*\*\.jpeg \(looked for \.jpg"):
        open_source(str(t["tmp"] / "*.jpeg"))
    with pytest.raises(CnnedgeError, match="^no such file or folder: .*nope.png"):
        open_source(str(t["tmp"] / "nope.png"))
    assert not any(t.name.startswith("read:") for t in threading.enumerate() if t.is_alive())


def test_open_capture_errors_name_the_source(monkeypatch):
    def raw(*a, **k):
        raise cv2.error("OpenCV(5.0.0) :-1: error: (-5:Bad argument) in function 'VideoCapture'\n")

    with pytest.raises(frames.SourceError) as e:
        frames.open_capture(2**31, "camera 2147483648")
    assert e.value.cause.startswith("no such camera index")
    monkeypatch.setattr(cv2, "VideoCapture", raw)
    with pytest.raises(frames.SourceError) as e:
        frames.open_capture("clip.mp4")
    assert str(e.value) == "clip.mp4: cannot open (OpenCV: Bad argument: in function 'VideoCapture')"
    assert e.value.cause == "OpenCV: Bad argument: in function 'VideoCapture'"
