"""`cnnedge train` and `cnnedge quantize`: every training phase of a run.

    res = train(load_recipe("fashion_mnist"))        # runs/fashion_mnist/exp/
    res = train(resume="runs/fashion_mnist/exp")     # continue a killed run
    summary = fine_tune_qat("runs/fashion_mnist/exp")  # the QAT phase alone

The float phase writes checkpoints atomically after every epoch (``last.keras`` with optimizer
state, ``best.keras`` on a better validation accuracy), so a run killed by SIGINT or SIGKILL
loses at most the epoch in progress. The QAT phase wraps the best float model with the tfmot
transforms of :mod:`cnnedge.quantize` and fine-tunes it with the same loss and data."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cnnedge.callbacks import current_lr, refresh_best_bn, time_budget, weight_ema
from cnnedge.distribute import (
    backup_callback,
    backup_dir,
    build_strategy,
    devices,
    is_chief,
    is_multiworker,
    refuse_multiworker,
    remove_folder,
    shard_by_example,
    worker_folder,
)
from cnnedge.errors import CnnedgeError
from cnnedge.recipe import Recipe, check, check_field
from cnnedge.run import Run, eval_split, open_data, preprocessing_of
from cnnedge.utils import (
    StopOnCtrlC,
    atomic_path,
    balanced_weights,
    check_writable,
    environment,
)


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict


# ----------------------------------------------------------------------------- building blocks
def build_optimizer(recipe: Recipe, steps_per_epoch: int):
    from cnnedge.backend import keras

    o = recipe.optim
    total = max(1, recipe.train.epochs * steps_per_epoch)
    warmup = int(o.warmup_epochs * steps_per_epoch)
    if o.schedule == "cosine":
        if warmup:
            lr = keras.optimizers.schedules.CosineDecay(
                0.0, max(1, total - warmup), warmup_target=o.lr, warmup_steps=warmup)
        else:
            lr = keras.optimizers.schedules.CosineDecay(o.lr, total)
    else:
        lr = o.lr
    # Decoupled weight decay (each step: w -= lr * weight_decay * w) for every optimizer.
    if o.name == "adam":
        return keras.optimizers.Adam(lr, weight_decay=o.weight_decay or None)
    if o.name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=o.weight_decay)
    return keras.optimizers.SGD(lr, momentum=o.momentum, nesterov=True,
                                weight_decay=o.weight_decay or None)


def compile_model(model, recipe: Recipe, steps_per_epoch: int, optimizer=None,
                  distill: bool = False):
    """Compile for one-hot targets, or for ``[one-hot | teacher logits]`` when ``distill``."""
    from cnnedge.backend import keras

    ls = recipe.train.label_smoothing
    if distill:
        from cnnedge.distill import DistillLoss, LabelAccuracy

        k, d = model.output_shape[-1], recipe.distill
        loss = DistillLoss(k, d.temperature, d.alpha, label_smoothing=ls)
        metric = LabelAccuracy(k)
    else:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ls)
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer or build_optimizer(recipe, steps_per_epoch), loss=loss,
                  metrics=[metric])
    return model


def datasets(src, recipe: Recipe, teachers=None, first_epoch: int = 0, mix: bool = True):
    """(train, val or None, steps_per_epoch): one-hot labels for the smoothed loss, train images
    mixed from ``first_epoch`` on if ``mix`` and the recipe says so (cnnedge.data.mix), with the
    ``teachers``' mean logits appended to them when distilling (cnnedge.distill), or each
    image's class weight (``train.class_weights``) as a third element."""
    from cnnedge.backend import tf
    from cnnedge.data.augment import build_augment
    from cnnedge.data.mix import mix_for

    t = recipe.train
    k = len(src.info.class_names)
    n_train = src.num_examples("train")
    if n_train == 0:
        raise CnnedgeError(f"dataset {src.info.name} has an empty train split")
    if n_train < t.batch_size:
        raise CnnedgeError(f"train split has {n_train} images, fewer than batch size "
                           f"{t.batch_size}; lower train.batch_size")
    steps = t.steps_per_epoch or n_train // t.batch_size
    aug = build_augment(recipe.augment.ops, seed=t.seed) if recipe.augment.ops else None

    def onehot(x, y):
        return tf.cast(x, tf.float32), tf.one_hot(y, k)

    train = src.pipeline("train", batch_size=t.batch_size, shuffle=True, seed=t.seed, augment=aug,
                         cache=recipe.data.cache, repeat=True, drop_remainder=True)
    train = train.map(onehot, num_parallel_calls=tf.data.AUTOTUNE)
    train = mix_for(train, recipe, steps, first_epoch) if mix else train
    cw = class_weights(src, recipe)
    if cw is not None:  # per image, so that a mixed label weighs by its shares (fit's is argmax)
        w = tf.constant([cw[i] for i in range(k)], tf.float32)
        train = train.map(lambda x, y: (x, y, tf.linalg.matvec(y, w)))
    val = None
    if "val" in src.info.split_sizes and src.num_examples("val") > 0:
        val = src.pipeline("val", batch_size=t.batch_size, cache=recipe.data.cache,
                           take=t.eval_images)
        val = val.map(onehot, num_parallel_calls=tf.data.AUTOTUNE)
    if teachers:
        from cnnedge.distill import with_teacher_targets

        flip = recipe.distill.teacher_flip
        train = with_teacher_targets(train, teachers, flip)
        val = with_teacher_targets(val, teachers, flip) if val is not None else None
    train = train.prefetch(tf.data.AUTOTUNE)
    val = val.prefetch(tf.data.AUTOTUNE) if val is not None else None
    return train, val, steps


