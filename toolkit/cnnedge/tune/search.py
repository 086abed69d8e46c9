"""Ranking the candidates that fit: successive halving over short trainings, then full ones.

Rung 0 trains every fitting candidate for ``steps`` steps; the best third (by validation
accuracy) go on to rung 1 with three times the steps, started from their rung-0 weights, and so
on while more than three are left. The last three (or fewer) are trained with the base recipe's
whole schedule from their own start — the final rung, whose validation accuracy decides: short
trainings rank the field, but between close finalists only the real schedule tells (a finalist
at 48 pixels can trail one at 32 after 600 steps and lead after the full run). The search stops
early when the time budget is spent. Each trial is an ordinary run directory
(``<tune>/trials/<recipe>-<candidate>/<candidate>-r<k>``) from the base recipe with the
candidate's model, width, pooling and input size, QAT off. The search state (``tune.json``) is
written after every finished trial, never during one: an interrupted search resumes with the
trials it has, and the trial it was in runs again from scratch.
"""

from __future__ import annotations

import dataclasses
import math
import time

from cnnedge.recipe import ModelConfig, Recipe, set_image_size
from cnnedge.tune.space import Candidate

ETA = 3


def trial_recipe(base: Recipe, c: Candidate, steps: int | None, weights: str | None) -> Recipe:
    """The base recipe training candidate ``c`` for ``steps`` steps from ``weights``; ``steps``
    None: the base recipe's whole schedule (the final rung), QAT off either way."""
    r = dataclasses.replace(
        base,
        name=f"{base.name}-{c.id}",
        model=ModelConfig(name=c.model, kwargs=c.kwargs(), weights=weights),
        qat=dataclasses.replace(base.qat, enabled=False),
        data=with_color(base.data, c),
    )
    if steps is not None:  # one short epoch: a brief warm-up, then the schedule; no mixing
        r = dataclasses.replace(
            r,
            train=dataclasses.replace(base.train, epochs=1, steps_per_epoch=int(steps), max_minutes=None),
            optim=dataclasses.replace(base.optim, warmup_epochs=min(base.optim.warmup_epochs, 0.1)),
            augment=dataclasses.replace(base.augment, mixup=0.0, cutmix=0.0, mix_ramp=(0.0, 0.0)),
        )
    return set_image_size(r, (c.size, c.size))


def with_color(data, c: Candidate):
    """The base recipe's data section, converted to grey for a grey candidate."""
    return dataclasses.replace(data, channels=1) if c.grey else data


def start_weights(base: Recipe, c: Candidate) -> str | None:
    """The shipped checkpoint a candidate starts from: the base recipe's, when the candidate
    is that checkpoint's member at full width (new classes get a new head; a grey candidate
    gets the first layer's colour filters summed, as for any grey model)."""
    from cnnedge import weights

    w = base.model.weights
    if (
        w
        and weights.is_reference(w)
        and c.model == weights.info(w)["model"]
        and c.width == 1.0
        and c.pool == "max"
        and c.kernel == 3
    ):
        return w
    return None


class Bases:
    """The base recipe of each candidate. A named recipe (``--recipe``) is the base of all. For
    ``--data`` it is the automatic recipe ``train --data`` makes for the candidate's input size
    (its augmentation depends on the size): fine-tuning the shipped checkpoint for a candidate
    that can start from it, from scratch (its own learning rate) for the others."""

    def __init__(self, recipe, data):
        self.recipe, self.data, self._cache = recipe, data, {}

    def __call__(self, c: Candidate) -> Recipe:
        from cnnedge.auto import resolve_recipe
        from cnnedge.recipe import check

        if self.recipe is not None:
            key = ("named",)
        else:
            ref = self._auto(c.size, None)
            key = (c.size, "ref" if start_weights(ref, c) else "none")
        if key not in self._cache:
            self._cache[key] = (
                check(resolve_recipe(self.recipe, data=self.data)[0])
                if self.recipe is not None
                else self._auto(c.size, None if key[1] == "ref" else "none")
            )
        return self._cache[key]

    def _auto(self, size: int, weights):
        from cnnedge.auto import resolve_recipe
        from cnnedge.recipe import check

        key = (size, weights or "auto")
        if key not in self._cache:
            self._cache[key] = check(
                resolve_recipe(None, data=self.data, weights=weights, image_size=f"{size}x{size}")[0]
            )
        return self._cache[key]


