"""The classic course model on Fashion-MNIST, for comparison with the GMP family.

Conv(32,s2)→Conv(64,s2)→Conv(128,s2)→Flatten→Dense(512)→Dense(10): ~360k params, fixed 28×28
input, plain Adam, no augmentation, 5 epochs (the course's setting).
"""

from cnnedge.recipe import DataConfig, ModelConfig, OptimConfig, QATConfig, Recipe, TrainConfig

RECIPE = Recipe(
    name="fashion_mnist_baseline_flatten",
    description="course baseline: strided convs → Flatten → Dense 512 (360k params), 5 epochs",
    data=DataConfig(dataset="fashion-mnist", val_fraction=0.1),
    model=ModelConfig(name="baseline_flatten", kwargs={"input_size": [28, 28]}),
    optim=OptimConfig(name="adam", lr=1e-3, schedule="constant"),
    train=TrainConfig(epochs=5, batch_size=128, seed=0),
    qat=QATConfig(enabled=False),
)