# ----------------------------------------------------------------------------- callbacks
def _make_checkpointer(run: Run, state: dict, stop=None, ema=None, val=None, mixed=False):
    from cnnedge.backend import keras

    class RunCheckpoint(keras.callbacks.Callback):
        """After each epoch: last and best (on val accuracy) model, metrics, state. With weight
        EMA (``ema``), validation and best.keras are the averaged weights', last.keras the raw."""

        def on_train_begin(self, logs=None):  # the time of earlier sessions of a resumed run
            self.fit_t0, self.spent = time.time(), state.get("train_seconds", 0.0)

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            if stop is not None and stop.is_set():  # an interrupted epoch is not a finished one
                return
            state["train_seconds"] = self.spent + time.time() - self.fit_t0
            logs = dict(logs or {})
            row = {"epoch": epoch + 1, "seconds": round(time.time() - self.t0, 2),
                   "lr": current_lr(self.model.optimizer)}
            row.update({k: logs.get(k) for k in ("loss", "accuracy", "val_loss", "val_accuracy")})
            with atomic_path(run.model_path("last")) as tmp:
                self.model.save(tmp)
            if ema is not None:
                ema.save()
                ema.swap()
                if val is not None:
                    r = self.model.evaluate(val, verbose=0, return_dict=True)
                    row.update(val_loss=r["loss"], val_accuracy=r["accuracy"])
            score, latest = row["val_accuracy"], mixed and row["val_accuracy"] is None
            score = row["accuracy"] if score is None else score  # mixed: the latest epoch wins
            if score is not None and (latest or score > state.get("best_score", -1.0)):
                with atomic_path(run.model_path("float")) as tmp:
                    self.model.save(tmp)
                state.update(best_score=float(score), best_epoch=epoch + 1)
            if ema is not None:
                ema.swap()
            run.append_metrics(row)
            state["epoch"] = epoch + 1
            run.write_state(state)
            run.started()  # a run this one replaces (--overwrite) can go now

    return RunCheckpoint()


def class_weights(src, recipe: Recipe):
    """Inverse-frequency class weights (mean 1) when the recipe asks for them, else None."""
    if not recipe.train.class_weights or recipe.distill.teachers:
        return None
    return balanced_weights(src.split_index("train").labels, len(src.info.class_names))


def _verbose(verbose: Optional[int]) -> int:
    return (1 if os.isatty(1) else 2) if verbose is None else verbose


