"""The QAT phase: the best float model wrapped with the tfmot transforms of
:mod:`cnnedge.quantize`, fine-tuned with the run's loss and data (never mixed) into qat.h5."""

from __future__ import annotations

import time
from typing import Optional

from cnnedge.errors import CnnedgeError
from cnnedge.files import atomic_path
from cnnedge.recipe import check_field
from cnnedge.run import Run, eval_split, open_data
from cnnedge.train import inputs, optim
from cnnedge.train.callbacks import keep_best, keras_verbose


def fine_tune_qat(
    run, *, epochs: Optional[int] = None, lr: Optional[float] = None, verbose: Optional[int] = None
) -> dict:
    """Fine-tune the best float model of a run with quantization-aware training.

    Holds the run's lock (one command at a time writes a run); writes ``qat.h5`` (the epoch
    with the best validation accuracy, replaced only by a model with finite weights) and
    ``qat_metrics.csv``, redraws the curves and adds the ``qat_*`` fields to ``summary.json``.

    Args:
        run: A run directory (or :class:`~cnnedge.run.Run`) with a best float model.
        epochs: QAT epochs; default: the recipe's ``qat.epochs``.
        lr: Peak learning rate of the cosine schedule; default: the recipe's ``qat.lr``.
        verbose: Keras progress output (0 silent, 1 bar, 2 a line per epoch); default: a bar
            on a terminal, else lines.

    Returns:
        The run's summary with the ``qat_*`` fields.

    Raises:
        CnnedgeError: the run is in use, has no best model, or the fine-tune diverged.
    """
    run = run if isinstance(run, Run) else Run(run)
    with run.lock("cnnedge quantize"):  # re-entrant: `train` holds it when QAT is its phase
        return _fine_tune(run.require("float"), epochs, lr, verbose)


def _fine_tune(run: Run, epochs, lr, verbose) -> dict:
    from cnnedge import evaluate, quantize
    from cnnedge.backend import keras
    from cnnedge.distill import teachers_for
    from cnnedge.quantize import apply_qat, calibrate_ranges, input_range, representative_images

    quantize.check_outputs(
        run.path,
        [run.model_path("qat"), *(run / name for name in (Run.SUMMARY, Run.QAT_METRICS, Run.CURVES))],
    )
    recipe, summary, curves = run.recipe, run.summary, run.metrics()  # damaged: named now
    if "eval_split" not in summary:  # QAT adds to the float phase's results: refused before training
        raise CnnedgeError(
            f"{run.path / Run.SUMMARY}: missing or without the float phase's results; "
            "quantize fine-tunes a finished run (train it again, or --resume it)"
        )
    epochs = check_field("qat.epochs", recipe.qat.epochs if epochs is None else epochs, "epochs")
    lr = check_field("qat.lr", recipe.qat.lr if lr is None else lr, "lr")
    src = open_data(recipe)
    teachers = teachers_for(recipe, src.info)  # QAT fine-tunes with the training loss, unmixed
    train_ds, val_ds, steps = inputs.datasets(src, recipe, teachers, mix=False)
    float_model = run.model("float")
    qat = apply_qat(float_model)
    calibrate_ranges(
        qat, float_model, representative_images(src, recipe.qat.calibration_images, seed=recipe.train.seed)
    )
    sched = keras.optimizers.schedules.CosineDecay(lr, max(1, epochs * steps))
    optim.compile_model(
        qat, recipe, steps, optimizer=keras.optimizers.Adam(sched), distill=teachers is not None
    )

    best, rows = {"score": -1.0}, []
    t0 = time.time()
    with atomic_path(run.model_path("qat")) as staged:  # replaced only by a finite model
        qat.fit(
            train_ds,
            epochs=epochs,
            steps_per_epoch=steps,
            validation_data=val_ds,
            callbacks=[keep_best(rows, best, staged), keras.callbacks.TerminateOnNaN()],
            verbose=keras_verbose(verbose),
        )
        seconds = time.time() - t0
        qat = quantize.load_finite(staged, run.model_path("qat"), rows, lr)
        split = eval_split(src)
        ev = evaluate.evaluate(qat, src, split=split, batch_size=256, take=recipe.train.eval_images)
    run.write_qat_metrics(rows)
    evaluate.plot_curves(curves, run / Run.CURVES, rows)  # finish_run drew it before QAT
    summary.update(
        {
            "qat_epochs": epochs,
            "qat_lr": lr,
            "qat_best_epoch": best.get("epoch"),
            "qat_best_val_accuracy": best["score"],
            f"qat_{split}_accuracy": ev.accuracy,
            "qat_minutes": round(seconds / 60, 2),
            "qat_input_range": list(input_range(qat)),
        }
    )
    run.write_summary(summary)
    return summary
