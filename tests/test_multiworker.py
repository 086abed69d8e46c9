"""`--strategy multiworker` for real: two worker processes on 127.0.0.1 (TF_CONFIG), a tiny
model, a few steps. Only the chief writes the run directory; when a worker is lost, restarting
both with the same command continues from the last finished epoch (BackupAndRestore)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import cli

EPOCHS = 6


def _ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start(index, ports, root, data, log):
    cfg = {
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index},
    }
    args = [
        "train",
        "--recipe",
        "fashion_mnist_tiny",
        "--runs-dir",
        str(root),
        "--name",
        "mw",
        "--strategy",
        "multiworker",
        "--set",
        f"data.dataset={data}",
        "--set",
        "model.name=gmp_xs",
        "--set",
        f"train.epochs={EPOCHS}",
        "--set",
        "train.steps_per_epoch=20",
        "--set",
        "train.batch_size=32",
        "--set",
        "train.eval_images=64",
        "--set",
        "qat.enabled=false",
    ]
    env = {**os.environ, "TF_CONFIG": json.dumps(cfg), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "cnnedge", *args],
        env=env,
        text=True,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )


def _wait_epoch(state_path, n, procs, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if state_path.is_file():
            try:
                if json.loads(state_path.read_text()).get("epoch", 0) >= n:
                    return
            except ValueError:
                pass
        assert all(p.poll() is None for p in procs), "a worker ended early"
        time.sleep(0.2)
    raise AssertionError("no epoch finished in time")


def test_two_workers_and_a_lost_worker(easy_idx, tmp_path):
    run = tmp_path / "fashion_mnist_tiny" / "mw"
    ports = _ports(2)
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    procs = [_start(i, ports, tmp_path, easy_idx, logs[i]) for i in range(2)]
    try:
        _wait_epoch(run / "state.json", 2, procs)
        procs[1].send_signal(signal.SIGKILL)  # a worker is lost; the job is restarted
        procs[0].send_signal(signal.SIGKILL)
    finally:
        for p in procs:
            p.wait(timeout=60)
    done = json.loads((run / "state.json").read_text())["epoch"]
    assert 2 <= done < EPOCHS
    assert (tmp_path / "fashion_mnist_tiny" / "mw.backup").is_dir()

    logs = [tmp_path / f"again{i}.log" for i in range(2)]
    procs = [_start(i, ports, tmp_path, easy_idx, logs[i]) for i in range(2)]
    rcs = [p.wait(timeout=300) for p in procs]
    out = [log.read_text() for log in logs]
    assert rcs == [0, 0], [o[-3000:] for o in out]
    assert f"Epoch {done + 1}/{EPOCHS}" in out[0] and "Epoch 1/" not in out[0], out[0][-3000:]
    state = json.loads((run / "state.json").read_text())
    assert state["finished"] and state["epoch"] == EPOCHS
    rows = (run / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, EPOCHS + 1))
    # only the chief wrote: one run directory, no worker copies left anywhere
    assert sorted(p.name for p in run.parent.iterdir()) == ["mw"]
    assert not [p for p in run.rglob("*worker*")]
    env = json.loads((run / "env.json").read_text())
    assert env["strategy"] == "multiworker"


TINY_MULTIWORKER = ("train", "--recipe", "fashion_mnist_tiny", "--strategy", "multiworker", "--runs-dir")


def test_bad_tf_config_is_one_line(tmp_path):
    r = cli(*TINY_MULTIWORKER, str(tmp_path), env={"TF_CONFIG": "{oops"})
    assert r.returncode == 2 and "TF_CONFIG is not a cluster description" in r.stderr
    assert "Traceback" not in r.stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "sets, says",
    [
        (["train.ema=0.999"], "train.ema does not work multi-worker; set train.ema=0"),
        (["augment.cutmix=1.0"], "augment.mixup/cutmix does not work multi-worker; set augment.mix_prob=0"),
        (["train.ema=0.999", "augment.mixup=0.2"], "train.ema and augment.mixup/cutmix do not work"),
    ],
)
def test_weight_ema_and_mixing_are_refused_before_anything_is_written(tmp_path, sets, says):
    cfg = {"cluster": {"worker": [f"127.0.0.1:{_ports(1)[0]}"]}, "task": {"type": "worker", "index": 0}}
    sets = [a for s in sets for a in ("--set", s)]
    r = cli(
        *TINY_MULTIWORKER,
        str(tmp_path),
        *sets,
        env={"TF_CONFIG": json.dumps(cfg), "CUDA_VISIBLE_DEVICES": ""},
    )
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not list(tmp_path.iterdir())


@pytest.fixture(autouse=True)
def _no_worker_folders_left():
    import tempfile
    from pathlib import Path

    before = set(Path(tempfile.gettempdir()).glob("cnnedge-worker-*"))
    yield
    assert set(Path(tempfile.gettempdir()).glob("cnnedge-worker-*")) <= before
