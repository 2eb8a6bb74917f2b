"""keras-tuner search over residual width and precision; prints a table of trials.

    python examples/width_search.py --model=flowpp --widths=16,32 --precisions=w1a32,w1a1 \
        --epochs=1 --steps_per_epoch=50 --model_dir=runs/width_search

Each trial trains with examples/train.py's logic, is scored by validation bits/dim (the last
10% of the training split) and reports its memory.
"""

import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines off; before it loads

import keras_bdgm  # noqa: E402,F401
from absl import flags  # noqa: E402

from keras_bdgm.runs import cli, experiment, tuning  # noqa: E402
from keras_bdgm.runs.errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
cli.define_flags("model", "preset", "overrides", "dataset", "data_dir", "epochs", "steps_per_epoch", "batch_size",
                 "seed", "model_dir", "train_split", "validation_split", "eval_examples",
                 epochs=1, steps_per_epoch=50, model_dir="runs/width_search", train_split="train[:90%]",
                 validation_split="train[90%:]", eval_examples=1000,
                 help_model="Which model.", help_epochs="Epochs per trial.", help_model_dir="Where the trials go.",
                 help_overrides="JSON object of preset overrides applied to every trial.",
                 help_train_split="Split the trials train on (disjoint from the validation split).",
                 help_validation_split="Split that scores the trials.",
                 help_eval_examples="Validation images per trial.")
flags.DEFINE_list("widths", ["16", "32"], "Residual widths to try.")
flags.DEFINE_list("precisions", ["w1a1"], "Precisions to try.")
flags.DEFINE_integer("max_trials", None, "At most this many trials (default: the whole grid).")
flags.DEFINE_float("minutes_per_trial", None, "Train each trial for this many minutes (at most epochs x steps).")


def _checked_config():
    """The trials' base config, after checking every trial's settings and the data."""
    overrides = cli.overrides()
    try:
        widths = [int(w) for w in FLAGS.widths]
    except ValueError as err:
        raise ConfigError(f"--widths must list integers, e.g. --widths=16,32: {err}.") from None
    if not widths or not FLAGS.precisions:
        raise ConfigError("--widths and --precisions must each list at least one value.")
    config = experiment.TrainConfig(
        model=FLAGS.model, preset=FLAGS.preset, dataset=FLAGS.dataset, epochs=FLAGS.epochs,
        steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size,
        model_dir=FLAGS.model_dir, data_dir=FLAGS.data_dir, eval_examples=FLAGS.eval_examples,
        seed=FLAGS.seed, verbose=2, overrides=overrides,
    )
    trials = [
        dataclasses.replace(config, precision=precision, overrides={**config.overrides, "width": width},
                            train_split=FLAGS.train_split, eval_split=FLAGS.validation_split).resolved()
        for precision in FLAGS.precisions for width in widths
    ]
    experiment.check_data(trials[0])
    return config, widths


def main(argv):
    del argv
    config, widths = _checked_config()
    tuner = tuning.WidthSearch(
        config, widths=widths, precisions=FLAGS.precisions, max_trials=FLAGS.max_trials,
        validation_split=FLAGS.validation_split, train_split=FLAGS.train_split,
        seconds_per_trial=FLAGS.minutes_per_trial and 60 * FLAGS.minutes_per_trial,
    )
    tuner.search()
    rows = tuner.results()
    print(tuning.format_table(rows))
    failed = [r["trial"] for r in rows if r["status"] != "COMPLETED"]
    if failed:
        print(f"width_search.py: error: trial(s) {', '.join(failed)} of {len(rows)} failed "
              "(their errors are above); the table lacks their results.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
