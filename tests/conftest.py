import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (test_data_helpers) import by name

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One small trained run shared by the export, verify, runtime, bench and demo tests.

    The fashion_mnist_tiny recipe (gmp_xs) trained by ``cnnedge.train`` for 2 × 150 steps plus
    one QAT epoch on the real Fashion-MNIST, exported to every format × precision; with 512 test
    images and the Keras float/QAT logits on them. Skipped when the dataset files are absent.
    """
    from cnnedge import data
    from cnnedge.errors import CnnedgeError
    from cnnedge.export import export
    from cnnedge.recipe import apply_overrides, load_recipe
    from cnnedge.run import Run
    from cnnedge.train import train

    try:
        src = data.open_dataset("fashion-mnist", download=False)
    except CnnedgeError as e:
        pytest.skip(f"Fashion-MNIST not available: {e}")
    root = tmp_path_factory.mktemp("tiny_run")
    recipe = apply_overrides(load_recipe("fashion_mnist_tiny"),
                             ["train.steps_per_epoch=150", "qat.enabled=true"])
    run = Run(train(recipe, runs_dir=root / "runs", verbose=0).run_dir)
    results = export(run.path, formats="all", precisions="all", verify=0)
    xs, ys = [], []
    for x, y in src.pipeline("test", batch_size=512, take=512):
        xs.append(x.numpy())
        ys.append(y.numpy())
    x, y = np.concatenate(xs), np.concatenate(ys)
    model, qat = run.model("float"), run.model("qat")
    return {"run": run.path, "results": list(results), "x": x, "y": y, "model": model,
            "keras": model.predict(x.astype(np.float32), verbose=0),
            "qat": qat.predict(x.astype(np.float32), verbose=0)}
