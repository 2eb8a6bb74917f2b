"""keras-tuner search over residual width and precision; prints a table of trials.

    python examples/width_search.py --model=flowpp --widths=16,32 --precisions=w1a32,w1a1 \
        --epochs=1 --steps_per_epoch=50 --model_dir=runs/width_search

Each trial trains with examples/train.py's logic, is scored by validation bits/dim (the last
10% of the training split) and reports its memory.
"""

import json

import keras_bdgm  # noqa: F401
from absl import app, flags

from keras_bdgm import experiment, tuning

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "flowpp", list(experiment.MODELS), "Which model.")
flags.DEFINE_list("widths", ["16", "32"], "Residual widths to try.")
flags.DEFINE_list("precisions", ["w1a1"], "Precisions to try.")
flags.DEFINE_string("preset", "small", "Architecture preset.")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name.")
flags.DEFINE_integer("max_trials", None, "At most this many trials (default: the whole grid).")
flags.DEFINE_integer("epochs", 1, "Epochs per trial.")
flags.DEFINE_integer("steps_per_epoch", 50, "Steps per epoch.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("eval_examples", 1000, "Validation images per trial.")
flags.DEFINE_string("model_dir", "runs/width_search", "Where the trials go.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("overrides", "{}", "JSON dict of preset overrides applied to every trial.")


def main(argv):
    del argv
    config = experiment.TrainConfig(
        model=FLAGS.model, preset=FLAGS.preset, dataset=FLAGS.dataset, epochs=FLAGS.epochs,
        steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size,
        model_dir=FLAGS.model_dir, data_dir=FLAGS.data_dir, eval_examples=FLAGS.eval_examples,
        seed=FLAGS.seed, verbose=2, overrides=json.loads(FLAGS.overrides),
    )
    tuner = tuning.WidthSearch(
        config, widths=[int(w) for w in FLAGS.widths], precisions=FLAGS.precisions, max_trials=FLAGS.max_trials
    )
    tuner.search()
    print(tuning.format_table(tuner.results()))


if __name__ == "__main__":
    app.run(main)
