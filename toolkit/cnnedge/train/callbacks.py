"""The Keras callbacks of a run: its checkpoints (float phase: :func:`run_checkpoint`; QAT
phase: :func:`keep_best`) and the time budget. Each is built by a function, so that importing
this module does not load TensorFlow."""

from __future__ import annotations

import os
import time
from typing import Optional

from cnnedge.files import atomic_path
from cnnedge.run import Run


def run_checkpoint(run: Run, state: dict, stop=None, ema=None, val=None, mixed=False):
    """After each float epoch: last and best (on val accuracy) model, metrics, state. With
    weight EMA (``ema``), validation and best.keras are the averaged weights', last.keras the
    raw ones. ``stop``: set by Ctrl-C (an interrupted epoch is not a finished one); ``mixed``:
    without validation, the latest epoch of a mixing run is the best (its train accuracy is on
    mixed labels, which fall as the ramp mixes more)."""
    from cnnedge.backend import keras

    class RunCheckpoint(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # the time of earlier sessions of a resumed run
            self.fit_t0, self.spent = time.time(), state.get("train_seconds", 0.0)

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            if stop is not None and stop.is_set():
                return
            state["train_seconds"] = self.spent + time.time() - self.fit_t0
            logs = dict(logs or {})
            row = {
                "epoch": epoch + 1,
                "seconds": round(time.time() - self.t0, 2),
                "lr": current_lr(self.model.optimizer),
            }
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


def keep_best(rows: list, best: dict, path):
    """After each QAT epoch: its metrics row appended to ``rows``; the model saved to ``path``
    (.h5) when its val accuracy (train without a val split) beats ``best["score"]`` and its loss
    is finite (a diverged epoch is never kept); ``best`` gets the score and epoch."""
    from cnnedge.backend import keras
    from cnnedge.quantize import save_qat

    class KeepBest(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            score = logs.get("val_accuracy", logs.get("accuracy", 0.0))
            rows.append(
                {
                    "epoch": epoch + 1,
                    **{k: float(v) for k, v in logs.items()},
                    "seconds": round(time.time() - self.t0, 2),
                }
            )
            finite = abs(rows[-1].get("loss", 0.0)) < float("inf")  # False for NaN too
            if finite and score > best["score"]:
                best.update(score=float(score), epoch=epoch + 1)
                save_qat(self.model, path)

    return KeepBest()


def time_budget(minutes: float, state: dict):
    """A Keras callback: stop before an epoch that would end past ``minutes`` of training
    (``state["train_seconds"]``: the time of earlier sessions of a resumed run)."""
    from cnnedge.backend import keras

    class Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0, self.spent, self.first = time.time(), state.get("train_seconds", 0.0), None

        def on_epoch_begin(self, epoch, logs=None):
            self.first = epoch if self.first is None else self.first

        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1 - self.first
            used = self.spent + time.time() - self.t0
            per_epoch = (time.time() - self.t0) / max(1, done)
            if used + per_epoch > minutes * 60:
                print(f"time budget of {minutes:g} min: stopping after epoch {epoch + 1}", flush=True)
                self.model.stop_training = True

    return Budget()


def current_lr(opt):
    """The optimizer's learning rate now (a schedule evaluated at its step), or None."""
    lr = opt.learning_rate
    try:
        if callable(lr):
            return float(lr(opt.iterations))
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)
    except Exception:  # noqa: BLE001 - a schedule we cannot evaluate is not worth a crash
        return None


def keras_verbose(verbose: Optional[int]) -> int:
    """Keras ``fit``'s ``verbose``: as given, else a progress bar on a terminal, a line per
    epoch otherwise (a log file)."""
    return (1 if os.isatty(1) else 2) if verbose is None else verbose
