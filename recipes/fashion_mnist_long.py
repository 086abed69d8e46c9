"""Fashion-MNIST, the longer schedule: gmp_s for 40 epochs.

It is `fashion_mnist` with three changes: 40 epochs instead of 22, AdamW peak LR 3e-3 instead
of 1e-2, dropout 0.1 before the classifier instead of none. About twice the training time for a
little more accuracy; also the base of `fashion_mnist_quick`.
"""

import dataclasses

from cnnedge.recipes.fashion_mnist import RECIPE as BASE

RECIPE = dataclasses.replace(
    BASE,
    name="fashion_mnist_long",
    description="Fashion-MNIST 28×28×1, gmp_s (<100k params) 40 epochs, flip + crop, AdamW, QAT",
    model=dataclasses.replace(BASE.model, kwargs={"dropout": 0.1}),
    optim=dataclasses.replace(BASE.optim, lr=3e-3),
    train=dataclasses.replace(BASE.train, epochs=40),
)
