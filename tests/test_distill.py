"""Knowledge distillation (cnnedge.distill, recipe.distill): the loss against a NumPy reference,
the label-half accuracy, teacher targets in the pipeline, a distilled run that resumes, and
bad teacher settings. Small generated IDX data (seconds)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import cli, small_recipe

from cnnedge.backend import tf
from cnnedge.distill import DistillLoss, LabelAccuracy, with_teacher_targets
from cnnedge.errors import CnnedgeError
from cnnedge.recipe import apply_overrides


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize(
    "alpha,temperature,ls", [(0.9, 4.0, 0.0), (0.5, 2.0, 0.1), (0.0, 4.0, 0.0), (1.0, 1.0, 0.0)]
)
def test_distill_loss_matches_numpy(alpha, temperature, ls):
    rng = np.random.default_rng(1)
    k, n = 5, 8
    labels = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
    teacher = rng.normal(0, 3, (n, k)).astype(np.float32)
    student = rng.normal(0, 3, (n, k)).astype(np.float32)
    smooth = labels * (1 - ls) + ls / k
    ce = -(smooth * _log_softmax(student)).sum(-1)
    p_t = np.exp(_log_softmax(teacher / temperature))
    kl = (p_t * (_log_softmax(teacher / temperature) - _log_softmax(student / temperature))).sum(-1)
    want = ((1 - alpha) * ce + alpha * temperature**2 * kl).mean()
    loss = DistillLoss(k, temperature, alpha, label_smoothing=ls)
    got = float(loss(np.concatenate([labels, teacher], -1), student))
    assert got == pytest.approx(want, rel=1e-5)
    # a student equal to its teacher pays nothing for the KD term
    if alpha == 1.0:
        assert float(loss(np.concatenate([labels, teacher], -1), teacher)) == pytest.approx(0, abs=1e-5)
    # the config round-trips (checkpoints are re-compiled from it on --resume)
    again = DistillLoss.from_config(loss.get_config())
    assert (again.num_classes, again.temperature, again.alpha, again.label_smoothing) == (
        k,
        temperature,
        alpha,
        ls,
    )


def test_label_accuracy_ignores_teacher_half():
    labels = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]
    teacher = np.eye(3, dtype=np.float32)[[1, 1, 1, 1]] * 10  # agrees with the student on all 4
    student = np.eye(3, dtype=np.float32)[[0, 1, 1, 1]]  # 2 of 4 right against the labels
    m = LabelAccuracy(3)
    m.update_state(np.concatenate([labels, teacher], -1), student)
    assert float(m.result()) == pytest.approx(0.5)


def test_teacher_targets_are_mean_logits_of_the_same_batch():
    x = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3))
    y = tf.one_hot([0, 1, 2, 0], 3)
    a = lambda v, training: v * 2.0  # noqa: E731  (stand-ins for Keras models)
    b = lambda v, training: v + 1.0  # noqa: E731
    ds = with_teacher_targets(tf.data.Dataset.from_tensors((x, y)), [a, b])
    xs, target = next(iter(ds))
    np.testing.assert_allclose(xs, x)
    np.testing.assert_allclose(target[:, :3], y)
    np.testing.assert_allclose(target[:, 3:], (x * 2.0 + x + 1.0) / 2.0)


def test_distilled_run_trains_and_resumes(easy_idx, small_run, tmp_path, monkeypatch):
    import cnnedge.train
    from cnnedge import models
    from cnnedge.train import train

    compiled = []  # distill flag of each compile: the float phase and QAT
    real_compile = cnnedge.train.compile_model

    def spy(*a, **kw):
        compiled.append(kw.get("distill", False))
        return real_compile(*a, **kw)

    teacher = small_run.run_dir  # small_recipe(easy_idx), trained once per session
    recipe = apply_overrides(
        small_recipe(easy_idx),
        [
            f"distill.teachers=[{teacher}]",
            "distill.temperature=2",
            "distill.alpha=0.7",
            "qat.enabled=true",
            "qat.epochs=1",
            "qat.calibration_images=64",
        ],
    )
    monkeypatch.setattr(cnnedge.train.optim, "compile_model", spy)  # both phases use it
    res = train(recipe, runs_dir=tmp_path, name="student", verbose=0)
    run = res.run_dir
    assert res.summary["test_accuracy"] > 0.6  # 4 brightness classes: far above chance (0.25)
    assert "distill" in (run / "recipe.yaml").read_text()
    # QAT fine-tunes with the same distillation loss
    assert compiled == [True, True] and res.summary["qat_test_accuracy"] > 0.6
    last = models.load_model(run / "last.keras", compile=True)
    assert isinstance(last.loss, DistillLoss) and last.loss.alpha == 0.7
    # the student's best.keras is a plain model: no teacher inside it
    best = models.load_model(run / "best.keras", compile=False)
    assert best.count_params() == models.load_model(teacher / "best.keras").count_params()
    # ... that a fresh process loads without importing the training code (as export/eval do)
    load = (
        "import sys; from cnnedge.models import load_model; "
        "[load_model(f) for f in sys.argv[1:]]; assert 'cnnedge.distill' not in sys.modules"
    )
    r = subprocess.run(
        [sys.executable, "-c", load, str(run / "best.keras"), str(run / "last.keras")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]

    # a run killed after epoch 1 resumes from last.keras with the distillation loss
    state = json.loads((run / "state.json").read_text())
    state.update(epoch=1, finished=False, float_done=False, phase="float")
    (run / "state.json").write_text(json.dumps(state))
    res2 = train(resume=run, verbose=0)
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and res2.summary["test_accuracy"] > 0.6
    assert res2.summary["qat_test_accuracy"] > 0.6


@pytest.mark.parametrize(
    "sets,message",
    [
        (["distill.teachers=[/nonexistent/run]"], "no model at"),
        (
            ["distill.teachers=[{teacher}]", "distill.alpha=1.5"],
            r"distill.alpha=1.5 is out of range; it must be in \[0, 1\]",
        ),
        (
            ["distill.teachers=[{teacher}]", "distill.temperature=0"],
            r"distill.temperature=0.0 is out of range; it must be in \(0, 100\]",
        ),
    ],
)
def test_bad_distill_settings(easy_idx, tmp_path, sets, message):
    from cnnedge import models
    from cnnedge.train import train

    teacher = tmp_path / "t.keras"
    models.create_model("gmp_xs", num_classes=10, channels=1).save(teacher)
    with pytest.raises(CnnedgeError, match=message):  # values: when set; teachers: by train
        recipe = apply_overrides(small_recipe(easy_idx), [s.format(teacher=teacher) for s in sets])
        train(recipe, runs_dir=tmp_path, name="bad", verbose=0)
    assert not (tmp_path / "fashion_mnist_tiny" / "bad").exists()  # refused before the run dir


def test_teacher_by_reference_checkpoint_name():
    from cnnedge import weights
    from cnnedge.distill import check_config
    from cnnedge.recipe import DistillConfig

    assert check_config(DistillConfig(teachers=("fashion_mnist",))) == [weights.path("fashion_mnist")]


def test_teacher_of_another_dataset_is_refused(easy_idx, tmp_path):
    from cnnedge import models

    teacher = tmp_path / "rgb.keras"
    models.create_model("gmp_xs", num_classes=10, channels=3).save(teacher)
    r = cli(
        "train",
        "--recipe",
        "fashion_mnist_tiny",
        "--runs-dir",
        str(tmp_path),
        "--set",
        f"data.dataset={easy_idx}",
        "--set",
        f"distill.teachers=[{teacher}]",
    )
    assert r.returncode == 2
    assert "maps 3-channel images to 10 classes; the dataset has 1-channel images and 10" in r.stderr
    assert "Traceback" not in r.stderr


def test_teacher_flip_averages_each_teacher_over_the_mirror_view():
    x = tf.constant(np.arange(12, dtype=np.float32).reshape(2, 1, 3, 2))  # NHWC, W = 3
    y = tf.one_hot([0, 1], 6)
    w = tf.constant([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # not mirror-symmetric: flips change logits
    a = lambda v, training: tf.reshape(v, (2, 6)) * w  # noqa: E731
    b = lambda v, training: tf.reshape(v, (2, 6)) ** 2  # noqa: E731
    mirror = x[:, :, ::-1, :]
    want = (a(x, False) + a(mirror, False) + b(x, False) + b(mirror, False)) / 4.0
    _, target = next(iter(with_teacher_targets(tf.data.Dataset.from_tensors((x, y)), [a, b], flip=True)))
    np.testing.assert_allclose(target[:, 6:], want, rtol=1e-6)
    _, plain = next(iter(with_teacher_targets(tf.data.Dataset.from_tensors((x, y)), [a, b])))
    assert not np.allclose(plain[:, 6:], want)  # the flag changes the targets


def test_fine_tune_starts_from_model_weights(easy_idx, small_run, tmp_path):
    from cnnedge import models
    from cnnedge.train import train

    base = small_run.run_dir  # small_recipe(easy_idx), trained once per session
    # learning rate 0: the fine-tuned run's kernels must stay exactly the base run's
    ft = train(
        small_recipe(easy_idx, **{"model.weights": base, "optim.lr": 0.0}),
        runs_dir=tmp_path,
        name="ft",
        verbose=0,
    )
    assert "weights:" in (ft.run_dir / "recipe.yaml").read_text()
    a = models.load_model(base / "best.keras")
    b = models.load_model(ft.run_dir / "best.keras")
    kernels = [(wa, wb) for wa, wb in zip(a.weights, b.weights) if "kernel" in wa.name]
    assert len(kernels) == 5  # rescale (fixed 1/255), 3 convs, logits
    for wa, wb in kernels:
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    assert ft.summary["test_accuracy"] > 0.6  # starts from the trained base, not from scratch
    # a fresh run with lr 0 keeps its random start and does not learn
    fresh = train(small_recipe(easy_idx, **{"optim.lr": 0.0}), runs_dir=tmp_path, name="fresh", verbose=0)
    assert fresh.summary["test_accuracy"] < 0.6


def test_model_weights_of_another_architecture_are_refused(easy_idx, tmp_path):
    from cnnedge import models

    other = tmp_path / "s.keras"
    models.create_model("gmp_s", num_classes=10, channels=1).save(other)
    r = cli(
        "train",
        "--recipe",
        "fashion_mnist_tiny",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "ft",
        "--set",
        f"data.dataset={easy_idx}",
        "--set",
        f"model.weights={other}",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "does not match" in r.stderr and "set model.name to gmp_s" in r.stderr
    r = cli(
        "train",
        "--recipe",
        "fashion_mnist_tiny",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "gone",
        "--set",
        f"data.dataset={easy_idx}",
        "--set",
        "model.weights=/nonexistent",
    )
    assert r.returncode == 2 and "model.weights /nonexistent: no model at" in r.stderr
    assert not (tmp_path / "fashion_mnist_tiny" / "gone").exists()  # refused before the run dir
