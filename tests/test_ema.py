"""Weight EMA (``train.ema``): best.keras holds the averaged weights, last.keras the raw ones
(with the optimizer), ema.npz the average so far, which a resumed run continues."""

import json

import numpy as np
import pytest
from helpers import small_recipe

from cnnedge.errors import CnnedgeError


def test_best_is_the_average_and_resume_continues_it(easy_idx, tmp_path):
    from cnnedge import models
    from cnnedge.recipe import check
    from cnnedge.train import train
    from cnnedge.train.ema import weight_ema

    res = train(small_recipe(easy_idx, **{"train.ema": 0.9}), runs_dir=tmp_path, name="e", verbose=0)
    run = res.run_dir
    state = json.loads((run / "state.json").read_text())
    with np.load(run / "ema.npz") as saved:
        assert float(saved["step"]) == 2 * 20  # one update per step
        shadow = [saved[f"w{k}"] for k in range(len(saved.files) - 1)]
    best, last = models.load_model(run / "best.keras"), models.load_model(run / "last.keras")
    assert not all(np.array_equal(a, b) for a, b in zip(best.get_weights(), last.get_weights()))
    if state["best_epoch"] == 2:  # the average after the last epoch is the best model
        for a, b in zip(best.weights, shadow):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-6, atol=1e-7)
    assert res.summary["test_accuracy"] > 0.6
    # a resumed run starts from the saved average
    cb = weight_ema(last, 0.9, run / "ema.npz")
    assert float(cb.step.numpy()) == 40.0
    np.testing.assert_allclose(cb.shadow[-1].numpy(), shadow[-1])
    cb.swap()  # swapping twice is the identity
    cb.swap()
    assert all(
        np.array_equal(a, b)
        for a, b in zip(last.get_weights(), models.load_model(run / "last.keras").get_weights())
    )
    with pytest.raises(CnnedgeError, match="train.ema"):
        check(small_recipe(easy_idx, **{"train.ema": 1.0}))


def test_recompute_bn_is_the_average_of_batch_statistics():
    from cnnedge.backend import keras
    from cnnedge.train.ema import recompute_bn

    x_in = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(3, 3, name="c")(x_in)
    model = keras.Model(x_in, keras.layers.BatchNormalization(momentum=0.9, name="bn")(conv))
    rng = np.random.default_rng(0)
    batches = [rng.normal(k, 1 + k, (8, 6, 6, 2)).astype("float32") for k in range(3)]
    feats = [keras.Model(x_in, conv)(b).numpy().reshape(-1, 3) for b in batches]
    assert recompute_bn(model, iter(batches)) == 3 * 8
    bn = model.get_layer("bn")
    np.testing.assert_allclose(
        bn.moving_mean.numpy(), np.mean([f.mean(0) for f in feats], 0), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        bn.moving_variance.numpy(),  # unbiased per-batch variances
        np.mean([f.var(0, ddof=1) for f in feats], 0),
        rtol=1e-4,
    )
    assert bn.momentum == 0.9  # restored


def test_ema_bn_images_recomputes_best_and_reports_it(easy_idx, tmp_path):
    from cnnedge.recipe import check
    from cnnedge.train import train

    r = small_recipe(easy_idx, **{"train.ema": 0.9, "train.ema_bn_images": 64})
    res = train(r, runs_dir=tmp_path, name="bn", verbose=0)
    bn = res.summary["ema_bn"]
    assert bn["images"] == 64 and bn["split"] == "val"
    state = json.loads((res.run_dir / "state.json").read_text())
    assert state["ema_bn"] == bn and bn["best_epoch"] == state["best_epoch"]
    # best.keras's BN statistics are the recomputed ones when kept, the averaged ones otherwise
    from cnnedge import models

    best = models.load_model(res.run_dir / "best.keras")
    with np.load(res.run_dir / "ema.npz") as saved:
        shadow = [saved[f"w{k}"] for k in range(len(saved.files) - 1)]
    means = [k for k, w in enumerate(best.weights) if "moving_mean" in w.name]
    same = all(np.allclose(best.weights[k].numpy(), shadow[k]) for k in means)
    if state["best_epoch"] == 2:  # the last average is the best model
        assert same != bn["kept"]
    from cnnedge.evaluate import evaluate_run  # best.keras is the model that scored better

    kept = evaluate_run(res.run_dir, split="val").accuracy
    assert kept == pytest.approx(max(bn["accuracy_after"], bn["accuracy_before"]))
    with pytest.raises(CnnedgeError, match="set train.ema too"):
        check(small_recipe(easy_idx, **{"train.ema_bn_images": 64}))
