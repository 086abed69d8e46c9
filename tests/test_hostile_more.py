"""Hostile and careless use, part 2: a Keras 3 model file, folders too small to validate on, a
full disk while collecting, a runtime asked for by name, a Ctrl-C that a converter swallows and
the mode of collected files — each ends in one clear line (or a working result), nothing lost."""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import one_error

cv2 = pytest.importorskip("cv2")

from cnnedge.cli import main  # noqa: E402


def images(folder: Path, n: int, size=(48, 48)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 255, (*size, 3), np.uint8))
    return folder


# ------------------------------------------------------------------ a Keras 3 model file
KERAS3 = """
import os, sys
os.environ.pop("TF_USE_LEGACY_KERAS", None)
import keras
m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                      keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(3)])
m.save(sys.argv[1] + ".keras")
m.save(sys.argv[1] + ".h5")
print(keras.__version__)
"""


@pytest.fixture(scope="module")
def keras3_files(tmp_path_factory):
    stem = tmp_path_factory.mktemp("keras3") / "k3"
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run(
        [sys.executable, "-c", KERAS3, str(stem)], capture_output=True, text=True, env=env, timeout=300
    )
    if out.returncode != 0 or not out.stdout.strip().startswith("3."):
        pytest.skip(f"Keras 3 is not installed here: {out.stderr[-300:]}")
    return [stem.with_suffix(".keras"), stem.with_suffix(".h5")], out.stdout.strip()


def test_a_keras3_file_is_named_as_one_not_as_code(keras3_files, capsys):
    files, version = keras3_files
    for f in files:
        err = one_error(
            capsys,
            main(["eval", str(f), "--data", "fashion-mnist", "-n", "8"]),
            str(f),
            f"saved by Keras {version}",
            "tf-keras",
        )
        assert "runs code" not in err and "never runs code" not in err


# ------------------------------------------------------------ too few images to validate on
@pytest.mark.parametrize("classes", [2, 40])
def test_one_image_per_class_is_refused_before_the_run_exists(tmp_path, capsys, classes):
    data = tmp_path / "photos"
    for i in range(classes):
        images(data / f"c{i:02d}", 1)
    runs = tmp_path / "runs"
    err = one_error(
        capsys,
        main(["train", "--data", str(data), "--runs-dir", str(runs)]),
        str(data),
        "--set data.val_fraction=0",
    )
    assert "empty" in err
    assert not runs.exists()  # no unfinished run folder


