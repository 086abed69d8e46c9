"""The quick real-data job of `make demo`: gmp_s on Fashion-MNIST for 3 epochs + 1 QAT epoch.

Built on `fashion_mnist_long` (AdamW 3e-3, dropout 0.1). It runs the whole pipeline on real data
in minutes; it is not meant to reach the accuracy of the full recipes (their figures:
docs/results.md, "Fashion-MNIST training").
"""

import dataclasses

from cnnedge.recipe import QATConfig
from cnnedge.recipes.fashion_mnist_long import RECIPE as BASE

RECIPE = dataclasses.replace(
    BASE,
    name="fashion_mnist_quick",
    description="quick real-data job: fashion_mnist's gmp_s for 3 epochs + 1 QAT epoch",
    train=dataclasses.replace(BASE.train, epochs=3),
    qat=QATConfig(enabled=True, epochs=1, lr=1e-4, calibration_images=500),
)
