"""Outputs never clobber, and one command at a time writes a run: an output that is an input, a
folder or a file of another kind is refused before any work (exit 2, one line); a failed or
interrupted command leaves the earlier report as it was; a second command on a run in use says
who holds it (exit 2), and a killed holder blocks no one."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import one_error, tree, write_folder

from cnnedge import locks
from cnnedge.cli import main
from cnnedge.errors import CnnedgeError
from cnnedge.run import Run


@pytest.fixture
def run(tiny_run, tmp_path):
    """A copy of the session's trained and exported run, free to damage."""
    dest = tmp_path / "runs" / "fashion_mnist_tiny" / "exp"
    shutil.copytree(tiny_run["run"], dest)
    return dest


@pytest.fixture
def imgs(tmp_path):
    write_folder(tmp_path / "imgs", classes=("a",), per_class=3, size=(28, 28), channels=1)
    return tmp_path / "imgs"


# ------------------------------------------------------------------ 6: pack replaces a pack only
def test_pack_never_replaces_a_file_or_what_it_reads(tmp_path, capsys):
    write_folder(tmp_path / "f", classes=("a", "b"), per_class=2, size=(8, 8))
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes\n")
    pack = ["data", "pack", "--shards", "1", "--overwrite"]
    one_error(
        capsys,
        main([*pack, str(tmp_path / "f"), "-o", str(notes)]),
        str(notes),
        "is an existing file, not a folder",
    )
    assert notes.read_bytes() == b"my notes\n"

    before = tree(tmp_path / "f")
    one_error(
        capsys,
        main([*pack, str(tmp_path / "f"), "-o", str(tmp_path / "f")]),
        "is one of the command's inputs",
    )
    assert tree(tmp_path / "f") == before

    assert main([*pack, str(tmp_path / "f"), "-o", str(tmp_path / "p")]) == 0  # a pack ...
    capsys.readouterr()
    packed = tree(tmp_path / "p")
    one_error(
        capsys,
        main([*pack, str(tmp_path / "p"), "-o", str(tmp_path / "p")]),
        "is one of the command's inputs",
    )  # ... never replaced by itself
    assert tree(tmp_path / "p") == packed
    assert main([*pack, str(tmp_path / "f"), "-o", str(tmp_path / "p")]) == 0  # by a new one


# ------------------------------------------------------------ 7, 13: predict's --json / --csv
def test_predict_outputs_are_checked_before_any_work(imgs, tmp_path, capsys, monkeypatch):
    import cnnedge.predict

    def never(*a, **k):
        raise AssertionError("predict ran before its outputs were checked")

    monkeypatch.setattr(cnnedge.predict, "predict", never)
    image = imgs / "a" / "000.png"
    before = tree(imgs)
    (tmp_path / "outdir").mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a report\n")
    for args, needle in [
        ([str(imgs), "--json", str(image)], "is one of the command's inputs"),
        ([str(image), "--csv", str(image)], "is one of the command's inputs"),
        (
            [str(tmp_path / "imgs" / "**" / "*.png"), "--json", str(imgs / "a" / "001.png")],
            "is one of the command's inputs",
        ),
        ([str(imgs), "--json", str(tmp_path / "outdir")], "is a folder"),
        ([str(imgs), "--csv", str(tmp_path / "outdir")], "is a folder"),
        ([str(imgs), "--csv", "-", "--json", "-"], "would mix on stdout"),
        ([str(imgs), "--csv", str(tmp_path / "o"), "--json", str(tmp_path / "o")], "both name"),
        ([str(imgs), "--json", str(notes)], "not an earlier --json file"),
    ]:
        one_error(capsys, main(["predict", "-m", str(tmp_path), *args]), needle)
    assert tree(imgs) == before and notes.read_text() == "not a report\n"
    assert list((tmp_path / "outdir").iterdir()) == []


