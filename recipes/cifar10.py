"""CIFAR-10 (32×32×3) with a < 100k-parameter residual GMP CNN (MLPerf Tiny ResNet-8 budget).

Reads the JPEG folder ../shared/datasets/cifar10-images (or cifar-10-batches-bin/-py).
Flip + 4-pixel pad-and-crop is the standard CIFAR augmentation; SGD-free AdamW cosine schedule;
150 epochs take about an hour on 2 CPU cores; cifar10_short is the 60-epoch schedule (README).
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
    description="CIFAR-10 32×32×3, gmp_res8 (<100k params), flip + crop4, AdamW cosine, QAT",
    data=DataConfig(dataset="cifar10", val_fraction=0.1),
    model=ModelConfig(name="gmp_res8", kwargs={"dropout": 0.1}),
    augment=AugmentConfig(ops=("flip", "pad_crop:4")),
    optim=OptimConfig(name="adamw", lr=3e-3, weight_decay=5e-4, schedule="cosine",
                      warmup_epochs=2.0),
    train=TrainConfig(epochs=150, batch_size=128, label_smoothing=0.1, seed=0),
    qat=QATConfig(enabled=True, epochs=2, lr=1e-4, calibration_images=500),
)
