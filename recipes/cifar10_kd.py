"""CIFAR-10 gmp_res10 distilled from two trained cnnedge CIFAR-10 runs (knowledge distillation).

The student is the `cifar10_res10` recipe's model (gmp_res10, 95,981 params). Its teachers are two
cnnedge runs at these paths (or set ``distill.teachers``), trained first with:

    cnnedge train --recipe cifar10_res10               # runs/cifar10_res10/exp  (gmp_res10, 120 ep)
    cnnedge train --recipe cifar10_res10 --name res8 --set model.name=gmp_res8 --set train.epochs=150

Each batch is augmented once and both teachers label that same view (cnnedge.distill); the loss
is 0.1·CE(labels) + 0.9·T²·KL at T = 4 (Hinton et al.; the common CIFAR setting). No label
smoothing or dropout: the KD targets are soft already, and a < 100k model underfits CIFAR-10
under augmentation. The teachers share the student's seed, so the 5,000-image validation split
that picks the checkpoint was never in their training data either. Each teacher costs a forward
pass per batch.
"""

import dataclasses

from cnnedge.recipe import DistillConfig, ModelConfig, TrainConfig
from cnnedge.recipes.cifar10_res10 import RECIPE as CIFAR10

RECIPE = dataclasses.replace(
    CIFAR10,
    name="cifar10_kd",
    description="CIFAR-10 gmp_res10 (<100k params) distilled from two cifar10_res10 runs, SGD, QAT",
    model=ModelConfig(name="gmp_res10", kwargs={"dropout": 0.0}),
    train=TrainConfig(epochs=160, batch_size=128, label_smoothing=0.0, seed=0),
    distill=DistillConfig(
        teachers=("runs/cifar10_res10/exp", "runs/cifar10_res10/res8"), temperature=4.0, alpha=0.9
    ),
)