def test_interrupted_predict_keeps_the_earlier_report(run, imgs, tmp_path, capsys, monkeypatch):
    import cnnedge.predict

    out, csv_out, saved = tmp_path / "o.json", tmp_path / "o.csv", tmp_path / "saved"
    cmd = ["predict", str(imgs), "-m", str(run), "--json", str(out), "--csv", str(csv_out)]
    assert main(cmd) == 0 and main(cmd) == 0  # an earlier report is replaced by a whole run
    capsys.readouterr()
    reports = out.read_bytes(), csv_out.read_bytes()
    assert len(json.loads(reports[0])["predictions"]) == 3

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:  # Ctrl-C before any image was predicted or saved
        m.setattr(cnnedge.predict, "_softmax", ctrl_c)
        assert main([*cmd, "--save-dir", str(saved)]) == 130
    text = capsys.readouterr()
    assert (out.read_bytes(), csv_out.read_bytes()) == reports
    assert "no report written" in text.out and "kept as before" in text.out
    assert "saved" not in text.out and not saved.exists()

    real = cnnedge.predict.predict

    def after_one(*a, **k):  # Ctrl-C after the first row (one image per batch)
        def stop(p):
            raise KeyboardInterrupt

        return real(*a, **{**k, "batch_size": 1, "on_prediction": stop})

    monkeypatch.setattr(cnnedge.predict, "predict", after_one)
    assert main([*cmd, "--save-dir", str(saved)]) == 130
    text = capsys.readouterr().out
    assert (out.read_bytes(), csv_out.read_bytes()) == reports
    assert "saved 1 image into" in text and len(list(saved.rglob("*.png"))) == 1


def test_a_camera_run_stopped_by_ctrl_c_writes_its_rows(tmp_path, capsys, monkeypatch):
    import cnnedge.predict
    from cnnedge.predict import Prediction, PredictResult

    rows = [Prediction("camera 0", 0, [("a", 0.9)], ms=1.0)]
    monkeypatch.setattr(
        cnnedge.predict,
        "predict",
        lambda *a, **k: PredictResult(rows, Path("m.tflite"), "litert", 1, 1.0, interrupted=True),
    )
    out = tmp_path / "cam.json"
    assert main(["predict", "0", "-m", str(tmp_path), "--json", str(out)]) == 130
    assert json.loads(out.read_text())["predictions"][0]["source"] == "camera 0"
    assert "no report written" not in capsys.readouterr().out


