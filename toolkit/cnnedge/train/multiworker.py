"""A multi-worker job (``strategy="multiworker"``): every worker runs the float epochs on its
shard of the data; the chief writes the run, the others a throwaway folder of their own; a
restarted job continues from the chief's backup (:mod:`cnnedge.distribute`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cnnedge.distribute import (
    backup_callback,
    backup_dir,
    is_chief,
    is_multiworker,
    refuse_multiworker,
    remove_folder,
    shard_by_example,
    worker_folder,
)
from cnnedge.run import Run


@dataclass
class Job:
    """This worker's part: the job's run directory (the chief's) and the callbacks its float
    epochs add (the backup that restarts the job where it stopped)."""

    shared: Path
    chief: bool
    callbacks: list = field(default_factory=list)

    def finished(self) -> None:
        """The job is done: the chief removes its backup."""
        if self.chief:
            remove_folder(backup_dir(self.shared))


def check(dist, recipe) -> None:
    """Refuse what a multi-worker job cannot do (one weight average per worker; a restarted
    job's mixing ramp would restart)."""
    if is_multiworker(dist):
        refuse_multiworker(recipe)


def join(dist, run, state, recipe, runs_dir, name, data):
    """(run, state, data, job) of this worker: the data sharded by example, and for a worker
    that is not the chief its own folder and the chief's state; ``job`` None (and the rest as
    given) outside a multi-worker job. A chief whose job was restarted continues the run."""
    if not is_multiworker(dist):
        return run, state, data, None
    train_ds, val_ds, steps = data
    shared = Path(run.path if run is not None else Path(runs_dir) / recipe.name / (name or "exp"))
    data = (shard_by_example(train_ds), val_ds and shard_by_example(val_ds), steps)
    job = Job(shared, is_chief(dist), [backup_callback(shared)])
    prev = Run(shared)
    restarted = (
        run is None
        and Run.is_run(shared)
        and (shared / Run.STATE).is_file()
        and not prev.state.get("finished")
        and prev.recipe == recipe
    )
    if not job.chief:  # the chief's state, so that every worker saves when it does
        run, state = Run(worker_folder()), dict(prev.state) if restarted else {"epoch": 0}
    elif restarted:  # a restarted job: continue from the backup
        run, state = prev, prev.state
    return run, state, data, job
