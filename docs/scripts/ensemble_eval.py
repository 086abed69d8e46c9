"""Test accuracy of each model and of their mean logits: what a distillation student learns from.

    python docs/scripts/ensemble_eval.py MODEL MODEL [...] [--data cifar10] [--split test|train]

MODEL is a run directory (its best.keras), a .keras file or a reference checkpoint's name.
`cnnedge.distill` averages its teachers' logits, so the ensemble row is the accuracy of the soft
targets a student would see (single view; the flip column adds each image's mirror, as
``distill.teacher_flip`` does; logits are averaged, where `cnnedge eval --tta flip` averages
softmax outputs, so their flip figures can differ by a few images). Data: --data-dir or
$CNNEDGE_DATA.
"""

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", default="cifar10")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--split", default="test", choices=("test", "train"))
    args = ap.parse_args()

    from cnnedge import models
    from cnnedge.backend import tf
    from cnnedge.data import open_dataset
    from cnnedge.weights import weights_file

    src = open_dataset(args.data, data_dir=args.data_dir)
    nets = [models.load_model(weights_file(m), compile=False) for m in args.models]
    labels, logits = [], []  # logits: per batch, (models, views, batch, classes)
    for x, y in src.pipeline(args.split, batch_size=500):
        x = tf.cast(x, tf.float32)
        views = (x, tf.reverse(x, axis=[2]))
        logits.append(np.stack([[m(v, training=False).numpy() for v in views] for m in nets]))
        labels.append(y.numpy())
    y = np.concatenate(labels)
    z = np.concatenate(logits, axis=2)

    def acc(scores):
        return f"{100 * (scores.argmax(-1) == y).mean():.2f} %"

    print(f"| model ({len(y):,} {args.split} images of {args.data}) | single view | + flip |")
    print("|---|---|---|")
    for name, zm in zip(args.models, z):
        print(f"| `{name}` | {acc(zm[0])} | {acc(zm.mean(0))} |")
    print(f"| mean logits of all {len(nets)} | {acc(z[:, 0].mean(0))} | {acc(z.mean((0, 1)))} |")


if __name__ == "__main__":
    main()
