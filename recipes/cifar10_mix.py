"""CIFAR-10 with gmp_dw_a: the `cifar10` recipe plus CutMix and mixup ramped in late.

Same model, optimizer, augmentation, label smoothing and weight EMA as `cifar10` (80 epochs).
From a quarter of the epochs on, a growing share of the training images (half of them from three
quarters on) is mixed with another image of the batch, by CutMix (Beta(1, 1) box) or mixup
(Beta(0.4, 0.4) blend) at even odds, labels mixed in the same proportion: the harder targets
come once the model has learned the clean images, to narrow the gap between train and test
accuracy. The BN statistics of the averaged weights are recomputed on 5,000 clean train images
at the end (kept if validation does not drop); QAT fine-tunes on unmixed images.
"""

import dataclasses

from cnnedge.recipes.cifar10 import RECIPE as CIFAR10

RECIPE = dataclasses.replace(
    CIFAR10,
    name="cifar10_mix",
    description="CIFAR-10 32×32×3, gmp_dw_a, cifar10 + CutMix/mixup ramped in late, EMA BN recompute",
    augment=dataclasses.replace(CIFAR10.augment, mixup=0.4, cutmix=1.0, mix_prob=0.5, mix_ramp=(0.25, 0.75)),
    train=dataclasses.replace(CIFAR10.train, ema_bn_images=5000),
)
