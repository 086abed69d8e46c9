"""Where a training step's time goes on this CPU: input pipeline, step, threads, layer kinds.

    python docs/scripts/profile_train_step.py --recipe cifar10_mix [--steps 40]
    python docs/scripts/profile_train_step.py --recipe cifar10 --set model.name=gmp_res10

Each configuration runs in a fresh process (TensorFlow fixes its thread pools at start-up):
1. the recipe's training input alone (``cnnedge.train.datasets``: cached decode, augmentation,
   one-hot, mixing) in images/s, with 1 and 2 intra-op threads;
2. the recipe's model's training step alone (``fit`` on one in-memory batch, repeated) in images/s,
   for intra-op threads 1 and 2 and batch sizes 128 and 256;
3. forward + backward of single layers at the shapes the model has (dense 3×3 at full
   resolution, depthwise 3×3, pointwise 1×1, batch norm + ReLU, add) in ms per batch of 128 and
   per million MACs, on all threads: which layer kinds oneDNN runs well.
``--set KEY=VALUE`` overrides the recipe as ``cnnedge train --set`` does: another model for the
step rows (32×32×3, batch 128 and 256 always), another batch size or augmentation for the input
rows. Prints markdown tables; the machine is the one ``lscpu`` names.
"""

import argparse
import json
import subprocess
import sys
import time


def _tf(threads: int):
    from cnnedge.backend import tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def _recipe(name: str, overrides: list):
    from cnnedge.recipe import apply_overrides, check, load_recipe

    return check(apply_overrides(load_recipe(name), overrides))


def pipeline(recipe_name: str, overrides: list, threads: int, steps: int) -> dict:
    _tf(threads)
    from cnnedge.run import open_data
    from cnnedge.train import datasets

    recipe = _recipe(recipe_name, overrides)
    src = open_data(recipe)
    ds, _, per_epoch = datasets(src, recipe, first_epoch=recipe.train.epochs - 1)  # mixing on
    it = iter(ds)
    for _ in range(per_epoch + 2):  # one whole epoch first: it fills the decode cache
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return {"images_per_s": steps * recipe.train.batch_size / (time.perf_counter() - t0)}


def step(recipe_name: str, overrides: list, threads: int, steps: int, batch: int) -> dict:
    tf = _tf(threads)
    from cnnedge import models
    from cnnedge.train import compile_model

    recipe = _recipe(recipe_name, overrides)
    model = models.create_model(recipe.model.name, num_classes=10, channels=3, **recipe.model.kwargs)
    compile_model(model, recipe, steps_per_epoch=100)
    x = tf.random.uniform([batch, 32, 32, 3], 0, 255)
    y = tf.one_hot(tf.random.uniform([batch], 0, 10, tf.int32), 10)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # trace and warm up
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return {"images_per_s": steps * batch / (time.perf_counter() - t0)}


LAYERS = (  # (name, input H×W×C, layer factory, MACs per image)
    (
        "Conv2D 3×3, 16→16, 32×32",
        (32, 32, 16),
        lambda k: k.layers.Conv2D(16, 3, padding="same"),
        32 * 32 * 16 * 16 * 9,
    ),
    (
        "DepthwiseConv2D 3×3, 96 ch, 16×16",
        (16, 16, 96),
        lambda k: k.layers.DepthwiseConv2D(3, padding="same"),
        16 * 16 * 96 * 9,
    ),
    ("Conv2D 1×1, 96→96, 16×16", (16, 16, 96), lambda k: k.layers.Conv2D(96, 1), 16 * 16 * 96 * 96),
    (
        "BatchNorm + ReLU, 16×16×96",
        (16, 16, 96),
        lambda k: k.Sequential([k.layers.BatchNormalization(), k.layers.ReLU()]),
        0,
    ),
    (
        "BatchNorm + ReLU, 32×32×16",
        (32, 32, 16),
        lambda k: k.Sequential([k.layers.BatchNormalization(), k.layers.ReLU()]),
        0,
    ),
)


def layers(steps: int) -> list:
    tf = _tf(0)
    from cnnedge.backend import keras

    rows = []
    for name, shape, make, macs in LAYERS:
        layer = make(keras)
        x = tf.random.normal([128, *shape])

        @tf.function
        def fwd_bwd(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=True))
            return tape.gradient(loss, [x, *layer.trainable_variables])

        for _ in range(3):
            fwd_bwd(x)
        t0 = time.perf_counter()
        for _ in range(steps):
            fwd_bwd(x)
        ms = (time.perf_counter() - t0) / steps * 1e3
        rows.append({"layer": name, "ms": ms, "mmacs": macs * 128 / 1e6})
    return rows


def _child(args: list) -> dict:
    r = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(args)], capture_output=True, text=True
    )
    if r.returncode:
        sys.exit(f"{args[0]} {args[1:]} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="cifar10")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--child")
    a = ap.parse_args()
    if a.child:
        kind, *rest = json.loads(a.child)
        print(json.dumps({"pipeline": pipeline, "step": step, "layers": layers}[kind](*rest)))
        return
    title = " ".join([a.recipe, *(f"--set {o}" for o in a.set)])
    print(f"| {title} | intra-op threads | batch | images/s |\n|---|---|---|---|")
    for threads in (1, 2):
        r = _child(["pipeline", a.recipe, a.set, threads, a.steps])
        print(f"| training input alone | {threads} | recipe | {r['images_per_s']:,.0f} |")
    for threads in (1, 2):
        for batch in (128, 256):
            r = _child(["step", a.recipe, a.set, threads, max(5, a.steps * 128 // batch), batch])
            print(f"| training step alone | {threads} | {batch} | {r['images_per_s']:,.0f} |")
    print(
        "\n| layer (forward + backward, batch 128, all threads) | ms | M MACs | ms per G MAC |\n"
        "|---|---|---|---|"
    )
    for r in _child(["layers", a.steps]):
        per = f"{r['ms'] / r['mmacs'] * 1e3:,.1f}" if r["mmacs"] else "–"
        print(f"| {r['layer']} | {r['ms']:.2f} | {r['mmacs']:,.0f} | {per} |")


if __name__ == "__main__":
    main()
