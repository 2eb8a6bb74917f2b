"""Keras callbacks of `keras_bdgm.runs.experiment.train`, and `run_callbacks`, the list a run fits with.

* `SampleGrid`: a grid of samples in TensorBoard after every epoch; never stops a run.
* `Throughput`: training images per second, timed over train steps only, leaving out the
  first step of each `fit` (which traces the step function).
* `DivergenceGuard`: stops training with `DivergedError` as soon as the objective is not
  finite or most of an epoch's updates were skipped, before anything of that epoch is saved.
* `RunRecorder`: stores each epoch's logs and timing in the run's state (`run_dir.Run`).

Example:

    throughput = Throughput(batch_size=64)
    model.fit(ds, epochs=3, steps_per_epoch=100,
              callbacks=[DivergenceGuard(steps_per_epoch=100), throughput])
    throughput.images_per_second
"""

import math
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from keras_bdgm import image_grid

from keras_bdgm.runs import run_dir
from keras_bdgm.runs.errors import DivergedError


class SampleGrid(tf.keras.callbacks.Callback):
    """Writes a grid of `num` samples to TensorBoard after every epoch.

    A grid that cannot be drawn (e.g. from a diverged model) is logged and skipped.
    """

    def __init__(self, log_dir, num=16, seed=0):
        super().__init__()
        self.num, self.seed = num, seed
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples"))

    def on_epoch_end(self, epoch, logs=None):
        try:
            grid = image_grid.sample_grid(self.model, self.num, seed=self.seed)
        except Exception as err:  # pylint: disable=broad-except  (a grid is never worth a run)
            logging.warning("No sample grid after epoch %d: %s", epoch + 1, str(err).splitlines()[0])
            return
        with self.writer.as_default():
            tf.summary.image("samples", grid[None], step=epoch)
        self.writer.flush()


class Throughput(tf.keras.callbacks.Callback):
    """Training images per second over the train steps, per epoch and in all.

    Times each step from its start to its end (callbacks in between are not counted) and
    leaves out the first step of every `fit`, which includes tracing.
    """

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = int(batch_size)
        self.epoch_images, self.epoch_seconds = {}, {}

    def on_train_begin(self, logs=None):
        self._first = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self.epoch_images[epoch], self.epoch_seconds[epoch] = 0, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._first:
            self._first = False
            return
        self.epoch_seconds[self._epoch] += time.perf_counter() - self._start
        self.epoch_images[self._epoch] += self.batch_size

    @property
    def images_per_second(self):
        seconds = sum(self.epoch_seconds.values())
        return sum(self.epoch_images.values()) / seconds if seconds > 0 else None


def all_finite(model):
    """True when every floating-point variable of `model` is finite."""
    return all(np.isfinite(w.numpy()).all() for w in model.weights if w.dtype.is_floating)


class DivergenceGuard(tf.keras.callbacks.Callback):
    """Raises `DivergedError` when more than `max_skipped` of an epoch's `steps_per_epoch`
    updates were skipped, or when `objective` is not finite though some step updated or the
    weights are not finite (a skipped step's non-finite loss is not in the model's running
    mean).

    It acts after the offending step, before the epoch ends, so the checkpoints of the
    last good epoch stay the newest ones.
    """

    def __init__(self, steps_per_epoch, objective="bits_per_dim", max_skipped=0.5):
        super().__init__()
        self.steps_per_epoch, self.objective, self.max_skipped = int(steps_per_epoch), objective, max_skipped

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        where = f"epoch {self._epoch + 1}, step {batch + 1}"
        value = logs.get(self.objective)
        skipped = logs.get("skipped_steps")
        # The model's running mean leaves out a skipped step's non-finite loss: it is
        # non-finite only while every step so far was skipped, which the count below judges;
        # non-finite weights (every later step would be skipped too) end the run at once.
        all_skipped = skipped is not None and float(skipped) >= batch + 1
        if value is not None and not math.isfinite(float(value)) and (not all_skipped or not all_finite(self.model)):
            raise DivergedError(f"Training diverged at {where}: {self.objective} is {float(value)}.")
        if skipped is not None and float(skipped) > self.max_skipped * self.steps_per_epoch:
            raise DivergedError(
                f"Training diverged at {where}: {int(float(skipped))} of the epoch's "
                f"{self.steps_per_epoch} updates were skipped (non-finite or huge gradients)."
            )


class RunRecorder(tf.keras.callbacks.Callback):
    """Stores every finished epoch's logs and timing in `run` (a `run_dir.Run`).

    Put it before `BackupAndRestore`: an epoch is recorded before its backup is written,
    and a resumed run re-records (identically) the epochs it trains again.
    """

    def __init__(self, run, throughput):
        super().__init__()
        self.run, self.throughput = run, throughput

    def on_epoch_end(self, epoch, logs=None):
        timing = {
            "timed_images": self.throughput.epoch_images.get(epoch, 0),
            "timed_seconds": self.throughput.epoch_seconds.get(epoch, 0.0),
        }
        self.run.record_epoch(epoch, {**(logs or {}), **timing})


def run_callbacks(run, steps_per_epoch, batch_size, seed=0, extra=(), chief=True):
    """The callbacks of a run's `fit` in `run` (a `run_dir.Run`), in the order they act.

    chief=False (a non-chief worker of a multi-worker run, whose `run` is read-only): the
    same callbacks but `SampleGrid`. Every worker must save the checkpoints and the backup
    (reading the metrics' SyncOnRead variables is a collective); Keras writes a non-chief
    worker's copies to temporary `workertemp_<id>` folders and deletes them.

    Returns (callbacks, throughput): the list, and its `Throughput` (for the report).
    """
    throughput = Throughput(batch_size)
    log_dir = run.file(run_dir.LOG_DIR)
    callbacks = [
        DivergenceGuard(steps_per_epoch),  # first: acts before anything is saved
        throughput,
        # An epoch's logs and checkpoint are saved before its backup: a run killed in
        # between trains the epoch again and saves both again (the same values).
        RunRecorder(run, throughput),
        tf.keras.callbacks.ModelCheckpoint(
            os.path.join(run.file(run_dir.CHECKPOINT_DIR), "epoch{epoch:03d}"), save_weights_only=True
        ),
        # The backup is kept after fit: the evaluation and the files are made from it.
        tf.keras.callbacks.BackupAndRestore(run.file(run_dir.BACKUP_DIR), delete_checkpoint=False),
        tf.keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0),
        *([SampleGrid(log_dir, num=16, seed=seed)] if chief else []),
        *extra,
    ]
    return callbacks, throughput