# ----------------------------------------------------------------------------- train
def train(recipe: Optional[Recipe] = None, *, runs_dir="runs", name: Optional[str] = None,
          overwrite: bool = False, resume=None, from_best: bool = False, strategy: str = "none",
          logical_cpus: int = 0, verbose: Optional[int] = None, on_run_dir=None,
          check_data: bool = False) -> TrainResult:
    """Train ``recipe`` into ``runs_dir/<recipe>/<name>/`` or continue the run at ``resume``
    (``from_best``: from its best checkpoint instead of the last one; ``check_data``: decode
    every image once first, so that a bad file is named before the first epoch).

    Everything is checked before the run directory is created or an old one (``overwrite``) is
    moved aside: recipe ranges, data, model name and options, input size, teachers, weights.
    A new run that fails before its first epoch ends leaves nothing behind.
    """
    if int(logical_cpus) < 0:
        raise CnnedgeError(f"--logical-cpus must be >= 0, got {logical_cpus}")
    run = None
    if resume is not None:
        run = Run(resume)
        state = run.state
        recipe = run.recipe
        if state.get("finished"):
            raise CnnedgeError(f"run {run.path} already finished ({state['epoch']} epochs); "
                               f"nothing to resume")
        state = _resume_point(run, state, from_best)
    elif recipe is None:
        raise CnnedgeError("train() needs a recipe or resume=<run dir>")
    else:
        state = {"epoch": 0}
    check(recipe)
    from cnnedge.distill import check_config

    check_config(recipe.distill)  # its ranges, and that every teacher's file is there
    check_writable(run.path if run is not None else Path(runs_dir), "run")

    dist = build_strategy(strategy, logical_cpus)  # before any other TF op (logical CPUs)
    if is_multiworker(dist):  # one average per worker; a restarted job's mixing ramp restarts
        refuse_multiworker(recipe)
    from cnnedge.backend import set_seed

    set_seed(recipe.train.seed + state["epoch"])
    src = open_data(recipe)
    if check_data:
        from cnnedge.data import check as check_files

        check_files(src)
    teachers = None
    if not state.get("float_done"):
        from cnnedge.distill import teachers_for

        teachers = teachers_for(recipe, src.info)
    train_ds, val_ds, steps = datasets(src, recipe, teachers, first_epoch=state["epoch"])
    model = None
    if not state.get("float_done"):
        with dist.scope():
            model = _model(run, recipe, src, state, steps, teachers, from_best)
    new, extra, private = run is None, [], None
    if is_multiworker(dist):  # every worker runs this; the chief writes the run (distribute.py)
        shared = Path(run.path if run is not None else Path(runs_dir) / recipe.name / (name or "exp"))
        train_ds, val_ds = shard_by_example(train_ds), val_ds and shard_by_example(val_ds)
        extra = [backup_callback(shared)]
        job = Run(shared)
        restarted = new and Run.is_run(shared) and (shared / Run.STATE).is_file() \
            and not job.state.get("finished") and job.recipe == recipe
        if not is_chief(dist):  # the chief's state, so that every worker saves when it does
            run, new, private = Run(worker_folder()), False, True
            state = dict(job.state) if restarted else {"epoch": 0}
        elif restarted:  # a restarted job: continue from the backup
            run, new = job, False
            state = run.state
    if new:
        run = Run.create(runs_dir, recipe.name, name, overwrite)
    if on_run_dir:
        on_run_dir(run.path)
    try:
        with run.lock("cnnedge train"):  # one command at a time writes a run
            res = _train(run, recipe, src, state, model, (train_ds, val_ds, steps), strategy=strategy,
                         dist=dist, verbose=verbose, extra_callbacks=extra, report=not private)
        if extra and not private:  # the job is done: its backup goes
            remove_folder(backup_dir(shared))
        return TrainResult(shared, res.summary) if private else res
    except BaseException:
        if new and state["epoch"] == 0:
            run.discard()
        raise
    finally:
        if private:
            remove_folder(run.path)


def _resume_point(run: Run, state: dict, from_best: bool) -> dict:
    """Where a resumed run continues; never silently from scratch when epochs were done."""
    done = state.get("epoch", 0)
    if from_best:
        if not run.has("float") or not state.get("best_epoch"):
            raise CnnedgeError(f"cannot resume {run.path} --from-best: it has no best checkpoint "
                               f"yet; start over with --overwrite")
        return {**state, "epoch": int(state["best_epoch"]), "float_done": False}
    if done and not state.get("float_done") and not run.has("last"):
        raise CnnedgeError(f"cannot resume {run.path}: {run.model_path('last').name} is missing "
                           f"after {done} epochs; continue from the best checkpoint with "
                           f"--from-best, or start over with --overwrite")
    if not run.has("last") and not state.get("float_done"):
        return {**state, "epoch": 0}  # killed before the first epoch ended: nothing was done
    return state


