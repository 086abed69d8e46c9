"""The float phase: the model to train (new, or restored from the run), the epochs of
``model.fit`` with the run's checkpoints, then the best model's evaluation and the summary."""

from __future__ import annotations

import time

from cnnedge.errors import CnnedgeError
from cnnedge.interrupts import StopOnCtrlC
from cnnedge.recipe import Recipe
from cnnedge.run import Run, eval_split, preprocessing_of
from cnnedge.train import optim
from cnnedge.train.callbacks import run_checkpoint, time_budget
from cnnedge.train.ema import weight_ema


def resume_point(run: Run, state: dict, from_best: bool) -> dict:
    """Where a resumed run continues; never silently from scratch when epochs were done."""
    done = state.get("epoch", 0)
    if from_best:
        if not run.has("float") or not state.get("best_epoch"):
            raise CnnedgeError(
                f"cannot resume {run.path} --from-best: it has no best checkpoint "
                f"yet; start over with --overwrite"
            )
        return {**state, "epoch": int(state["best_epoch"]), "float_done": False}
    if done and not state.get("float_done") and not run.has("last"):
        raise CnnedgeError(
            f"cannot resume {run.path}: {run.model_path('last').name} is missing "
            f"after {done} epochs; continue from the best checkpoint with "
            f"--from-best, or start over with --overwrite"
        )
    if not run.has("last") and not state.get("float_done"):
        return {**state, "epoch": 0}  # killed before the first epoch ended: nothing was done
    return state


def build_model(run, recipe, src, state, steps, teachers, from_best):
    """The model to train: restored from the run, or built from the recipe and checked against
    the data (classes, channels, smallest image) before any file is written."""
    from cnnedge import models

    info = src.info
    if run is not None and state["epoch"] > 0:
        kind = "float" if from_best else "last"
        try:
            model = models.load_model(run.model_path(kind), compile=not from_best)
        except CnnedgeError as e:
            raise CnnedgeError(
                f"cannot resume {run.path}: {e}; continue from the best "
                f"checkpoint with --from-best, or start over with --overwrite"
            )
        if from_best:  # a fresh optimizer that continues the LR schedule where best.keras was
            optim.compile_model(model, recipe, steps, distill=bool(teachers))
            model.optimizer.iterations.assign(state["epoch"] * steps)
        return model
    model = models.create_model(
        recipe.model.name, num_classes=len(info.class_names), channels=info.channels, **recipe.model.kwargs
    )
    models.check_input_size(model, (*smallest_image(src), info.channels))
    if recipe.model.weights:
        from cnnedge.weights import init_weights

        note = init_weights(model, recipe.model.weights)
        print(f"weights: {recipe.model.weights} ({note})", flush=True)
    optim.compile_model(model, recipe, steps, distill=bool(teachers))
    return model


def smallest_image(src) -> tuple:
    """(H, W) of the smallest training image (the fixed size, or the minimum of each side)."""
    shapes = src.split_index("train").shapes
    if shapes is not None and len(shapes):
        return int(shapes[:, 0].min()), int(shapes[:, 1].min())
    return tuple(src.info.image_size or (None, None))


def fit_float(
    run: Run, recipe: Recipe, src, state: dict, model, data, *, dist, verbose: int, extra_callbacks=()
) -> None:
    """The float epochs still to do, each ending in the run's checkpoint.

    Args:
        run: The run directory (:class:`cnnedge.run.Run`).
        recipe: The checked recipe.
        src: The opened dataset.
        state: The run's state (state.json); gets the time spent.
        model: The model to train (built or resumed).
        data: (train, val, steps per epoch) from :func:`cnnedge.train.inputs.datasets`.
        dist: The tf.distribute wiring (None: one device).
        verbose: Keras's progress verbosity.
        extra_callbacks: Callbacks that run first (a multi-worker job's backup).
    """
    from cnnedge.backend import keras
    from cnnedge.distribute import devices

    train_ds, val_ds, steps = data
    if verbose and dist.num_replicas_in_sync > 1:
        print(
            f"{type(dist).__name__}: {dist.num_replicas_in_sync} replicas ({', '.join(devices(dist))})",
            flush=True,
        )
    ctrl_c = StopOnCtrlC(model)
    ema = weight_ema(model, recipe.train.ema, run / Run.EMA) if recipe.train.ema else None
    callbacks = [
        *extra_callbacks,  # BackupAndRestore first: it sets the epoch a restarted job resumes
        *([ema] if ema else []),
        run_checkpoint(run, state, ctrl_c.stop, ema, val_ds, recipe.augment.mixes),
        keras.callbacks.TensorBoard(
            log_dir=str(run / Run.TENSORBOARD), update_freq="epoch", profile_batch=0, write_graph=False
        ),
    ]
    t0, spent = time.time(), state.get("train_seconds", 0.0)  # epochs update it as they end
    if state["epoch"] < recipe.train.epochs:
        first = 0 if extra_callbacks else state["epoch"]  # multi-worker: the backup decides
        if recipe.train.max_minutes:
            callbacks.append(time_budget(recipe.train.max_minutes, state))
        with ctrl_c, src.guard("train"):
            model.fit(
                train_ds,
                epochs=recipe.train.epochs,
                initial_epoch=first,
                steps_per_epoch=steps,
                validation_data=val_ds,
                callbacks=callbacks,
                verbose=verbose,
            )
    state["train_seconds"] = spent + (time.time() - t0)


def finish_run(run: Run, recipe: Recipe, src, state: dict) -> dict:
    """Evaluate the best model on test, draw curves and the confusion matrix, write the summary."""
    from cnnedge import evaluate, models

    best = run.model("float")
    split = eval_split(src)
    ev = evaluate.evaluate(
        best, src, split=split, batch_size=max(256, recipe.train.batch_size), take=recipe.train.eval_images
    )
    pre = preprocessing_of(src)
    h, w = pre.pop("image_size")
    stats = models.summary_dict(best, (h, w, src.info.channels))
    evaluate.plot_confusion(ev, src.info.class_names, run / Run.CONFUSION)
    evaluate.plot_curves(run.metrics(), run / Run.CURVES)
    summary = {
        "recipe": recipe.name,
        "model": recipe.model.name,
        "dataset": src.info.name,
        "params": stats["params"],
        "macs_per_image": stats["macs"],
        "flops_per_image": 2 * stats["macs"],
        "input_size": [h, w, src.info.channels],
        **pre,
        "min_input_size": stats.get("min_input_size"),
        "epochs": state["epoch"],
        "best_epoch": state.get("best_epoch"),
        "best_val_accuracy": state.get("best_score"),
        **({"ema_bn": state["ema_bn"]} if "ema_bn" in state else {}),
        "eval_split": split,
        f"{split}_accuracy": ev.accuracy,
        f"{split}_images": ev.n,
        "per_class_accuracy": dict(zip(src.info.class_names, ev.per_class_accuracy)),
        "train_minutes": round(state.get("train_seconds", 0.0) / 60, 2),
    }
    run.write_summary(summary)
    state["float_done"] = True
    run.write_state(state)
    return summary