# ---------------------------------------------------------------- a full disk while collecting
def test_full_disk_while_collecting_names_the_file_and_keeps_the_log(tmp_path, capsys, monkeypatch):
    import edge_demo.collect as collect

    src = images(tmp_path / "src", 6)
    calls = []

    def full_after_two(path):  # the third image finds the disk full
        calls.append(path)
        if len(calls) > 2 * 2:  # crop + full frame per image
            raise OSError(errno.ENOSPC, "No space left on device")
        os.chmod(path, 0o644)

    monkeypatch.setattr(collect, "default_mode", full_after_two)
    log = tmp_path / "demo.jsonl"
    rc = main(
        [
            "demo",
            str(src),
            "--collect",
            str(tmp_path / "ds"),
            "--label",
            "cat",
            "--headless",
            "--no-video",
            "--collect-every",
            "1",
            "--log",
            str(log),
        ]
    )
    err = one_error(
        capsys, rc, "No space left on device", "collecting stopped with 2 images", str(tmp_path / "ds")
    )
    assert "OSError" not in err
    assert sorted(p.name for p in (tmp_path / "ds" / "cat").iterdir()) == ["0001.png", "0002.png"]
    summary = json.loads(log.read_text().splitlines()[-1])["summary"]  # the log was kept
    assert summary["collected"] == {"cat": 2}
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_full_disk_under_the_log_is_one_line(tmp_path, capsys):
    """The log's temporary file is a link to /dev/full: a real ENOSPC from the kernel."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    src = images(tmp_path / "src", 3)
    log = tmp_path / "demo.jsonl"
    (tmp_path / ".demo.tmp.jsonl").symlink_to("/dev/full")
    rc = main(
        [
            "demo",
            str(src),
            "--headless",
            "--no-video",
            "--log",
            str(log),
            "--collect",
            str(tmp_path / "ds"),
            "--label",
            "cat",
            "--collect-every",
            "1",
        ]
    )
    one_error(capsys, rc, f"cannot write log {log}", "No space left on device")
    assert not log.exists() and not (tmp_path / ".demo.tmp.jsonl").exists()


def test_collected_files_follow_the_umask(tmp_path):
    src = images(tmp_path / "src", 2)
    old = os.umask(0o022)
    try:
        assert (
            main(
                [
                    "demo",
                    str(src),
                    "--collect",
                    str(tmp_path / "ds"),
                    "--label",
                    "cat",
                    "--headless",
                    "--no-video",
                    "--collect-every",
                    "1",
                    "--log",
                    str(tmp_path / "demo.jsonl"),
                ]
            )
            == 0
        )
    finally:
        os.umask(old)
    assert (tmp_path / "demo.jsonl").stat().st_mode & 0o777 == 0o644
    files = [p for p in (tmp_path / "ds").rglob("*.png")]
    assert len(files) == 4  # 2 crops + 2 full frames
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o644)}


# ------------------------------------------------------------------- a runtime named by the user
def test_predict_runtime_tflm_takes_the_fixed_size_file(tiny_run, tmp_path, capsys):
    pytest.importorskip("tflite_micro")
    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run, ignore=shutil.ignore_patterns("tb"))
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), tiny_run["x"][0])
    one_error(
        capsys,
        main(["predict", str(img), "-m", str(run), "--runtime", "tflm"]),
        "runs on tflm",
        "model_int8_static.tflite",
        "--format tflm",
    )
    assert main(["export", str(run), "--format", "tflm", "--verify", "0"]) == 0
    capsys.readouterr()
    out = tmp_path / "p.json"
    assert main(["predict", str(img), "-m", str(run), "--runtime", "tflm", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert rows["runtime"] == "tflm" and Path(rows["model"]).name == "model_int8_static.tflite"
    assert rows["predictions"][0]["error"] is None


# ------------------------------------------------------------- a Ctrl-C a converter swallows
SWALLOWED_CTRL_C = """
import signal, sys
from cnnedge import export as ex
from cnnedge.cli import main

writers = ex.WRITERS["tflite"]

def swallowing(job, precision):  # as tf2onnx's bare ``except: pass`` does
    for row, write in writers(job, precision):
        def write_and_swallow(tmp, write=write):
            meta = write(tmp)
            try:
                signal.raise_signal(signal.SIGINT)
            except:  # the converter's habit under test
                pass
            return meta
        yield row, write_and_swallow

ex.WRITERS["tflite"] = swallowing
signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's (a nohup job ignores it)
sys.exit(main(["export", sys.argv[1], "-f", "tflite", "-p", "fp32", "--verify", "0"]))
"""


def test_export_honours_a_ctrl_c_that_a_converter_swallows(tiny_run, tmp_path):
    """A Ctrl-C that a converter swallows still stops the export (exit 130), nothing replaced.
    In its own process, as a user's command runs: a test process's SIGINT handling (a
    pytest-xdist worker's) is not the command's."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run, ignore=shutil.ignore_patterns("tb"))
    before = {p.name: p.read_bytes() for p in (run / "export").iterdir() if p.is_file()}
    r = subprocess.run([sys.executable, "-c", SWALLOWED_CTRL_C, str(run)], capture_output=True, text=True)
    assert r.returncode == 130, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr
    after = {p.name: p.read_bytes() for p in (run / "export").iterdir() if p.is_file()}
    assert after == before  # nothing replaced, no staging folder left
    assert not [p for p in (run / "export").iterdir() if p.name.startswith(".export.")]
