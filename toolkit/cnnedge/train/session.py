"""One training session: the recipe resolved and checked, the run directory created (or the
run to resume found), then the phases in order under the run's lock (:func:`run_phases`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from cnnedge.distribute import build_strategy, devices, remove_folder
from cnnedge.errors import CnnedgeError
from cnnedge.files import check_writable
from cnnedge.recipe import Recipe, check
from cnnedge.run import Run, open_data
from cnnedge.train import inputs, multiworker
from cnnedge.train.callbacks import keras_verbose
from cnnedge.train.ema import refresh_best_bn
from cnnedge.train.fit import build_model, finish_run, fit_float, resume_point
from cnnedge.train.qat import fine_tune_qat
from cnnedge.utils import environment


@dataclass
class TrainResult:
    """A finished session: the run directory, its summary (empty on the workers of a
    multi-worker job other than the chief, which writes the run) and what an automatic
    recipe chose (``notes``, one line each)."""

    run_dir: Path
    summary: dict
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "summary": self.summary, "notes": self.notes}


def train(
    recipe: Recipe | str | None = None,
    *,
    data=None,
    weights: Optional[str] = None,
    minutes: Optional[float] = None,
    image_size=None,
    overrides: Sequence[str] = (),
    runs_dir="runs",
    name: Optional[str] = None,
    overwrite: bool = False,
    resume=None,
    from_best: bool = False,
    strategy: str = "none",
    logical_cpus: int = 0,
    verbose: Optional[int] = None,
    on_run_dir=None,
    check_data: bool = False,
) -> TrainResult:
    """Train a recipe, or a folder of class folders, into ``runs_dir/<recipe>/<name>/``; or
    continue the run at ``resume``. What ``cnnedge train`` does, option for option.

    Everything is checked before the run directory is created or an old one (``overwrite``) is
    moved aside: recipe ranges, data, model name and options, input size, teachers, weights.
    A new run that fails before its first epoch ends leaves nothing behind.

    Args:
        recipe: A :class:`~cnnedge.recipe.Recipe`, a shipped recipe's name or a ``.py`` file;
            None with ``data``: an automatic recipe for that folder (:mod:`cnnedge.auto`).
        data: A folder of class folders (``<data>/<class>/<images>``) or a dataset name: the
            recipe's dataset, or without ``recipe`` the folder an automatic recipe is made for.
        weights: Initial weights: a reference checkpoint's name (``cifar10``), a run directory,
            a ``.keras`` file, or ``none`` (scratch). A new class count gets a new head.
        minutes: Time budget of the float phase (``train.max_minutes``); with ``data`` alone
            the epochs are also chosen to fit it.
        image_size: ``HxW`` (``"64x64"`` or ``(64, 64)``), or ``"keep"``: each image at its
            own size.
        overrides: Recipe fields to set last, ``["train.epochs=3", ...]`` (``--set``).
        runs_dir: Parent folder of run directories.
        name: The run's folder name (default ``exp``).
        overwrite: Replace an existing run directory (kept as ``<name>.old`` until the new
            run has finished an epoch).
        resume: A run directory to continue with its saved recipe (then none of the recipe
            arguments above may be given).
        from_best: With ``resume``: continue from the best checkpoint, not the last one.
        strategy: ``none``, ``mirrored`` or ``multiworker`` (tf.distribute).
        logical_cpus: Split the CPU into this many logical devices (0: don't).
        verbose: Keras progress output (0 silent, 1 bar, 2 a line per epoch); default: a bar on
            a terminal, else lines.
        on_run_dir: Called with the run directory once it exists (before the first epoch).
        check_data: Decode every image once first, so that a bad file is named before the
            first epoch.

    Returns:
        A :class:`TrainResult`; the run directory holds the models, metrics and summary.

    Raises:
        CnnedgeError: a bad recipe, data, option or run directory (nothing written then).
    """
    if int(logical_cpus) < 0:
        raise CnnedgeError(f"--logical-cpus must be >= 0, got {logical_cpus}")
    run, notes = None, []
    if resume is not None:
        if any(v is not None for v in (recipe, data, image_size, weights, minutes)) or overrides:
            raise CnnedgeError(
                "--resume continues a run with its saved recipe; drop --recipe/"
                "--set/--data/--image-size/--weights/--minutes"
            )
        run = Run(resume)
        state, recipe = run.state, run.recipe
        if state.get("finished"):
            raise CnnedgeError(
                f"run {run.path} already finished ({state['epoch']} epochs); nothing to resume"
            )
        state = resume_point(run, state, from_best)
    else:
        if from_best:
            raise CnnedgeError("--from-best goes with --resume RUN_DIR")
        from cnnedge.auto import resolve_recipe

        recipe, notes = resolve_recipe(
            recipe, data=data, weights=weights, minutes=minutes, image_size=image_size, overrides=overrides
        )
        for line in notes:
            print(f"auto: {line}", flush=True)
        state = {"epoch": 0}
    res = _session(
        run,
        recipe,
        state,
        runs_dir=runs_dir,
        name=name,
        overwrite=overwrite,
        from_best=from_best,
        strategy=strategy,
        logical_cpus=logical_cpus,
        verbose=verbose,
        on_run_dir=on_run_dir,
        check_data=check_data,
    )
    res.notes = list(notes)
    return res


def _session(
    run,
    recipe,
    state,
    *,
    runs_dir,
    name,
    overwrite,
    from_best,
    strategy,
    logical_cpus,
    verbose,
    on_run_dir,
    check_data,
) -> TrainResult:
    """Check the recipe, open the data, build the model, create the run, run the phases."""
    check(recipe)
    from cnnedge.distill import check_config, teachers_for

    check_config(recipe.distill)  # its ranges, and that every teacher's file is there
    check_writable(run.path if run is not None else Path(runs_dir), "run")
    dist = build_strategy(strategy, logical_cpus)  # before any other TF op (logical CPUs)
    multiworker.check(dist, recipe)
    from cnnedge.backend import set_seed

    set_seed(recipe.train.seed + state["epoch"])
    src = open_data(recipe)
    if check_data:
        from cnnedge.data import check as check_files

        check_files(src)
    teachers = None if state.get("float_done") else teachers_for(recipe, src.info)
    data = inputs.datasets(src, recipe, teachers, first_epoch=state["epoch"])
    model = None
    if not state.get("float_done"):
        with dist.scope():
            model = build_model(run, recipe, src, state, data[2], teachers, from_best)
    run, state, data, job = multiworker.join(dist, run, state, recipe, runs_dir, name, data)
    new, private = run is None, job is not None and not job.chief
    if new:
        run = Run.create(runs_dir, recipe.name, name, overwrite)
    if on_run_dir:
        on_run_dir(run.path)
    try:
        with run.lock("cnnedge train"):  # one command at a time writes a run
            res = run_phases(
                run,
                recipe,
                src,
                state,
                model,
                data,
                strategy=strategy,
                dist=dist,
                verbose=verbose,
                extra_callbacks=job.callbacks if job else [],
                report=not private,
            )
        if job is not None:
            job.finished()
        return TrainResult(job.shared, res.summary) if private else res
    except BaseException:
        if new and state["epoch"] == 0:
            run.discard()
        raise
    finally:
        if private:
            remove_folder(run.path)


def run_phases(
    run: Run,
    recipe: Recipe,
    src,
    state: dict,
    model,
    data,
    *,
    strategy: str,
    dist,
    verbose,
    extra_callbacks=(),
    report: bool = True,
) -> TrainResult:
    """The phases of a checked run, in order: float epochs, the EMA's BN statistics, evaluation
    and summary, then QAT. ``state["phase"]`` names the one in progress, ``state`` (state.json)
    where a resumed run continues. A new phase is a function of (run, recipe, src, state) here.

    Args:
        run: The run directory (:class:`cnnedge.run.Run`).
        recipe: The checked recipe.
        src: The opened dataset.
        state: The run's state (state.json).
        model: The model to train (built or resumed).
        data: (train, val, steps per epoch) from :func:`cnnedge.train.inputs.datasets`.
        strategy: ``none``, ``mirrored`` or ``multiworker``.
        dist: The tf.distribute wiring (None: one device).
        verbose: Keras's progress verbosity.
        extra_callbacks: Callbacks of the float epochs that run first (a multi-worker backup).
        report: False for a multi-worker job's other workers: they only join the float epochs.
    """
    if state["epoch"] == 0:
        run.save_recipe(recipe)
        run.write_env(
            {
                **environment(),
                "seed": recipe.train.seed,
                "strategy": strategy,
                "replicas": dist.num_replicas_in_sync,
                "devices": devices(dist),
            }
        )
        run.write_labels(src.info.class_names)
        state.update(recipe=recipe.name, phase="float", finished=False)
        run.write_state(state)
    verbose = keras_verbose(verbose)
    if not state.get("float_done"):
        fit_float(
            run, recipe, src, state, model, data, dist=dist, verbose=verbose, extra_callbacks=extra_callbacks
        )
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
