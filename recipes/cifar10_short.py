"""The cifar10 recipe (gmp_dw_a, SGD, weight EMA) on a 30-epoch schedule instead of 80."""

import dataclasses

from cnnedge.recipes.cifar10 import RECIPE as BASE

RECIPE = dataclasses.replace(
    BASE,
    name="cifar10_short",
    description="cifar10 with a 30-epoch schedule instead of 80",
    train=dataclasses.replace(BASE.train, epochs=30),
)