def _model(run, recipe, src, state, steps, teachers, from_best):
    """The model to train: restored from the run, or built from the recipe and checked against
    the data (classes, channels, smallest image) before any file is written."""
    from cnnedge import models

    info = src.info
    if run is not None and state["epoch"] > 0:
        kind = "float" if from_best else "last"
        try:
            model = models.load_model(run.model_path(kind), compile=not from_best)
        except CnnedgeError as e:
            raise CnnedgeError(f"cannot resume {run.path}: {e}; continue from the best "
                               f"checkpoint with --from-best, or start over with --overwrite")
        if from_best:  # a fresh optimizer that continues the LR schedule where best.keras was
            compile_model(model, recipe, steps, distill=bool(teachers))
            model.optimizer.iterations.assign(state["epoch"] * steps)
        return model
    model = models.create_model(recipe.model.name, num_classes=len(info.class_names),
                                channels=info.channels, **recipe.model.kwargs)
    models.check_input_size(model, (*_smallest_image(src), info.channels))
    if recipe.model.weights:
        from cnnedge.weights import init_weights

        note = init_weights(model, recipe.model.weights)
        print(f"weights: {recipe.model.weights} ({note})", flush=True)
    compile_model(model, recipe, steps, distill=bool(teachers))
    return model


def _smallest_image(src) -> tuple:
    """(H, W) of the smallest training image (the fixed size, or the minimum of each side)."""
    shapes = src.split_index("train").shapes
    if shapes is not None and len(shapes):
        return int(shapes[:, 0].min()), int(shapes[:, 1].min())
    return tuple(src.info.image_size or (None, None))


def _train(run, recipe, src, state, model, data, *, strategy, dist, verbose, extra_callbacks=(),
           report: bool = True):
    """The phases of a checked run: float epochs, evaluation and summary, then QAT (a
    multi-worker job's other workers only join the float epochs: ``report=False``)."""
    from cnnedge.backend import keras

    train_ds, val_ds, steps = data
    if state["epoch"] == 0:
        run.save_recipe(recipe)
        run.write_env({**environment(), "seed": recipe.train.seed, "strategy": strategy,
                       "replicas": dist.num_replicas_in_sync, "devices": devices(dist)})
        run.write_labels(src.info.class_names)
        state.update(recipe=recipe.name, phase="float", finished=False)
        run.write_state(state)
    verbose = _verbose(verbose)
    if not state.get("float_done"):
        if verbose and dist.num_replicas_in_sync > 1:
            print(f"{type(dist).__name__}: {dist.num_replicas_in_sync} replicas "
                  f"({', '.join(devices(dist))})", flush=True)
        ctrl_c = StopOnCtrlC(model)
        ema = weight_ema(model, recipe.train.ema, run / Run.EMA) if recipe.train.ema else None
        callbacks = [
            *extra_callbacks,  # BackupAndRestore first: it sets the epoch a restarted job resumes
            *([ema] if ema else []),
            _make_checkpointer(run, state, ctrl_c.stop, ema, val_ds, recipe.augment.mixes),
            keras.callbacks.TensorBoard(log_dir=str(run / Run.TENSORBOARD), update_freq="epoch",
                                        profile_batch=0, write_graph=False),
        ]
        t0, spent = time.time(), state.get("train_seconds", 0.0)  # epochs update it as they end
        if state["epoch"] < recipe.train.epochs:
            first = 0 if extra_callbacks else state["epoch"]  # multi-worker: the backup decides
            if recipe.train.max_minutes:
                callbacks.append(time_budget(recipe.train.max_minutes, state))
            with ctrl_c, src.guard("train"):
                model.fit(train_ds, epochs=recipe.train.epochs, initial_epoch=first,
                          steps_per_epoch=steps, validation_data=val_ds, callbacks=callbacks,
                          verbose=verbose)
        state["train_seconds"] = spent + (time.time() - t0)
        if not report:
            return TrainResult(run.path, {})
        refresh_best_bn(run, src, recipe, state)
        summary = finish_run(run, recipe, src, state)
    else:
        summary = run.summary
    if recipe.qat.enabled:
        state["phase"] = "qat"  # a run killed during QAT redoes the (short) QAT phase
        run.write_state(state)
        summary = fine_tune_qat(run, verbose=verbose)
    state.update(finished=True, phase="done")
    run.write_state(state)
    return TrainResult(run.path, summary)


