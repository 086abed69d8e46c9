"""Mixup and CutMix (``augment.mixup``, ``augment.cutmix``): what a mixed batch holds, the ramp
over the epochs, the same draws after a resume, and a run that trains with them."""

import json

import numpy as np
import pytest
from helpers import cli, small_recipe

from cnnedge.errors import CnnedgeError

N = 6


def _batch():
    """Image i is constant 10·i in every pixel, label i: the mixing weights can be read back."""
    x = np.stack([np.full((8, 10, 3), 10.0 * i, np.float32) for i in range(N)])
    return x, np.eye(N, dtype=np.float32)


def _mix(p, mixup, cutmix, seed=(3, 5)):
    from cnnedge.backend import tf
    from cnnedge.data.mix import mix_batch

    out, lab = mix_batch(*_batch(), p, tf.constant(seed, tf.int64), mixup, cutmix)
    return out.numpy(), lab.numpy()


@pytest.mark.parametrize("mixup, cutmix", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_each_image_is_mixed_with_its_partner_in_the_proportion_of_its_label(mixup, cutmix):
    x, _ = _batch()
    out, lab = _mix(1.0, mixup, cutmix)
    np.testing.assert_allclose(lab.sum(1), 1.0, rtol=1e-6)
    mixed = 0
    for i in range(N):
        j = N - 1 - i  # the partner: the batch read backwards
        assert set(np.flatnonzero(lab[i] > 1e-6)) <= {i, j}
        if i == j:
            continue
        mixed += lab[i, i] < 1
        np.testing.assert_allclose(
            out[i].mean(), lab[i, i] * x[i, 0, 0, 0] + lab[i, j] * x[j, 0, 0, 0], rtol=1e-5
        )
        cut = set(np.unique(out[i])) <= {x[i, 0, 0, 0], x[j, 0, 0, 0]}
        if not mixup:  # CutMix alone: whole pixels of one image or the other, a box of the partner
            assert cut
            ys, xs = np.nonzero(out[i][..., 0] == x[j, 0, 0, 0])
            if len(ys):
                assert len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
                assert len(ys) / 80 == pytest.approx(lab[i, j], abs=1e-6)
        elif not cutmix:  # mixup alone: every pixel blended
            assert len(np.unique(out[i])) == 1
    assert mixed == N  # p = 1: every image with a partner other than itself


def test_nothing_mixed_at_p_zero_and_draws_follow_the_seed():
    x, y = _batch()
    out, lab = _mix(0.0, 0.4, 1.0)
    assert np.array_equal(out, x) and np.array_equal(lab, y)
    a, b, c = _mix(1.0, 0.4, 1.0), _mix(1.0, 0.4, 1.0), _mix(1.0, 0.4, 1.0, seed=(3, 6))
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
    share = np.mean([(_mix(0.5, 0.4, 0.0, seed=(1, k))[1].max(1) < 1).mean() for k in range(40)])
    assert 0.35 < share < 0.65  # about half the images (N even: nobody is its own partner)


def test_ramp_and_a_resumed_stream_mixes_as_the_uninterrupted_one():
    from cnnedge.backend import tf
    from cnnedge.data.mix import mix_batches, mix_probability

    p = [float(mix_probability(e, 10, 0.5, (0.2, 0.6))) for e in range(10)]
    assert p == pytest.approx([0, 0, 0, 0.125, 0.25, 0.375, 0.5, 0.5, 0.5, 0.5])
    assert [float(mix_probability(e, 4, 1.0, (0.5, 0.5))) for e in range(4)] == [0, 0, 1, 1]
    x, y = _batch()
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    kw = dict(mixup=0.4, cutmix=1.0, prob=1.0, ramp=(0.5, 0.5), epochs=4, steps=3, seed=7)
    whole = [b[0].numpy() for b in mix_batches(ds, first_epoch=0, **kw).take(12)]
    assert [np.array_equal(b, x) for b in whole] == [True] * 6 + [False] * 6  # epochs 3 and 4 mix
    resumed = [b[0].numpy() for b in mix_batches(ds, first_epoch=2, **kw).take(6)]
    assert all(np.array_equal(a, b) for a, b in zip(whole[6:], resumed))


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("augment.mix_ramp", "[0.8,0.2]", "augment.mix_ramp=(0.8, 0.2) is out of range"),
        ("augment.mix_prob", "1.5", "augment.mix_prob=1.5 is out of range; it must be in [0, 1]"),
        ("augment.cutmix", "-1", "augment.cutmix=-1.0 is out of range"),
        ("augment.mix_ramp", "[1,1]", "augment.mix_ramp=(1.0, 1.0) is out of range"),
    ],
)
def test_out_of_range_mixing_is_refused(easy_idx, key, value, says):
    from cnnedge.recipe import check

    with pytest.raises(
        CnnedgeError,
        match=f"^recipe fashion_mnist_tiny: {says}".replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        check(small_recipe(easy_idx, **{key: value}))


def test_a_run_mixes_late_resumes_on_its_epoch_and_quantizes_unmixed(easy_idx, tmp_path, monkeypatch):
    from cnnedge import train as train_mod
    from cnnedge.run import open_data

    recipe = small_recipe(
        easy_idx,
        **{
            "augment.mixup": 0.4,
            "augment.cutmix": 1.0,
            "augment.mix_ramp": "[0.5,0.5]",
            "train.epochs": 3,
            "qat.enabled": "true",
            "qat.epochs": 1,
        },
    )
    train_ds, _, steps = train_mod.datasets(open_data(recipe), recipe)
    soft = [float((y.numpy().max(1) < 1).mean()) for _, y in train_ds.take(3 * steps)]
    # the last epoch mixes (a partner of the same class leaves a one-hot label: 4 classes)
    assert max(soft[: 2 * steps]) == 0 and min(soft[2 * steps :]) > 0 and np.mean(soft[2 * steps :]) > 0.5
    calls = []
    real = train_mod.datasets
    monkeypatch.setattr(train_mod.inputs, "datasets", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    res = train_mod.train(recipe, runs_dir=tmp_path, name="m", verbose=0)
    assert res.summary["test_accuracy"] > 0.6 and res.summary["epochs"] == 3
    assert [c.get("mix", True) for c in calls] == [True, False]  # float epochs, then QAT unmixed
    assert calls[0]["first_epoch"] == 0
    # a run resumed after epoch 2 (and one from its best epoch) continues the ramp where it was
    state = json.loads((res.run_dir / "state.json").read_text())
    for over, resume in (({"epoch": 2}, {}), ({"epoch": 3, "best_epoch": 1}, {"from_best": True})):
        (res.run_dir / "state.json").write_text(
            json.dumps({**state, **over, "finished": False, "phase": "float", "float_done": False})
        )
        calls.clear()
        train_mod.train(resume=res.run_dir, verbose=0, **resume)
        assert calls[0]["first_epoch"] == (1 if resume else 2)


def test_mixing_reaches_fit_epoch_by_epoch(easy_idx):
    """fit keeps one iterator over the repeated batches: the batch counter is the step count."""
    from cnnedge import train as train_mod
    from cnnedge.backend import keras, tf
    from cnnedge.run import open_data

    recipe = small_recipe(
        easy_idx,
        **{
            "augment.cutmix": 1.0,
            "augment.mix_prob": 1.0,
            "augment.mix_ramp": "[0.25,0.75]",
            "train.epochs": 4,
        },
    )
    train_ds, _, steps = train_mod.datasets(open_data(recipe), recipe)

    def mixed_share(y_true, y_pred):
        return tf.reduce_mean(tf.cast(tf.reduce_max(y_true, 1) < 1, tf.float32))

    model = keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True), [mixed_share])
    h = model.fit(train_ds, epochs=4, steps_per_epoch=steps, verbose=0).history["mixed_share"]
    assert h[0] == h[1] == 0 and 0.15 < h[2] < h[3] and h[3] > 0.5  # mix shares 0, 0, ½, 1


