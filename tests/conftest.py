"""Fixtures shared by the test modules: generated data and the runs that many modules read,
each trained once per session. Plain helper functions live in helpers.py. At the end, a warning
line when the suite ran over its time budget."""

import time

import numpy as np
import pytest
from helpers import idx_bytes, small_recipe, tree

SUITE_BUDGET_S = 8 * 60  # `make test` on a 2-core machine; a warning, never a failure


@pytest.fixture(scope="session")
def easy_idx(tmp_path_factory):
    """A learnable 28×28 IDX dataset: class k has brightness 30 + 70k (4 classes used).
    Read only: a test that changes it works on a copy."""
    folder = tmp_path_factory.mktemp("easy_idx")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 1200), ("t10k", 200)):
        labels = rng.integers(0, 4, n).astype(np.uint8)
        base = 30 + 70 * labels.astype(np.int32)
        images = np.clip(base[:, None, None] + rng.integers(-12, 13, (n, 28, 28)), 0, 255)
        img, lab = idx_bytes(images.astype(np.uint8), labels)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(img)
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(lab)
    return folder


@pytest.fixture(scope="session")
def small_run(easy_idx, tmp_path_factory):
    """``small_recipe(easy_idx)`` trained once (2 epochs × 20 steps, no QAT): the TrainResult.
    Read only (checked at the end of the session); copy the run directory to change it."""
    from cnnedge.train import train

    res = train(
        small_recipe(easy_idx), runs_dir=tmp_path_factory.mktemp("small_run"), name="small", verbose=0
    )
    before = tree(res.run_dir)
    yield res
    changed = sorted(set(before.items()) ^ set(tree(res.run_dir).items()))
    assert not changed, f"a test changed the shared small_run: {sorted({k for k, _ in changed})}"


@pytest.fixture(scope="session")
def tflm_run(tiny_run, tmp_path_factory):
    """A copy of ``tiny_run`` exported with --format tflm: {run, res, file, bundle}. Shared by
    the TFLM and firmware tests; read only."""
    import shutil

    from cnnedge.export import export

    out = tmp_path_factory.mktemp("tflm")
    shutil.copytree(tiny_run["run"], out / "run")
    res = export(out / "run", formats="tflm", verify=0)
    return {
        "run": out / "run",
        "res": res,
        "file": out / "run" / "export" / "model_int8_static.tflite",
        "bundle": out / "run" / "export" / "tflm",
    }


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One small trained run shared by the export, verify, runtime, bench and demo tests.

    The fashion_mnist_tiny recipe (gmp_xs) trained by ``cnnedge.train`` for 2 × 150 steps plus
    one QAT epoch on the real Fashion-MNIST, exported to every format × precision; with 512 test
    images and the Keras float/QAT logits on them. Skipped when the dataset files are absent.
    """
    from cnnedge import data
    from cnnedge.errors import CnnedgeError
    from cnnedge.export import export
    from cnnedge.recipe import apply_overrides, load_recipe
    from cnnedge.run import Run
    from cnnedge.train import train

    try:
        src = data.open_dataset("fashion-mnist", download=False)
    except CnnedgeError as e:
        pytest.skip(f"Fashion-MNIST not available: {e}")
    root = tmp_path_factory.mktemp("tiny_run")
    recipe = apply_overrides(
        load_recipe("fashion_mnist_tiny"), ["train.steps_per_epoch=150", "qat.enabled=true"]
    )
    run = Run(train(recipe, runs_dir=root / "runs", verbose=0).run_dir)
    results = export(run.path, formats="all", precisions="all", verify=0)
    xs, ys = [], []
    for x, y in src.pipeline("test", batch_size=512, take=512):
        xs.append(x.numpy())
        ys.append(y.numpy())
    x, y = np.concatenate(xs), np.concatenate(ys)
    model, qat = run.model("float"), run.model("qat")
    return {
        "run": run.path,
        "results": list(results),
        "x": x,
        "y": y,
        "model": model,
        "keras": model.predict(x.astype(np.float32), verbose=0),
        "qat": qat.predict(x.astype(np.float32), verbose=0),
    }


# ------------------------------------------------------------------------ the suite's budget
_STARTED = pytest.StashKey[float]()


def pytest_sessionstart(session):
    session.config.stash[_STARTED] = time.monotonic()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """A warning line, never a failure (machine speed varies 3× between runs), when the default
    suite (`make test`: -m "not full") runs over its budget."""
    took = time.monotonic() - config.stash.get(_STARTED, time.monotonic())
    if took > SUITE_BUDGET_S and "not full" in (config.getoption("markexpr") or ""):
        terminalreporter.write_line(
            f"warning: the suite took {took / 60:.1f} min, over its {SUITE_BUDGET_S // 60}-minute budget",
            yellow=True,
            bold=True,
        )