def finish_run(run: Run, recipe: Recipe, src, state: dict) -> dict:
    """Evaluate the best model on test, draw curves and the confusion matrix, write the summary."""
    from cnnedge import evaluate, models

    best = run.model("float")
    split = eval_split(src)
    ev = evaluate.evaluate(best, src, split=split, batch_size=max(256, recipe.train.batch_size),
                           take=recipe.train.eval_images)
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
        f"{split}_accuracy": ev["accuracy"],
        f"{split}_images": ev["n"],
        "per_class_accuracy": dict(zip(src.info.class_names, ev["per_class_accuracy"])),
        "train_minutes": round(state.get("train_seconds", 0.0) / 60, 2),
    }
    run.write_summary(summary)
    state["float_done"] = True
    run.write_state(state)
    return summary


# ----------------------------------------------------------------------------- QAT phase
def fine_tune_qat(run, *, epochs: Optional[int] = None, lr: Optional[float] = None,
                  verbose: Optional[int] = None) -> dict:
    """QAT phase of a finished float run: best model -> QAT fine-tune -> qat.h5 (best on val).

    Writes the QAT metrics and adds ``qat_*`` fields to the summary; returns the summary.
    """
    from cnnedge import evaluate, quantize
    from cnnedge.backend import keras
    from cnnedge.distill import teachers_for
    from cnnedge.quantize import apply_qat, calibrate_ranges, input_range, representative_images, save_qat

    run = (run if isinstance(run, Run) else Run(run)).require("float")
    quantize.check_outputs(run.path, [run.model_path("qat"), *(run / name for name in (
        Run.SUMMARY, Run.QAT_METRICS, Run.CURVES))])
    recipe, summary, curves = run.recipe, run.summary, run.metrics()  # damaged: named now
    epochs = check_field("qat.epochs", recipe.qat.epochs if epochs is None else epochs, "epochs")
    lr = check_field("qat.lr", recipe.qat.lr if lr is None else lr, "lr")
    src = open_data(recipe)
    teachers = teachers_for(recipe, src.info)  # QAT fine-tunes with the training loss, unmixed
    train_ds, val_ds, steps = datasets(src, recipe, teachers, mix=False)
    float_model = run.model("float")
    qat = apply_qat(float_model)
    calibrate_ranges(qat, float_model, representative_images(
        src, recipe.qat.calibration_images, seed=recipe.train.seed))
    sched = keras.optimizers.schedules.CosineDecay(lr, max(1, epochs * steps))
    compile_model(qat, recipe, steps, optimizer=keras.optimizers.Adam(sched),
                  distill=teachers is not None)

    best = {"score": -1.0}
    rows = []

    class KeepBest(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            score = logs.get("val_accuracy", logs.get("accuracy", 0.0))
            rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()},
                         "seconds": round(time.time() - self.t0, 2)})
            finite = abs(rows[-1].get("loss", 0.0)) < float("inf")  # False for NaN too
            if finite and score > best["score"]:  # a diverged epoch is never kept
                best.update(score=float(score), epoch=epoch + 1)
                save_qat(self.model, staged)

    t0 = time.time()
    with atomic_path(run.model_path("qat")) as staged:  # replaced only by a finite model
        qat.fit(train_ds, epochs=epochs, steps_per_epoch=steps, validation_data=val_ds,
                callbacks=[KeepBest(), keras.callbacks.TerminateOnNaN()],
                verbose=_verbose(verbose))
        seconds = time.time() - t0
        qat = quantize.load_finite(staged, run.model_path("qat"), rows, lr)
        split = eval_split(src)
        ev = evaluate.evaluate(qat, src, split=split, batch_size=256,
                               take=recipe.train.eval_images)
    run.write_qat_metrics(rows)
    evaluate.plot_curves(curves, run / Run.CURVES, rows)  # finish_run drew it before QAT
    summary.update({
        "qat_epochs": epochs, "qat_lr": lr, "qat_best_epoch": best.get("epoch"),
        "qat_best_val_accuracy": best["score"], f"qat_{split}_accuracy": ev["accuracy"],
        "qat_minutes": round(seconds / 60, 2),
        "qat_input_range": list(input_range(qat)),
    })
    run.write_summary(summary)
    return summary
