"""The cifar10 recipe (gmp_res10, SGD) on a 60-epoch schedule instead of 120."""

import dataclasses

from cnnedge.recipes.cifar10 import RECIPE as BASE

RECIPE = dataclasses.replace(
    BASE,
    name="cifar10_short",
    description="cifar10 with a 60-epoch schedule instead of 120",
    train=dataclasses.replace(BASE.train, epochs=60),
)
