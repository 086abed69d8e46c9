"""tf.distribute for training: the strategy by name, and what a worker of a multi-worker job
does differently.

``--strategy multiworker`` runs the same command on every host of a cluster described by
``TF_CONFIG``. The chief (the "chief" task, else worker 0) writes the run directory; the other
workers save their copies of each checkpoint (a collective operation every worker joins) into a
private temporary folder that is removed at the end. The training data is sharded by example
across workers, and ``BackupAndRestore`` keeps a backup in ``<run>.backup`` beside the run
directory, on storage every worker sees: when a worker is lost, restarting the job (every
worker, same command) continues from the last finished epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from cnnedge.errors import CnnedgeError
from cnnedge.utils import unknown

STRATEGIES = ("none", "mirrored", "multiworker")
COLLECTIVE_TIMEOUT_S = 300  # a lost worker ends the others' collectives with an error, not a hang


def build_strategy(kind: str, logical_cpus: int = 0):
    """'none' | 'mirrored' | 'multiworker' -> a tf.distribute strategy (or the default one)."""
    from cnnedge.backend import tf

    if logical_cpus:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * logical_cpus
            )
        except RuntimeError as e:
            raise CnnedgeError(f"--logical-cpus must be set before TensorFlow starts: {e}")
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if kind == "multiworker":
        _check_tf_config()
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise unknown("strategy", kind, STRATEGIES)


def _check_tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise CnnedgeError(
            "--strategy multiworker needs TF_CONFIG describing the cluster (see docs/training.md)"
        )
    try:
        cfg = json.loads(raw)
        cfg["cluster"], cfg["task"]["type"], int(cfg["task"]["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise CnnedgeError(
            f"TF_CONFIG is not a cluster description ({type(e).__name__}: {e}); "
            f'expected {{"cluster": {{...}}, "task": {{"type": ..., '
            f'"index": ...}}}}'
        ) from None
    return cfg


def devices(dist) -> list[str]:
    try:
        return list(dist.extended.worker_devices)
    except RuntimeError:  # the default (no-op) strategy
        return []


def is_multiworker(dist) -> bool:
    from cnnedge.backend import tf

    return isinstance(dist, tf.distribute.MultiWorkerMirroredStrategy)


def refuse_multiworker(recipe) -> None:
    """Refuse recipe parts that break multi-worker: with ``train.ema`` each worker would keep and
    swap in its own weight average; a restarted job would start its mixing ramp over."""
    parts = [
        (k, fix)
        for k, fix, on in (
            ("train.ema", "train.ema=0", recipe.train.ema),
            ("augment.mixup/cutmix", "augment.mix_prob=0", recipe.augment.mixes),
        )
        if on
    ]
    if parts:
        raise CnnedgeError(
            f"recipe {recipe.name}: {' and '.join(k for k, _ in parts)} "
            f"{'does' if len(parts) == 1 else 'do'} not work multi-worker; set "
            + " and ".join(fix for _, fix in parts)
        )


def is_chief(dist) -> bool:
    """True but for the non-chief workers of a multi-worker job."""
    if not is_multiworker(dist):
        return True
    resolver = dist.cluster_resolver
    kind, index = resolver.task_type, resolver.task_id
    return kind == "chief" or (
        kind == "worker" and index == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )


def worker_folder() -> Path:
    """Where a non-chief worker writes its copies of the checkpoints (removed by the caller;
    one left by a worker that was killed is removed here, once its process is gone)."""
    tmp = Path(tempfile.gettempdir())
    for stale in tmp.glob("cnnedge-worker-*"):
        pid = stale.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"cnnedge-worker-{os.getpid()}-"))


def remove_folder(path) -> None:
    """A worker's private folder, or a finished job's backup."""
    shutil.rmtree(path, ignore_errors=True)


def shard_by_example(ds):
    """Each worker reads every N-th example: a dataset from one file cannot be split by file."""
    from cnnedge.backend import tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def backup_dir(run_path) -> Path:
    """``<run>.backup`` beside the run directory, on storage every worker sees."""
    return Path(run_path).with_name(Path(run_path).name + ".backup")


def backup_callback(run_path):
    """BackupAndRestore in :func:`backup_dir` (shared by the workers)."""
    from cnnedge.backend import keras

    return keras.callbacks.BackupAndRestore(str(backup_dir(run_path)))
