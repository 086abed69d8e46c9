"""CIFAR-10 (32×32×3) with a < 100k-parameter residual GMP CNN (MLPerf Tiny ResNet-8 budget).

Reads ``cifar10``: a folder ``cifar10-images/`` or ``cifar-10-batches-bin|py/`` in --data-dir or
$CNNEDGE_DATA. Flip + 4-pixel pad-and-crop is the standard CIFAR augmentation. SGD with Nesterov
momentum, peak LR 0.1 after 2 warm-up epochs, cosine decay: the classic CIFAR ResNet schedule,
which trains these small residual models further than Adam at the same epochs. weight_decay
5e-3 is decoupled (w -= lr·wd·w each step), i.e. the classic coupled L2 of 5e-4 under momentum
0.9. Label smoothing 0.1 and dropout 0.1 regularise a long schedule. Decoded images are cached
in memory (150 MB). The `cifar10` recipe trains the depthwise member gmp_dw_a instead.
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
    name="cifar10_res10",
    description="CIFAR-10 32×32×3, gmp_res10 (<100k params), flip + crop4, SGD cosine, QAT",
    data=DataConfig(dataset="cifar10", val_fraction=0.1, cache=True),
    model=ModelConfig(name="gmp_res10", kwargs={"dropout": 0.1}),
    augment=AugmentConfig(ops=("flip", "pad_crop:4")),
    optim=OptimConfig(
        name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-3, schedule="cosine", warmup_epochs=2.0
    ),
    train=TrainConfig(epochs=120, batch_size=128, label_smoothing=0.1, seed=0),
    qat=QATConfig(enabled=True, epochs=2, lr=1e-4, calibration_images=500),
)
