"""CIFAR-10 (32×32×3) with gmp_dw_a: the depthwise residual GMP member (97k params, 21 M MACs).

Reads ``cifar10``: a folder ``cifar10-images/`` or ``cifar-10-batches-bin|py/`` in --data-dir or
$CNNEDGE_DATA. gmp_dw_a runs two 3×3 basic blocks (16 filters) at 32×32 and depthwise residual
blocks at 16×16 (96 wide) and 8×8 (128), every downsampling a strided depthwise conv. The schedule
is the classic CIFAR one (SGD with Nesterov momentum, peak LR 0.1 after 2 warm-up epochs, cosine
decay, decoupled weight decay 5e-3 = coupled L2 5e-4 under momentum 0.9, flip + 4-pixel pad-and-
crop, label smoothing 0.1, dropout 0.1) plus a weight EMA (decay 0.999): validation, best.keras and
QAT use the averaged weights, which move less than the raw ones while the learning rate is high.
80 epochs; the time and accuracy measured are in docs/results.md ("The `cifar10` recipe").
`cifar10_short` is the same at 30 epochs; `cifar10_res10` is the plain residual gmp_res10 with
the same optimizer and augmentation, 120 epochs, no EMA.
"""

from cnnedge.recipe import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    QATConfig,
    Recipe,
    TrainConfig,
)

RECIPE = Recipe(
    name="cifar10",
    description="CIFAR-10 32×32×3, gmp_dw_a (<100k params), flip + crop4, SGD cosine, EMA, QAT",
    data=DataConfig(dataset="cifar10", val_fraction=0.1, cache=True),
    model=ModelConfig(name="gmp_dw_a", kwargs={"dropout": 0.1}),
    augment=AugmentConfig(ops=("flip", "pad_crop:4")),
    optim=OptimConfig(
        name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-3, schedule="cosine", warmup_epochs=2.0
    ),
    train=TrainConfig(epochs=80, batch_size=128, label_smoothing=0.1, seed=0, ema=0.999),
    qat=QATConfig(enabled=True, epochs=2, lr=1e-4, calibration_images=500),
)
