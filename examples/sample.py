"""Writes a PNG grid of samples from a saved model.

    python examples/sample.py --model_dir=runs/flowpp_w1a1_small --num=64 --temperature=0.9 --out=grid.png
"""

import os

import keras_bdgm  # noqa: F401
from absl import app, flags

from keras_bdgm import experiment

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A model_dir written by train.py.", required=True)
flags.DEFINE_integer("num", 64, "Number of samples.")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature (scales the prior's standard deviation).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out", None, "PNG path (default: <model_dir>/samples_t<temperature>.png).")


def main(argv):
    del argv
    if FLAGS.num < 1:
        raise app.UsageError("--num must be >= 1.")
    model = experiment.load_model(FLAGS.model_dir)
    out = FLAGS.out or os.path.join(FLAGS.model_dir, f"samples_t{FLAGS.temperature:g}.png")
    experiment.write_sample_grid(model, out, num=FLAGS.num, temperature=FLAGS.temperature, seed=FLAGS.seed)
    print(out)


if __name__ == "__main__":
    app.run(main)
