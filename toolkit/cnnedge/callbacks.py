"""Keras callbacks a training run adds on request (the run's own checkpointing is in train.py)."""

from __future__ import annotations

import time


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
                print(f"time budget of {minutes:g} min: stopping after epoch {epoch + 1}",
                      flush=True)
                self.model.stop_training = True

    return Budget()
