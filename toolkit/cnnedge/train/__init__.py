"""`cnnedge train` and `cnnedge quantize`: every training phase of a run.

    res = train("fashion_mnist")                         # runs/fashion_mnist/exp/
    res = train(data="photos/train", minutes=10)         # what `cnnedge train --data` does
    res = train("cifar10", overrides=["train.epochs=3"], name="short")
    res = train(resume="runs/fashion_mnist/exp")         # continue a killed run
    summary = fine_tune_qat("runs/fashion_mnist/exp")    # the QAT phase alone

The float phase writes checkpoints atomically after every epoch (``last.keras`` with optimizer
state, ``best.keras`` on a better validation accuracy), so a run killed by SIGINT or SIGKILL
loses at most the epoch in progress. The QAT phase wraps the best float model with the tfmot
transforms of :mod:`cnnedge.quantize` and fine-tunes it with the same loss and data.

One module per job: :mod:`.session` (``train``: checks, the run directory, the phases in order),
:mod:`.fit` (the float phase), :mod:`.qat` (the QAT phase), :mod:`.inputs` (the batches both
phases train on), :mod:`.optim` (optimizer and loss), :mod:`.callbacks` (checkpoints, time
budget), :mod:`.ema` (weight averaging and its BN statistics), :mod:`.multiworker` (what each
worker of a multi-worker job does).
"""

from cnnedge.auto import resolve_recipe
from cnnedge.train.fit import finish_run
from cnnedge.train.inputs import class_weights, datasets
from cnnedge.train.optim import build_optimizer, compile_model
from cnnedge.train.qat import fine_tune_qat
from cnnedge.train.session import TrainResult, run_phases, train

__all__ = [
    "TrainResult",
    "build_optimizer",
    "class_weights",
    "compile_model",
    "datasets",
    "fine_tune_qat",
    "finish_run",
    "resolve_recipe",
    "run_phases",
    "train",
]
