"""What examples/*.py share: their common flags, one-line errors for the user's mistakes,
and quiet logs.

    from keras_bdgm.runs import cli
    cli.define_flags("model", "dataset", "batch_size", batch_size=128)   # defaults may differ
    ...
    if __name__ == "__main__":
        cli.run(main)

`define_flags(*names, **defaults)` defines the named flags from one table (`FLAG_SPECS`), so
scripts that share a flag share its name, type and help; `overrides()` parses --overrides.

`run(main)` is `absl.app.run(main)`, except that

* a `keras_bdgm.runs.errors.UserError` (bad flag value, missing run, diverged training) prints
  one line, `<script>: error: <what is wrong and the fix>`, to stderr and exits with
  status 2 (1 for a diverged run) instead of a traceback; any other exception is a bug
  and keeps its traceback;
* Ctrl-C prints how to continue the run and exits with status 130;
* Python log messages below WARNING (TensorFlow's checkpoint and tfds INFO lines) are
  off unless asked for with -v/--verbosity.

TensorFlow's own C++ log level is set by the scripts before TensorFlow loads
(`TF_CPP_MIN_LOG_LEVEL`, default 1 there: no INFO lines); see `keras_bdgm._tf_import`.
"""

import json
import os
import sys

from absl import app, flags, logging

from keras_bdgm.runs.errors import ConfigError, DivergedError, UserError
from keras_bdgm.runs.recipes import RECIPES
from keras_bdgm.runs.strategies import STRATEGIES

PRECISIONS = ["w32a32", "w1a32", "w1a1"]

# name: (absl DEFINE function, default, help[, choices])
FLAG_SPECS = {
    "model": (flags.DEFINE_enum, "flowpp", "Which model to train.", list(RECIPES)),
    "precision": (flags.DEFINE_enum, "w1a1", "Residual-layer weights/activations bits.", PRECISIONS),
    "preset": (flags.DEFINE_string, "small", "Architecture preset (e.g. small, paper)."),
    "overrides": (flags.DEFINE_string, "{}", 'JSON object of preset overrides, e.g. \'{"width": 48}\'.'),
    "dataset": (flags.DEFINE_string, "fashion_mnist",
                "Dataset name (see keras_bdgm.datasets.KNOWN_DATASETS) or folder:/path."),
    "data_dir": (flags.DEFINE_string, None, "tensorflow-datasets data_dir."),
    "manual_dir": (flags.DEFINE_string, None, "tensorflow-datasets manual_dir (downsampled ImageNet)."),
    "epochs": (flags.DEFINE_integer, 10, "Epochs to train."),
    "steps_per_epoch": (flags.DEFINE_integer, 100, "Training steps per epoch."),
    "batch_size": (flags.DEFINE_integer, 64, "Global batch size."),
    "seed": (flags.DEFINE_integer, 0, "Random seed."),
    "model_dir": (flags.DEFINE_string, "runs/flowpp_w1a1_small", "Where the run's files go."),
    "train_split": (flags.DEFINE_string, None, "Split to train on, e.g. 'train[:90%]'."),
    "validation_split": (flags.DEFINE_string, None, "Held-out split for validation, e.g. 'train[90%:]'."),
    "eval_examples": (flags.DEFINE_integer, None, "Evaluate on this many images (default: all)."),
    "eval_batch_size": (flags.DEFINE_integer, None, "Images per evaluation batch (default: 256)."),
    "strategy": (flags.DEFINE_enum, "default", "tf.distribute strategy.", list(STRATEGIES)),
}


def define_flags(*names, **defaults):
    """Defines the flags `names` of `FLAG_SPECS`; `defaults` (name=value) replace defaults
    and `help_<name>`="..." replaces a help text."""
    # Registered as the calling script's own flags, so its --help lists them.
    caller = sys._getframe(1).f_globals.get("__name__")  # pylint: disable=protected-access
    module = sys.argv[0] if caller == "__main__" else caller
    for name in names:
        define, default, help_text, *choices = FLAG_SPECS[name]
        default = defaults.get(name, default)
        help_text = defaults.get(f"help_{name}", help_text)
        define(name, default, *choices, help_text, module_name=module)


def overrides():
    """--overrides parsed as JSON (`TrainConfig` checks that it is an object)."""
    try:
        return json.loads(flags.FLAGS.overrides)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--overrides must be a JSON object such as '{{\"width\": 48}}': {err}.") from None


def error_line(err):
    """The one line a script prints for a UserError."""
    return " ".join(str(err).split())


def run(main):
    """absl's app.run(main) with one-line user errors and WARNING-level Python logs."""
    script = os.path.basename(sys.argv[0])

    def wrapped(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except UserError as err:
            print(f"{script}: error: {error_line(err)}", file=sys.stderr)
            sys.exit(1 if isinstance(err, DivergedError) else 2)
        except KeyboardInterrupt:
            print(f"{script}: interrupted; run the same command again to continue.", file=sys.stderr)
            sys.exit(130)

    app.run(wrapped)
