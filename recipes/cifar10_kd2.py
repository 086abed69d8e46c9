"""CIFAR-10 second distillation round: fine-tune the `cifar10_kd` student with flip-averaged teachers.

Starts from a finished `cifar10_kd` run (model.weights) and trains it for another cosine cycle
against the same two teachers, each now labelling both the augmented view and its mirror
(distill.teacher_flip): on the validation split the two teachers' mean logits score 87.74 %,
and 88.24 % with their mirrors added, a better target at the cost of two more forward passes.
Distillation keeps improving with schedule length (the student underfits), so this is a warm
restart: peak LR 0.04 (the first cycle's was 0.1), 140 epochs, everything else as `cifar10_kd`.
Not yet run to completion: the validation figures above were measured on 2026-11-25 (VM A) with
teacher runs that later sessions no longer have; there is no test accuracy for it yet.

    cnnedge train --recipe cifar10_kd                  # runs/cifar10_kd/exp  (the start point)
    cnnedge train --recipe cifar10_kd2                 # this recipe

CIFAR-10 is mirror-symmetric (flip is already in the training augmentation), so the teachers'
mirrored views keep their labels; do not set teacher_flip for digits or text.
"""

import dataclasses

from cnnedge.recipe import ModelConfig, OptimConfig
from cnnedge.recipes.cifar10_kd import RECIPE as CIFAR10_KD

RECIPE = dataclasses.replace(
    CIFAR10_KD,
    name="cifar10_kd2",
    description="CIFAR-10 gmp_res10 (<100k): the cifar10_kd student fine-tuned with "
                "flip-averaged teachers",
    model=ModelConfig(name="gmp_res10", kwargs={"dropout": 0.0}, weights="runs/cifar10_kd/exp"),
    optim=OptimConfig(name="sgd", lr=0.04, momentum=0.9, weight_decay=5e-3, schedule="cosine",
                      warmup_epochs=2.0),
    train=dataclasses.replace(CIFAR10_KD.train, epochs=140),
    distill=dataclasses.replace(CIFAR10_KD.distill, teacher_flip=True),
)