def test_class_weights_weigh_a_mixed_image_by_its_label_shares(easy_idx):
    from cnnedge import train as train_mod
    from cnnedge.run import open_data

    recipe = small_recipe(easy_idx, **{"train.class_weights": "true", "augment.mixup": 0.4})
    src = open_data(recipe)
    w = train_mod.class_weights(src, recipe)
    x, y, sw = next(iter(train_mod.datasets(src, recipe)[0]))
    np.testing.assert_allclose(sw.numpy(), y.numpy() @ np.array([w[i] for i in range(10)]), rtol=1e-5)


def test_mixing_padded_variable_size_batches_is_refused(easy_idx):
    from cnnedge.recipe import check

    with pytest.raises(CnnedgeError, match="set data.batch_mode=bucket"):
        check(small_recipe(easy_idx, **{"augment.cutmix": 1.0, "data.keep_size": "true"}))
    check(
        small_recipe(
            easy_idx, **{"augment.cutmix": 1.0, "data.keep_size": "true", "data.batch_mode": "bucket"}
        )
    )


@pytest.mark.parametrize("mixed, best", [(True, 3), (False, 1)])
def test_without_validation_the_latest_mixed_epoch_is_kept(tmp_path, mixed, best):
    """Accuracy on mixed labels falls as the ramp mixes more: it must not pick the checkpoint."""
    from cnnedge.backend import keras
    from cnnedge.run import Run
    from cnnedge.train.callbacks import run_checkpoint

    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer="adam", loss="mse")
    state = {"epoch": 0}
    cb = run_checkpoint(Run.create(tmp_path, "r", "x"), state, mixed=mixed)
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, acc in enumerate([0.9, 0.6, 0.5]):
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {"loss": 1.0, "accuracy": acc})
    assert (state["best_epoch"], state["best_score"]) == (best, [0.9, 0.6, 0.5][best - 1])


def test_without_validation_a_mixed_run_reports_an_accuracy(easy_idx, tmp_path):
    from cnnedge.train import train

    res = train(
        small_recipe(easy_idx, **{"augment.cutmix": 1.0, "data.val_fraction": 0, "train.epochs": 3}),
        runs_dir=tmp_path,
        verbose=0,
    )
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["best_epoch"] == 3 and 0 <= summary["best_val_accuracy"] <= 1


def test_a_ramp_that_starts_after_the_last_epoch_begins_is_refused(easy_idx):
    from cnnedge.recipe import check

    with pytest.raises(CnnedgeError, match="no image would be mixed"):
        check(
            small_recipe(
                easy_idx, **{"augment.cutmix": 1.0, "train.epochs": 10, "augment.mix_ramp": "[0.9,1.0]"}
            )
        )
    check(
        small_recipe(
            easy_idx, **{"augment.cutmix": 1.0, "train.epochs": 10, "augment.mix_ramp": "[0.85,1.0]"}
        )
    )


def test_bad_mix_ramp_from_the_command_line(tmp_path):
    r = cli(
        "train",
        "--recipe",
        "fashion_mnist_tiny",
        "--runs-dir",
        str(tmp_path / "x"),
        "--set",
        "augment.mix_ramp=[0.9,0.1]",
    )
    assert r.returncode == 2 and "augment.mix_ramp" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()
