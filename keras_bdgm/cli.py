"""What examples/*.py share: one-line errors for the user's mistakes, and quiet logs.

    from keras_bdgm import cli
    ...
    if __name__ == "__main__":
        cli.run(main)

`run(main)` is `absl.app.run(main)`, except that

* a `keras_bdgm.errors.UserError` (bad flag value, missing run, diverged training) prints
  one line, `<script>: error: <what is wrong and the fix>`, to stderr and exits with
  status 2 (1 for a diverged run) instead of a traceback; any other exception is a bug
  and keeps its traceback;
* Ctrl-C prints how to continue the run and exits with status 130;
* Python log messages below WARNING (TensorFlow's checkpoint and tfds INFO lines) are
  off unless asked for with -v/--verbosity.

TensorFlow's own C++ log level is set by the scripts before TensorFlow loads
(`TF_CPP_MIN_LOG_LEVEL`, default 1 there: no INFO lines); see `keras_bdgm._tf_import`.
"""

import os
import sys

from absl import app, flags, logging

from keras_bdgm.errors import DivergedError, UserError


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
