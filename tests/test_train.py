"""`cnnedge train` / `cnnedge eval`: run directory, refusal, resume after SIGKILL and SIGINT,
tf.distribute strategies, CLI errors. Trains on a small generated IDX dataset (seconds)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, small_recipe

from cnnedge.cli import main
from cnnedge.errors import CnnedgeError
from cnnedge.recipe import apply_overrides, load_recipe

RUN_FILES = [
    "recipe.yaml",
    "env.json",
    "labels.json",
    "metrics.csv",
    "best.keras",
    "last.keras",
    "state.json",
    "curves.png",
    "confusion.png",
    "summary.json",
    "tb",
]


def test_train_writes_run_directory(easy_idx, tmp_path):
    from cnnedge.train import train

    res = train(small_recipe(easy_idx), runs_dir=tmp_path, name="t1", verbose=0)
    run = res.run_dir
    assert run == tmp_path / "fashion_mnist_tiny" / "t1"
    for f in RUN_FILES:
        assert (run / f).exists(), f
    s = json.loads((run / "summary.json").read_text())
    assert s["params"] == 24283 and s["macs_per_image"] > 0
    assert s["test_images"] == 200 and s["epochs"] == 2
    assert s["test_accuracy"] > 0.6  # 4 brightness classes: far above chance (0.25)
    assert json.loads((run / "labels.json").read_text()) == [str(i) for i in range(10)]
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,loss,accuracy,val_loss,val_accuracy") and len(rows) == 3
    state = json.loads((run / "state.json").read_text())
    assert state["finished"] and state["epoch"] == 2
    env = json.loads((run / "env.json").read_text())
    assert env["tensorflow"].startswith("2.21") and env["seed"] == 0

    # the run refuses to be overwritten by accident, and finished runs are not resumed
    with pytest.raises(CnnedgeError, match="already exists"):
        train(small_recipe(easy_idx), runs_dir=tmp_path, name="t1", verbose=0)
    with pytest.raises(CnnedgeError, match="already finished"):
        train(resume=run, verbose=0)

    # eval of the run reproduces the summary's accuracy
    from cnnedge.evaluate import evaluate_run

    ev = evaluate_run(run, split="test")
    assert ev.accuracy == pytest.approx(s["test_accuracy"])
    assert np.asarray(ev.confusion).sum() == 200


def test_eval_cli_and_errors(small_run, tmp_path, capsys):
    run = small_run.run_dir  # read only: eval writes where -o says
    assert main(["eval", str(run), "-o", str(tmp_path / "ev.json")]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and (tmp_path / "ev.png").is_file()
    from cnnedge.evaluate import evaluate_run  # the eval JSON is the Evaluation's to_dict()

    written = json.loads((tmp_path / "ev.json").read_text())
    assert written == evaluate_run(run).to_dict()
    assert list(written) == [
        "split",
        "tta",
        "n",
        "accuracy",
        "per_class_accuracy",
        "confusion",
        "data",
        "class_names",
        "model",
    ]
    assert main(["eval", str(run / "best.keras")]) == 2
    assert "needs --data" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nope")]) == 2
    # a 10-class model against a 3-class dataset
    from helpers import write_folder

    write_folder(tmp_path / "three", classes=("a", "b", "c"), per_class=3, size=(28, 28))
    assert main(["eval", str(run / "best.keras"), "--data", str(tmp_path / "three"), "--split", "train"]) == 2
    assert "10 outputs but dataset" in capsys.readouterr().err


def test_eval_flip_tta_averages_image_and_mirror(easy_idx, tmp_path, capsys):
    from cnnedge import models
    from cnnedge.backend import tf
    from cnnedge.data import open_dataset
    from cnnedge.evaluate import evaluate

    model = models.create_model("gmp_xs", num_classes=10, channels=1)
    src = open_dataset(str(easy_idx))
    want = np.zeros((10, 10), dtype=np.int64)
    moved = 0.0
    for x, y in src.pipeline("test", batch_size=64):
        x = tf.cast(x, tf.float32)
        p, q = tf.nn.softmax(model(x)), tf.nn.softmax(model(x[:, :, ::-1, :]))
        np.add.at(want, (y.numpy(), tf.argmax(p + q, -1).numpy()), 1)
        moved = max(moved, float(tf.reduce_max(tf.abs(p - q))))
    assert moved > 1e-4  # the mirror really changes the model's output
    ev = evaluate(model, src, split="test", batch_size=64, tta="flip")
    assert ev.tta == "flip" and ev.confusion == want.tolist()
    path = tmp_path / "m.keras"
    model.save(path)
    assert main(["eval", str(path), "--data", str(easy_idx), "--tta", "flip"]) == 0
    assert "test accuracy with flip TTA" in capsys.readouterr().out
    assert main(["eval", str(path), "--data", str(easy_idx), "--tta", "rot90"]) == 2
    assert "unknown tta 'rot90'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--recipe", "fashion_minst"], "did you mean 'fashion_mnist'"),
        (["train", "--recipe", "fashion_mnist", "--set", "train.epochs=x"], "must be an integer"),
        (["train", "--recipe", "fashion_mnist", "--set", "model.name=gmp_z"], "unknown model"),
        (["train"], "give --data FOLDER"),
        (["train", "--data", "/nonexistent/photos"], "not a folder"),
        (["train", "--resume", "/nonexistent/run"], "not a cnnedge run"),
        (["train", "--recipe", "fashion_mnist", "--set", "data.dataset=/nonexistent/dir"], "error:"),
        (["train", "--recipe", "fashion_mnist", "--strategy", "multiworker"], "TF_CONFIG"),
    ],
)
def test_train_cli_errors(args, message, tmp_path, capsys):
    rc = main([*args, "--runs-dir", str(tmp_path)] if args[-1] != "train" else args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def _wait_for_epoch(path: Path, epoch: int, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stdout.read()}")
        try:
            if json.loads(path.read_text()).get("epoch", 0) >= epoch:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("timed out waiting for an epoch checkpoint")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_resume_after_kill(easy_idx, tmp_path, sig):
    epochs = 6
    args = [
        "train",
        "--recipe",
        "fashion_mnist_tiny",
        "--runs-dir",
        str(tmp_path),
        "--set",
        f"data.dataset={easy_idx}",
        "--set",
        "model.name=gmp_xs",
        "--set",
        f"train.epochs={epochs}",
        "--set",
        "train.steps_per_epoch=30",
        "--set",
        "train.batch_size=32",
        "--set",
        "qat.enabled=false",
    ]
    run = tmp_path / "fashion_mnist_tiny" / "exp"
    # SIG_DFL in the child: a shell without job control starts background jobs (`make test &`)
    # with SIGINT ignored, and Python then never raises KeyboardInterrupt -- the run would finish
    # instead of stopping. A user's Ctrl-C in a terminal always finds the default disposition.
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnedge", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for_epoch(run / "state.json", 1, proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, out
        assert f"cnnedge train --resume {run}" in out
        assert "Traceback" not in out
    state = json.loads((run / "state.json").read_text())
    done = state["epoch"]
    assert 1 <= done < epochs and not state.get("finished")
    # last.keras is a complete, loadable checkpoint (atomic write), with optimizer state
    from cnnedge.models import load_model

    m = load_model(run / "last.keras", compile=True)
    assert int(m.optimizer.iterations.numpy()) == 30 * done

    r = cli("train", "--resume", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Epoch {done + 1}/{epochs}" in r.stdout and f"Epoch {done}/{epochs}" not in r.stdout
    rows = (run / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(x.split(",")[0]) for x in rows] == list(range(1, epochs + 1))
    assert json.loads((run / "state.json").read_text())["finished"]
    assert not list(run.glob(".*.tmp*")), "temporary checkpoint files left behind"


def test_mirrored_strategy_two_logical_cpus(easy_idx, tmp_path):
    r = cli(
        "train",
        "--recipe",
        "fashion_mnist_tiny",
        "--runs-dir",
        str(tmp_path),
        "--strategy",
        "mirrored",
        "--logical-cpus",
        "2",
        "--set",
        f"data.dataset={easy_idx}",
        "--set",
        "train.epochs=1",
        "--set",
        "train.steps_per_epoch=10",
        "--set",
        "train.batch_size=32",
        "--set",
        "qat.enabled=false",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "MirroredStrategy: 2 replicas" in r.stdout
    run = tmp_path / "fashion_mnist_tiny" / "exp"
    env = json.loads((run / "env.json").read_text())
    assert env["replicas"] == 2 and [d[-5:] for d in env["devices"]] == ["CPU:0", "CPU:1"]
    assert (run / "summary.json").is_file()


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_tiny_recipe_on_real_fashion_mnist(tmp_path):
    r = cli(
        "train", "--recipe", "fashion_mnist_tiny", "--runs-dir", str(tmp_path), "--set", "qat.enabled=false"
    )
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / "fashion_mnist_tiny/exp/summary.json").read_text())
    assert s["test_images"] == 1000 and s["dataset"] == "fashion-mnist"
    assert "next: cnnedge" in r.stdout


def test_atomic_write_keeps_old_file_on_full_disk(tmp_path):
    import errno

    from cnnedge.files import atomic_path

    target = tmp_path / "best.keras"
    target.write_bytes(b"previous checkpoint")
    with pytest.raises(CnnedgeError, match="no space left on device writing .*best.keras"):
        with atomic_path(target) as tmp:
            Path(tmp).write_bytes(b"half a checkp")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == b"previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]


def test_disk_full_during_training_keeps_checkpoints(easy_idx, tmp_path, monkeypatch, capsys):
    import errno

    from cnnedge.backend import keras
    from cnnedge.models import load_model

    real_save = keras.Model.save
    calls = {"n": 0}

    def save(self, path, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 1 writes last.keras + best.keras, then the disk is full
            real_save(self, path, *a, **kw)  # a partial file lands in the temp path...
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, path, *a, **kw)

    monkeypatch.setattr(keras.Model, "save", save)
    rc = main(
        [
            "train",
            "--recipe",
            "fashion_mnist_tiny",
            "--runs-dir",
            str(tmp_path),
            "--set",
            f"data.dataset={easy_idx}",
            "--set",
            "train.epochs=3",
            "--set",
            "train.steps_per_epoch=10",
            "--set",
            "train.batch_size=32",
            "--set",
            "qat.enabled=false",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "no space left on device" in err and "Traceback" not in err
    run = tmp_path / "fashion_mnist_tiny" / "exp"
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    load_model(run / "best.keras")  # epoch 1's checkpoints are intact
    load_model(run / "last.keras")
    assert not list(run.glob(".*tmp*")), "temporary files left behind"


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizer_weight_decay_is_decoupled(name):
    """One step with a zero gradient shrinks a weight by exactly lr · weight_decay."""
    from cnnedge.backend import tf
    from cnnedge.train import build_optimizer

    recipe = apply_overrides(
        load_recipe("fashion_mnist_tiny"),
        [f"optim.name={name}", "optim.lr=0.1", "optim.weight_decay=0.05", "optim.schedule=constant"],
    )
    opt = build_optimizer(recipe, steps_per_epoch=10)
    w = tf.Variable([2.0, -4.0])
    opt.apply_gradients([(tf.zeros_like(w), w)])
    np.testing.assert_allclose(w.numpy(), [2.0 * (1 - 0.005), -4.0 * (1 - 0.005)], rtol=1e-6)
    none = build_optimizer(apply_overrides(recipe, ["optim.weight_decay=0"]), 10)
    v = tf.Variable([2.0])
    none.apply_gradients([(tf.zeros_like(v), v)])
    assert v.numpy()[0] == 2.0
