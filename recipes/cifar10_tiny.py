"""Smoke variant of cifar10: gmp_xs, 2 epochs × 30 steps, 1k eval images."""

import dataclasses

from cnnedge.recipe import ModelConfig, QATConfig, TrainConfig
from cnnedge.recipes.cifar10 import RECIPE as BASE

RECIPE = dataclasses.replace(
    BASE,
    name="cifar10_tiny",
    description="smoke test: cifar10 with gmp_xs, 2 epochs × 30 steps, 1k eval images",
    model=ModelConfig(name="gmp_xs"),
    train=TrainConfig(epochs=2, batch_size=64, steps_per_epoch=30, eval_images=1000, seed=0),
    qat=QATConfig(enabled=True, epochs=1, lr=1e-4, calibration_images=64),
)
