"""The conv→maxpool→conv→maxpool course variant on Fashion-MNIST (fixed 28×28), 5 epochs."""

from cnnedge.recipe import DataConfig, ModelConfig, OptimConfig, QATConfig, Recipe, TrainConfig

RECIPE = Recipe(
    name="fashion_mnist_baseline_pool",
    description="course baseline: conv→maxpool→conv→maxpool→Dense, 5 epochs",
    data=DataConfig(dataset="fashion-mnist", val_fraction=0.1),
    model=ModelConfig(name="baseline_pool", kwargs={"input_size": [28, 28]}),
    optim=OptimConfig(name="adam", lr=1e-3, schedule="constant"),
    train=TrainConfig(epochs=5, batch_size=128, seed=0),
    qat=QATConfig(enabled=False),
)
