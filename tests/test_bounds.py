"""Resource bounds before work: only regular files are opened (a FIFO is a row, never a hang),
an image header claiming too many pixels is refused before any decoder runs, a file larger
than its header allows is never read whole, an input size no memory holds is refused with its
estimate (predict, train, export, data, tflm), and a camera index OpenCV cannot take is a row.

Model: the session's tiny run (conftest.py). Bombs are made by hand: a PNG header claiming
65535×65535 with no pixels, a real 20000×20000 1-bit PNG of 49 KB, sparse 3 GB files.
"""

import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from helpers import one_error, tree

cv2 = pytest.importorskip("cv2")

from cnnedge import imagefile, limits, preprocess  # noqa: E402
from cnnedge.cli import main  # noqa: E402
from cnnedge.errors import CnnedgeError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GB3 = 3 << 30


# ------------------------------------------------------------------------------ hostile files
def png(w: int, h: int, idat: bytes = b"", depth: int = 8) -> bytes:
    """A grayscale PNG: signature, IHDR claiming w×h, one IDAT, IEND."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def real_bomb(side: int = 20000) -> bytes:
    """A complete, valid side×side 1-bit PNG of zeros: 49 KB that decode to 400 MP."""
    z = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    return png(side, side, b"".join(z.compress(row) for _ in range(side)) + z.flush(), depth=1)


def sparse(path: Path, head: bytes = b"", size: int = GB3) -> Path:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


JPEG_100 = bytes.fromhex("ffd8ffc0000b080064006401011100ffd9")  # SOF0: 100×100, gray


def bytes_read() -> int | None:
    """Bytes this process has read through read() so far (Linux), to prove a file was not."""
    try:
        return int(
            next(
                ln.split()[1]
                for ln in Path("/proc/self/io").read_text().splitlines()
                if ln.startswith("rchar:")
            )
        )
    except (OSError, StopIteration):
        return None


@contextmanager
def fifo_guard(fifo: Path, seconds: float = 30):
    """A FIFO a buggy reader would block on forever: after ``seconds`` a writer opens it (the
    reader then sees end-of-file) and ``hit`` is set, so a regression fails instead of hanging."""
    hit = threading.Event()

    def unblock():
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # succeeds only if a reader waits
        except OSError:
            return
        hit.set()
        os.close(fd)

    timer = threading.Timer(seconds, unblock)
    timer.start()
    try:
        yield hit
    finally:
        timer.cancel()


@pytest.fixture(scope="module")
def hostile(tiny_run, tmp_path_factory):
    """A folder of one good image beside a FIFO, both PNG bombs and two sparse 3 GB files."""
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), tiny_run["x"][0, ..., 0])
    os.mkfifo(folder / "fifo.png")
    (folder / "header_bomb.png").write_bytes(png(65535, 65535))
    (folder / "real_bomb.png").write_bytes(real_bomb())
    sparse(folder / "zeros.jpg")
    sparse(folder / "long.jpg", JPEG_100)
    return {"root": root, "folder": folder, "run": tiny_run["run"]}


# ------------------------------------------------------------------------------ predict (CLI)
def test_predict_hostile_folder_rows_not_hang(hostile, tmp_path):
    """Cases 1, 4, 12, 16 end to end, in a subprocess under a deadline: each bad source is one
    row with a one-line error, the good image is predicted, --json is written, exit 1."""
    out = tmp_path / "o.json"
    t = time.monotonic()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnedge",
            "predict",
            str(hostile["folder"]),
            str(2**31),
            "-m",
            str(hostile["run"]),
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    assert time.monotonic() - t < 120 and "Traceback" not in p.stdout + p.stderr
    rows = {Path(r["source"]).name: r for r in json.loads(out.read_text())["predictions"]}
    assert sorted(rows) == [
        "camera 2147483648",
        "fifo.png",
        "good.png",
        "header_bomb.png",
        "long.jpg",
        "real_bomb.png",
        "zeros.jpg",
    ]
    assert rows["good.png"]["error"] is None and rows["good.png"]["top"]
    err = {k: r["error"] for k, r in rows.items() if k != "good.png"}
    assert all(e and "\n" not in e and "OpenCV(" not in e for e in err.values()), err
    assert "FIFO" in err["fifo.png"] and "not opened" in err["fifo.png"]
    assert "65535×65535" in err["header_bomb.png"] and "4295 MP" in err["header_bomb.png"]
    assert "over the 100 MP limit" in err["header_bomb.png"]
    assert "20000×20000" in err["real_bomb.png"] and "400 MP" in err["real_bomb.png"]
    assert "unknown signature" in err["zeros.jpg"]
    assert "3,221,225,472 bytes" in err["long.jpg"] and "100×100" in err["long.jpg"]
    assert "no such camera index" in err["camera 2147483648"]


# ------------------------------------------------------------------------------ the shared reader
def test_fifo_is_refused_without_opening(hostile):
    fifo = hostile["folder"] / "fifo.png"
    with fifo_guard(fifo) as hit:
        with pytest.raises(CnnedgeError, match="FIFO.*not opened"):
            preprocess.read_image(fifo)
        with pytest.raises(CnnedgeError, match="FIFO"):
            imagefile.probe(fifo)
    assert not hit.is_set()
    with pytest.raises(CnnedgeError, match="character device"):
        preprocess.read_image("/dev/null")  # not an empty image: a device, never opened


def test_bombs_are_refused_before_any_decoder(hostile, monkeypatch):
    def never(*a, **k):
        raise AssertionError("a decoder ran")

    monkeypatch.setattr(preprocess, "_decode", never)
    monkeypatch.setattr(cv2, "imdecode", never)
    folder = hostile["folder"]
    for name, needle in [
        ("header_bomb.png", "65535×65535 (H×W) = 4295 MP, over the 100 MP"),
        ("real_bomb.png", "20000×20000 (H×W) = 400 MP"),
    ]:
        with pytest.raises(CnnedgeError, match=r"over the 100 MP limit") as e:
            preprocess.read_image(folder / name)
        assert needle in str(e.value) and str(e.value).startswith(str(folder / name))
        with pytest.raises(CnnedgeError, match="over the 100 MP limit"):
            preprocess.decode((folder / name).read_bytes(), name)  # bytes in memory too


def test_huge_sparse_files_are_not_read(hostile):
    for name, needle in [("zeros.jpg", "unknown signature"), ("long.jpg", "not read")]:
        before = bytes_read()
        t = time.monotonic()
        with pytest.raises(CnnedgeError, match=needle):
            preprocess.read_image(hostile["folder"] / name)
        assert time.monotonic() - t < 2
        if before is not None:
            assert bytes_read() - before < 1 << 20  # the header, never the 3 GB


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), np.zeros((30, 40), np.uint8))
    assert preprocess.read_image(p).shape == (30, 40, 1)
    monkeypatch.setenv(imagefile.MAX_PIXELS_ENV, "1000")
    with pytest.raises(CnnedgeError, match=r"30×40 \(H×W\) = 1,200 pixels, over the 1,000"):
        preprocess.read_image(p)
    monkeypatch.setenv(imagefile.MAX_PIXELS_ENV, "lots")
    with pytest.raises(CnnedgeError, match="CNNEDGE_MAX_PIXELS='lots'"):
        preprocess.read_image(p)


def test_training_folders_use_the_same_checks(hostile, tmp_path):
    """`train --data` reads headers through the same reader: each hostile file is one line."""
    from helpers import write_folder

    from cnnedge import data

    write_folder(tmp_path / "d", classes=("a", "b"))
    target = tmp_path / "d" / "b"
    data.open_dataset(str(tmp_path / "d"))  # the clean folder opens
    os.mkfifo(target / "pipe.png")  # listed only as a regular file: never opened
    with fifo_guard(target / "pipe.png") as hit:
        data.open_dataset(str(tmp_path / "d"))
    assert not hit.is_set()
    for name, needle in [
        ("header_bomb.png", "4295 MP, over the 100 MP limit"),
        ("real_bomb.png", "400 MP"),
        ("zeros.jpg", "unknown signature"),
        ("long.jpg", "3,221,225,472 bytes"),
    ]:
        src = hostile["folder"] / name
        (target / name).symlink_to(src)
        with pytest.raises(CnnedgeError, match=needle) as e:
            data.open_dataset(str(tmp_path / "d"))
        assert str(e.value).startswith(str(target / name)) and "\n" not in str(e.value)
        (target / name).unlink()


# ------------------------------------------------------------------------------ cameras
def test_camera_index_past_int_is_a_row(hostile):
    from cnnedge.predict import predict

    good = hostile["folder"] / "good.png"
    res = predict([str(2**31), good, str(2**70)], hostile["run"])
    rows = {p.source: p for p in res}
    assert rows[str(good)].error is None
    assert "no such camera index" in rows["camera 2147483648"].error
    assert "no such camera index" in rows[f"camera {2**70}"].error


def test_opencv_errors_become_one_line_rows(hostile, monkeypatch):
    from cnnedge.predict import predict

    def raw(*a, **k):
        raise cv2.error(
            "OpenCV(5.0.0) :-1: error: (-5:Bad argument) in function "
            "'VideoCapture'\n> Overload resolution failed:\n>  - nope\n"
        )

    monkeypatch.setattr(cv2, "VideoCapture", raw)
    good = hostile["folder"] / "good.png"
    res = predict(["7", good], hostile["run"])
    rows = {p.source: p for p in res}
    assert rows[str(good)].error is None
    assert rows["camera 7"].error == (
        "camera 7: cannot open (OpenCV: Bad argument: in function 'VideoCapture')"
    )


def test_demo_camera_and_fifo_are_one_line(hostile, tmp_path, monkeypatch, capsys):
    from edge_demo import capture

    with pytest.raises(CnnedgeError, match="no such camera index") as e:
        capture.open_source(str(2**31))
    assert "\n" not in str(e.value)

    def raw(*a, **k):
        raise cv2.error("OpenCV(5.0.0) :-1: error: (-5:Bad argument) in function 'VideoCapture'\n")

    monkeypatch.setattr(capture.cv2, "VideoCapture", raw)
    with pytest.raises(CnnedgeError, match=r"cannot open camera 3: OpenCV: Bad argument"):
        capture.open_source("3")
    monkeypatch.undo()
    fifo = hostile["folder"] / "fifo.png"
    with fifo_guard(fifo) as hit:
        with pytest.raises(CnnedgeError, match="FIFO"):
            capture.open_source(str(fifo))
        model = hostile["run"] / "export" / "model_int8.tflite"
        log = tmp_path / "d.jsonl"
        rc = main(
            ["demo", str(hostile["folder"]), "-m", str(model), "--headless", "--no-video", "--log", str(log)]
        )
    assert not hit.is_set() and rc == 0
    summary = json.loads(log.read_text().splitlines()[-1])["summary"]
    assert summary["frames"] == 1  # good.png; the other five skipped with a warning each
    assert any("fifo.png" in s and "FIFO" in s for s in summary["skipped"])
    assert len(summary["skipped"]) == 5


# ------------------------------------------------------------------------------ input sizes
@pytest.mark.parametrize("command", ["predict", "train", "export", "data", "eval"])
def test_huge_image_size_is_refused_with_estimate(hostile, tmp_path, capsys, command):
    run, big = str(hostile["run"]), "100000x100000"
    args = {
        "predict": ["predict", str(hostile["folder"] / "good.png"), "-m", run, "--image-size", big],
        "train": [
            "train",
            "--recipe",
            "fashion_mnist_tiny",
            "--runs-dir",
            str(tmp_path),
            "--image-size",
            big,
        ],
        "export": ["export", run, "--format", "tflm", "--image-size", big, "-o", str(tmp_path)],
        "data": ["data", "info", "fashion-mnist", "--image-size", big],
        "eval": ["eval", run, "--image-size", big],
    }[command]
    before = tree(hostile["run"])
    one_error(capsys, main(args), big, "10000 MP per image", "about 50.0 GB", "at most 100 MP")
    assert tree(hostile["run"]) == before and not any(tmp_path.iterdir())


def test_batch_that_cannot_fit_is_refused(hostile, monkeypatch):
    from cnnedge.predict import predict
    from cnnedge.recipe import check, load_recipe, set_image_size

    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 30)
    with pytest.raises(
        CnnedgeError,
        match=r"a batch of 64 images needs about 1.3 GB .* more "
        r"than the 1.1 GB of memory available",
    ):
        predict([hostile["folder"] / "good.png"], hostile["run"], image_size=(2000, 2000))
    recipe = set_image_size(load_recipe("fashion_mnist_tiny"), (2000, 2000))
    with pytest.raises(CnnedgeError, match=r"data.image_size 2000x2000: .*a batch of 64 images"):
        check(recipe)
    assert limits.available_memory() and check(set_image_size(recipe, (64, 64)))


def test_tflm_export_of_a_huge_size_is_refused_up_front(hostile, tmp_path, capsys):
    before = tree(hostile["run"])
    t = time.monotonic()
    rc = main(
        [
            "export",
            str(hostile["run"]),
            "--format",
            "tflm",
            "--image-size",
            "4096x4096",
            "-o",
            str(tmp_path / "out"),
        ]
    )
    one_error(
        capsys, rc, "--image-size 4096x4096", "tensor arena of at least 96.0 MiB", "at most 64 MiB"
    )  # gmp_xs: its second conv's 2048²×16 input + 1024²×32 output
    assert time.monotonic() - t < 30 and not (tmp_path / "out").exists()
    assert tree(hostile["run"]) == before