def rungs(n: int) -> int:
    """How many rungs successive halving takes to go from ``n`` candidates to one."""
    return max(1, math.ceil(math.log(max(n, 1), ETA)) + 1)


def halve(scored: list[tuple[str, float]]) -> list[str]:
    """The ids of the best third (at least one) of ``(id, accuracy)``."""
    keep = max(1, math.ceil(len(scored) / ETA))
    return [i for i, _ in sorted(scored, key=lambda t: (-t[1], t[0]))[:keep]]


def run_trial(
    base: Recipe, c: Candidate, rung: int, steps: int | None, prev_run, trials_dir, log=None
) -> dict:
    """Train one trial (overwriting a half-finished run of the same name); its record.
    ``steps`` None: the final rung, the base recipe's whole schedule from the candidate's own
    start (what ``winner.yaml`` retrains, QAT aside)."""
    from cnnedge.train import train

    weights = str(prev_run) if prev_run else start_weights(base, c)
    name = f"{c.id}-r{rung}"
    if log:
        log(announce(base, c, rung, steps, prev_run))
    import shutil
    from pathlib import Path

    recipe = trial_recipe(base, c, steps, weights)
    run = Path(trials_dir) / recipe.name / name
    for stale in (run, run.with_name(run.name + ".old")):  # a killed trial's leftovers
        shutil.rmtree(stale, ignore_errors=True)
    t0 = time.monotonic()
    res = train(recipe, runs_dir=trials_dir, name=name, verbose=0)
    acc = res.summary.get("best_val_accuracy")
    return {
        "id": c.id,
        "rung": rung,
        "steps": steps,
        "run": str(Path(res.run_dir).resolve()),
        "final": steps is None,
        "val_accuracy": None if acc is None else float(acc),
        "seconds": round(time.monotonic() - t0, 1),
        "start": weights,
    }


def announce(base: Recipe, c: Candidate, rung: int, steps: int | None, prev_run) -> str:
    """The progress line of a trial."""
    weights = str(prev_run) if prev_run else start_weights(base, c)
    what = "the full schedule" if steps is None else f"{steps} steps"
    return f"rung {rung}: {c.id}, {what}" + (f" from {weights}" if weights else "")


def run_trials(specs: list, jobs: int, on_done, past_deadline, log=None) -> bool:
    """Train the trials ``specs`` (:func:`run_trial`'s arguments but ``log``, a tuple each),
    one at a time or ``jobs`` at once in fresh processes that share the cores between them;
    ``on_done(record)`` as each finishes. No trial starts once ``past_deadline(running)`` (a
    trial running counts as one that ran); those running finish. A failed trial lets the
    others finish and be recorded, then raises; an interruption stops them, none recorded.
    False when the deadline stopped it."""
    if jobs <= 1:
        for spec in specs:
            if past_deadline(False):
                return False
            on_done(run_trial(*spec, log))
        return True
    import concurrent.futures as cf
    import multiprocessing

    pending, running, stopped, failed = list(specs), set(), False, None
    ctx = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    with cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker, initargs=(_share(jobs),)) as pool:
        try:
            while pending or running:
                while pending and len(running) < jobs and not failed:
                    if stopped := stopped or past_deadline(bool(running)):
                        break
                    spec = pending.pop(0)
                    if log:
                        log(announce(*spec[:5]))
                    running.add(pool.submit(run_trial, *spec))
                if not running:
                    break
                done, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    if f.exception() is not None:
                        failed = failed or f.exception()
                    else:
                        on_done(f.result())
        except BaseException:  # Ctrl-C, SIGTERM: the trials stop too (a rerun starts them over)
            for child in multiprocessing.active_children():
                child.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if failed is not None:
        raise failed
    return not stopped


def _share(jobs: int) -> int:
    """The threads each of ``jobs`` trial processes gets: the cores this process may use."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // jobs)


def _worker(threads: int) -> None:
    """A trial process: its share of the cores (set before TensorFlow starts its pools), and
    GPU memory taken as needed (the first process would otherwise hold nearly all of it)."""
    import os

    os.environ["OMP_NUM_THREADS"] = str(threads)
    from cnnedge.backend import tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
