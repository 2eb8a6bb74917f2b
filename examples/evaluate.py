"""Test bits/dim of a saved model.

    python examples/evaluate.py --model_dir=runs/flowpp_w1a1_small --num_samples=1
    python examples/evaluate.py --pretrained=resnet_vae/w1a1 --num_samples=1000 --eval_examples=1000

--num_samples > 1 gives the importance-weighted bound. By default the dataset, split,
number of images, evaluation batch size and seed are the run's own, so its report's figure
is reproduced: batch b of the evaluation draws its noise from the seed pair (seed, b), so the
figure depends on how the images are batched. The run's batch size is its eval_batch_size
(for runs from before that setting, and the shipped models: its training batch_size); other
values of --eval_batch_size give an equally valid figure that differs by Monte Carlo noise.
Where neither is known the default is keras_bdgm.models.evaluation.DEFAULT_BATCH_SIZE (256, the
fastest on 2 CPU cores for the small presets).

The result is one JSON line on stdout; a progress bar (batches, running bits/dim, and per
chunk of samples when --num_samples > 1) goes to stderr.
"""

import contextlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines off; before it loads

import keras_bdgm  # noqa: E402,F401
from absl import flags  # noqa: E402

from keras_bdgm import datasets, pretrained  # noqa: E402

from keras_bdgm.models import evaluation  # noqa: E402

from keras_bdgm.runs import cli, experiment, run_dir  # noqa: E402
from keras_bdgm.runs.errors import ConfigError, DataNotFoundError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A model_dir written by train.py.")
flags.DEFINE_string("pretrained", None, "Instead of --model_dir: a model shipped with keras_bdgm, e.g. resnet_vae/w1a1 "
                    "(evaluated on its dataset's test split).")
flags.DEFINE_string("dataset", None, "Dataset (default: the run's).")
flags.DEFINE_string("split", None, "Split to evaluate (default: the run's evaluation split, else test).")
flags.DEFINE_integer("eval_batch_size", None, "Images per evaluation batch (default: the run's, which with its "
                     "seed reproduces its figure; else 256).")
flags.DEFINE_integer("batch_size", None, "Deprecated name of --eval_batch_size.")
flags.DEFINE_integer("num_samples", 1, "Importance samples per image (1 = the training bound).")
flags.DEFINE_integer("samples_per_chunk", None, "Importance samples per image evaluated at once (default: about "
                     "1024 image-sample rows per chunk); lower it if memory runs out.")
flags.DEFINE_integer("eval_examples", None, "Evaluate this many images (default: the run's setting, else all).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir (default: the run's).")
flags.DEFINE_integer("seed", None, "Noise seed (default: the run's, so its figure is reproduced).")
flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.")


def _positive(name, value):
    if value is not None and value < 1:
        raise ConfigError(f"--{name} must be >= 1, got {value}.")


def eval_batch_size(settings):
    """The flag's value, else the batch size the run's figure was computed with, else 256.

    Runs with an `eval_batch_size` setting were evaluated in batches of it (None there meant
    the default); older runs and the shipped models' records, in batches of `batch_size`.
    """
    if FLAGS.eval_batch_size is not None and FLAGS.batch_size is not None and FLAGS.eval_batch_size != FLAGS.batch_size:
        raise ConfigError("Pass one of --eval_batch_size and --batch_size (its deprecated name), not both.")
    if FLAGS.eval_batch_size is not None or FLAGS.batch_size is not None:
        return FLAGS.eval_batch_size or FLAGS.batch_size
    if "eval_batch_size" in settings:
        return settings["eval_batch_size"] or evaluation.DEFAULT_BATCH_SIZE
    return settings.get("batch_size") or evaluation.DEFAULT_BATCH_SIZE


def main(argv):
    del argv
    if FLAGS.num_samples < 1:
        raise ConfigError(f"--num_samples must be >= 1, got {FLAGS.num_samples}.")
    for name in ("eval_batch_size", "batch_size", "samples_per_chunk"):
        _positive(name, FLAGS[name].value)
    if (FLAGS.model_dir is None) == (FLAGS.pretrained is None):
        raise ConfigError("Pass exactly one of --model_dir (a run of train.py) or --pretrained (e.g. resnet_vae/w1a1).")
    if FLAGS.pretrained:
        model = pretrained.load(FLAGS.pretrained)
        keys = ("dataset", "batch_size", "eval_batch_size", "seed")
        settings = {k: model.record[k] for k in keys if k in model.record}
    else:
        model = experiment.load_model(FLAGS.model_dir)  # first: a missing run is the likelier mistake
        run = run_dir.Run(FLAGS.model_dir)
        report_path = run.file(run_dir.REPORT_FILE)
        settings = {**(run.stored_config() or {}),
                    **(json.load(open(report_path)) if os.path.exists(report_path) else {})}
    dataset = FLAGS.dataset or settings.get("dataset")
    if dataset is None:
        raise ConfigError(f"{FLAGS.model_dir} has no report.json naming its dataset; pass --dataset.")
    split = FLAGS.split or settings.get("eval_split") or "test"
    batch_size = eval_batch_size(settings)
    try:
        ds = datasets.load(dataset, split, batch_size=batch_size, shuffle=False,
                       data_dir=FLAGS.data_dir or settings.get("data_dir"),
                       manual_dir=settings.get("manual_dir"),
                       limit=FLAGS.eval_examples or settings.get("eval_examples"))
    except FileNotFoundError as err:
        raise DataNotFoundError(str(err)) from None
    except ValueError as err:
        raise ConfigError(str(err)) from None
    seed = FLAGS.seed if FLAGS.seed is not None else settings.get("seed", 0)
    with contextlib.redirect_stdout(sys.stderr):  # the progress bar; stdout keeps the result alone
        bpd = evaluation.evaluate_bits_per_dim(model, ds, num_samples=FLAGS.num_samples, seed=seed,
                                               samples_per_chunk=FLAGS.samples_per_chunk,
                                               verbose=1 if FLAGS.progress else 0)
    print(json.dumps({"dataset": dataset, "split": split, "num_samples": FLAGS.num_samples,
                      "eval_batch_size": batch_size, "seed": seed, "bits_per_dim": bpd}))


if __name__ == "__main__":
    cli.run(main)