# ------------------------------------------------------------------ 9: bench
def test_failing_bench_keeps_the_earlier_report(run, tmp_path, capsys, monkeypatch):
    export = run / Run.EXPORT
    for f in export.iterdir():
        if f.name != "model_int8.tflite":
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    good = (export / "model_int8.tflite").read_bytes()
    (export / "model_fp32.tflite").write_bytes(good[: len(good) // 3])  # truncated
    for i, name in enumerate(Run.BENCH):
        (run / name).write_bytes(b"earlier complete report %d\n" % i)
    earlier = tree(run)
    cmd = ["bench", str(run), "--quick", "--runtime", "litert", "--threads", "1", "-n", "16"]
    assert main(cmd) == 1
    text = capsys.readouterr()
    assert tree(run) == {**earlier, **{k: v for k, v in tree(run).items() if ".failed." in k}}
    failed = json.loads((run / Run.failed_report(Run.BENCH[0])).read_text())
    assert failed["exit_code"] == 1 and failed["failed_rows"] == 1
    assert "kept as it was" in text.out

    (export / "model_fp32.tflite").unlink()  # fixed: a complete report replaces both
    assert main(cmd) == 0
    capsys.readouterr()
    assert json.loads((run / Run.BENCH[0]).read_text())["exit_code"] == 0
    assert not list(run.glob("*.failed.*"))

    # a bad file alone, outside a run: nothing was benchmarked, nothing lands in the cwd
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.tflite").write_bytes(good[:100])
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert main(["bench", str(tmp_path / "bad" / "x.tflite"), "--quick"]) == 1
    capsys.readouterr()
    assert list((tmp_path / "cwd").iterdir()) == [] and len(list((tmp_path / "bad").iterdir())) == 1


# ------------------------------------------------------------------ 10: verify without qat.h5
def test_verify_without_the_qat_model_is_refused(run, capsys):
    (run / Run.VERIFY_JSON).write_text('{"passed": true}\n')
    (run / Run.VERIFY_MD).write_text("earlier passing report\n")
    (run / Run.MODELS["qat"]).unlink()
    before = tree(run)
    err = one_error(
        capsys, main(["verify", str(run), "-n", "16"]), Run.MODELS["qat"], "is missing", "cnnedge quantize"
    )
    assert "model_int8" in err
    assert tree(run) == before


# ------------------------------------------------------------------ 11: run-level locks
def hold(folder: Path, command: str) -> subprocess.Popen:
    """Another process that holds ``folder``'s lock until it is killed."""
    code = (
        "import sys, time; from cnnedge.locks import folder_lock; "
        "lock = folder_lock(sys.argv[1], sys.argv[2]); lock.__enter__(); "
        "print('held', flush=True); "
        "time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder), command], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize(
    "cmd",
    [
        ["export", "RUN", "--format", "tflite", "--precision", "fp32", "--verify", "0"],
        ["verify", "RUN", "-n", "16"],
        ["quantize", "RUN", "--epochs", "1"],
        ["bench", "RUN", "--quick", "--runtime", "litert", "--threads", "1"],
        ["train", "--resume", "RUN"],
        ["train", "--recipe", "fashion_mnist_tiny", "--runs-dir", "RUNS", "--overwrite"],
    ],
)
def test_a_run_in_use_is_refused_naming_its_holder(run, cmd, capsys):
    state = json.loads((run / Run.STATE).read_text())
    (run / Run.STATE).write_text(json.dumps({**state, "finished": False}))  # resumable
    holder = hold(run, "cnnedge export")
    try:
        before = tree(run)
        args = [str(run) if a == "RUN" else str(run.parents[1]) if a == "RUNS" else a for a in cmd]
        err = one_error(
            capsys,
            main(args),
            f"{run} is in use by `cnnedge export` (pid {holder.pid}, since ",
            "wait for it or stop it",
        )
        assert tree(run) == before, err
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_blocks_no_one(tmp_path):
    holder = hold(tmp_path, "cnnedge train")
    with pytest.raises(CnnedgeError, match="in use by `cnnedge train`"):
        with locks.folder_lock(tmp_path, "cnnedge verify"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with Run(tmp_path).lock("cnnedge verify"):
        with Run(tmp_path).lock("cnnedge export"):  # re-entrant: export runs verify
            assert (tmp_path / Run.LOCK).is_file()
    assert not (tmp_path / Run.LOCK).exists()


def test_export_removes_only_the_staging_of_dead_exports(tmp_path):
    from cnnedge.export import STAGE_PREFIX, clear_stale

    live, dead = tmp_path / f"{STAGE_PREFIX}live", tmp_path / f"{STAGE_PREFIX}dead"
    for d in (live, dead):
        d.mkdir()
        (d / "model_fp32.tflite").write_bytes(b"half")
    fd = locks.hold(live)  # an export still writing
    try:
        clear_stale(tmp_path)
        assert live.is_dir() and not dead.exists()
    finally:
        os.close(fd)
    clear_stale(tmp_path)
    assert not live.exists()


def test_check_output_refuses_inputs_and_folders(tmp_path):
    from cnnedge.files import check_output

    (tmp_path / "in").mkdir()
    img = tmp_path / "in" / "x.png"
    img.write_bytes(np.zeros(4, np.uint8).tobytes())
    link = tmp_path / "link.json"
    link.symlink_to(img)
    for path, kw, needle in [
        (img, {"inputs": [tmp_path / "in"]}, "inputs"),
        (link, {"inputs": [img]}, "inputs"),
        (tmp_path / "in", {}, "is a folder"),
        (img, {"folder": True}, "not a folder"),
    ]:
        with pytest.raises(CnnedgeError, match=needle):
            check_output(path, **kw)
    assert (
        check_output(tmp_path / "in" / "new.json", inputs=[tmp_path / "in"], suffixes=(".png",))
        == tmp_path / "in" / "new.json"
    )
