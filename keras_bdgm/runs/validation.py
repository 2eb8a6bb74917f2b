"""Validation curve during training: held-out bits/dim every few steps, with fixed noise.

`ValidationCurve` evaluates the model's single-sample bound on a fixed set of held-out
images every `every_steps` optimizer steps and at the end of training:

    val_bits_per_dim(step) = mean_i -log p_bound(x_i) / (D ln 2),
    noise of batch j drawn from the stateless seed (seed, j)

so two runs (or the two sides of a resumed run) see exactly the same noise and the curve
depends only on the weights. It never draws from the model's training generator, so adding
the callback does not change training. Points go to `<path>` (JSON, appended on resume) and
to TensorBoard (`val_bits_per_dim` against the step).

Example:

    val = keras_bdgm.datasets.load("fashion_mnist", "train[90%:]", batch_size=500, limit=1000)
    curve = ValidationCurve(np.concatenate(list(val)), every_steps=100,
                            path="runs/a/validation_curve.json")
    model.fit(train, epochs=10, steps_per_epoch=100, callbacks=[curve])
    curve.points  # [{"step": 100, "val_bits_per_dim": ...}, ...]
"""

import json
import os

import numpy as np
import tensorflow as tf

from keras_bdgm.models.evaluation import evaluate_bits_per_dim


class ValidationCurve(tf.keras.callbacks.Callback):
    """Held-out bits/dim every `every_steps` steps (and after the last step).

    Args:
      images: uint8 [N, H, W, C] held-out images (e.g. the last 10% of the train split).
      every_steps: evaluation period in optimizer steps.
      path: JSON file for the points; existing points (an interrupted run) are kept.
      batch_size: images per evaluation batch (a fixed shape, compiled once).
      seed: base of the per-batch noise seeds.
      log_dir: optional TensorBoard directory.
    """

    def __init__(self, images, every_steps, path=None, batch_size=250, seed=0, log_dir=None):
        super().__init__()
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
            raise ValueError(
                f"ValidationCurve needs uint8 images [N, H, W, C] with N >= 1, got "
                f"{images.dtype} {images.shape}."
            )
        if int(every_steps) < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps!r}.")
        self.images, self.every_steps = images, int(every_steps)
        self.path, self.batch_size, self.seed = path, int(batch_size), int(seed)
        self.points = []
        if path and os.path.exists(path):
            with open(path) as f:
                self.points = json.load(f)
        self._writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation")) if log_dir else None

    def evaluate(self):
        """Mean held-out bits/dim of the current weights (float64); batch j's noise from
        (seed, j), compiled once (`keras_bdgm.models.evaluation`)."""
        batches = [self.images[i:i + self.batch_size] for i in range(0, len(self.images), self.batch_size)]
        return evaluate_bits_per_dim(self.model, batches, seed=self.seed, verbose=0)

    def _record(self):
        step = self._step
        if self.points and self.points[-1]["step"] >= step:
            return
        value = self.evaluate()
        self.points.append({"step": step, "val_bits_per_dim": value})
        if self._writer is not None:
            with self._writer.as_default():
                tf.summary.scalar("val_bits_per_dim", value, step=step)
            self._writer.flush()
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.points, f, indent=1)
            os.replace(tmp, self.path)

    def on_train_begin(self, logs=None):
        # Counted on the host: no device read per step (`fit` runs one step per batch).
        per_call = getattr(self.model, "_steps_per_execution", None)
        if per_call is not None and int(per_call.numpy()) != 1:
            raise ValueError("ValidationCurve counts one step per batch; compile the model with "
                             "steps_per_execution=1.")
        self._step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every_steps == 0:
            self._record()

    def on_train_end(self, logs=None):
        self._record()
