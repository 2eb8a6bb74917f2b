"""Probes a model for a fixed wall time: held-out bits/dim against minutes, before long training.

Candidates are compared at equal wall time (not equal steps): each trains through
`keras_bdgm.runs.experiment.train` (as examples/train.py does, with its validation curve)
until `--minutes` of training wall time have passed, then the run is evaluated and written
as usual. The curve, one point per validation,

    {"step", "wall_minutes", "train_minutes", "val_bits_per_dim"}

(wall minutes since training began, validations and sample grids included; train minutes
inside train steps only) goes to `<model_dir>/probe_curve.json` and is printed as a table.

    .venv/bin/python bench/probe_models.py --model=pixelcnn --precision=w1a1 --preset=small \
        --minutes=20 --validation_every=200 --validation_examples=2000 \
        --model_dir=runs/probe_pixelcnn_w1a1_small

Defaults: Fashion-MNIST, training on train[:90%], validation on the first images of
train[90%:], test bits/dim on the first 2000 test images.
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import keras_bdgm  # noqa: E402,F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from keras_bdgm.runs import cli, experiment, run_dir  # noqa: E402

FLAGS = flags.FLAGS
cli.define_flags("model", "precision", "preset", "overrides", "dataset", "batch_size", "seed", "model_dir",
                 "train_split", "validation_split", "eval_examples",
                 model="pixelcnn", train_split="train[:90%]", validation_split="train[90%:]", eval_examples=2000,
                 model_dir="runs/probe")
flags.DEFINE_float("minutes", 20.0, "Training wall time, in minutes.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate (default: the model's recipe).")
flags.DEFINE_integer("validation_every", 200, "Validation bits/dim every this many steps.")
flags.DEFINE_integer("validation_examples", 2000, "Images of --validation_split evaluated for the curve.")


class WallClock(tf.keras.callbacks.Callback):
    """Stops training after `minutes` of wall time; records the time of every `every` steps.

    Put after the validation curve, so a point's time includes its validation.
    """

    def __init__(self, minutes, every):
        super().__init__()
        self.seconds, self.every = 60.0 * minutes, int(every)
        self.times = []  # {"step", "wall_minutes", "train_minutes"}

    def on_train_begin(self, logs=None):
        self._start, self._in_steps = time.perf_counter(), 0.0
        self._step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self._in_steps += now - self._batch_start
        self._step += 1
        last = now - self._start >= self.seconds
        if self._step % self.every == 0 or last:
            self.times.append({"step": self._step, "wall_minutes": (time.perf_counter() - self._start) / 60.0,
                               "train_minutes": self._in_steps / 60.0})
        if last:
            self.model.stop_training = True


def main(argv):
    del argv
    config = experiment.TrainConfig(
        model=FLAGS.model, precision=FLAGS.precision, preset=FLAGS.preset, dataset=FLAGS.dataset,
        epochs=100_000, steps_per_epoch=FLAGS.validation_every, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate, model_dir=FLAGS.model_dir, seed=FLAGS.seed,
        eval_examples=FLAGS.eval_examples, overrides=cli.overrides(), overwrite=True,
        train_split=FLAGS.train_split, validation_split=FLAGS.validation_split,
        validation_examples=FLAGS.validation_examples, validation_every=FLAGS.validation_every, verbose=2,
    )
    clock = WallClock(FLAGS.minutes, FLAGS.validation_every)
    report = experiment.train(config, callbacks=[clock])
    with open(os.path.join(FLAGS.model_dir, run_dir.VALIDATION_FILE)) as f:
        values = {p["step"]: p["val_bits_per_dim"] for p in json.load(f)}
    curve = [{**t, "val_bits_per_dim": values[t["step"]]} for t in clock.times if t["step"] in values]
    with open(os.path.join(FLAGS.model_dir, "probe_curve.json"), "w") as f:
        json.dump({"settings": config.settings(), "test_bits_per_dim": report["test_bits_per_dim"],
                   "parameters": report["parameters"], "curve": curve}, f, indent=1)
    print(f"{FLAGS.model} {FLAGS.precision} {FLAGS.preset} {json.dumps(config.overrides)}: "
          f"test bits/dim {report['test_bits_per_dim']:.4f} on {FLAGS.eval_examples} images")
    print("| step | wall min | train min | val bits/dim |\n|---|---|---|---|")
    for p in curve:
        print(f"| {p['step']} | {p['wall_minutes']:.1f} | {p['train_minutes']:.1f} | {p['val_bits_per_dim']:.4f} |")


if __name__ == "__main__":
    cli.run(main)
