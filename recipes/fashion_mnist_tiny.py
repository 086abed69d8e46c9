"""Smoke variant of fashion_mnist for tests: minutes, not accuracy.

Same data and model family; 2 epochs of 50 steps and a 1,000-image evaluation.
"""

import dataclasses

from cnnedge.recipe import ModelConfig, QATConfig, TrainConfig
from cnnedge.recipes.fashion_mnist import RECIPE as BASE

RECIPE = dataclasses.replace(
    BASE,
    name="fashion_mnist_tiny",
    description="smoke test: fashion_mnist with gmp_xs, 2 epochs × 50 steps, 1k eval images",
    model=ModelConfig(name="gmp_xs"),
    train=TrainConfig(epochs=2, batch_size=64, steps_per_epoch=50, eval_images=1000, seed=0),
    qat=QATConfig(enabled=True, epochs=1, lr=1e-4, calibration_images=64),
)
