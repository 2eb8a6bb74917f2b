"""Test bits/dim of a saved model.

    python examples/evaluate.py --model_dir=runs/flowpp_w1a1_small --num_samples=1

--num_samples > 1 gives the importance-weighted bound. By default the dataset, split,
number of images, batch size and seed are the run's own, so its report's figure is
reproduced.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines off; before it loads

import keras_bdgm  # noqa: E402,F401
from absl import flags  # noqa: E402

from keras_bdgm import cli, data, experiment, pretrained, run_dir  # noqa: E402
from keras_bdgm.errors import ConfigError, DataNotFoundError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A model_dir written by train.py.")
flags.DEFINE_string("pretrained", None, "Instead of --model_dir: a model shipped with keras_bdgm, e.g. resnet_vae/w1a1 "
                    "(evaluated on its dataset's test split).")
flags.DEFINE_string("dataset", None, "Dataset (default: the run's).")
flags.DEFINE_string("split", None, "Split to evaluate (default: the run's evaluation split, else test).")
flags.DEFINE_integer("batch_size", None, "Batch size (default: the run's, which with its seed reproduces its figure).")
flags.DEFINE_integer("num_samples", 1, "Importance samples per image (1 = the training bound).")
flags.DEFINE_integer("eval_examples", None, "Evaluate this many images (default: the run's setting, else all).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir (default: the run's).")
flags.DEFINE_integer("seed", None, "Noise seed (default: the run's, so its figure is reproduced).")


def main(argv):
    del argv
    if FLAGS.num_samples < 1:
        raise ConfigError(f"--num_samples must be >= 1, got {FLAGS.num_samples}.")
    if FLAGS.batch_size is not None and FLAGS.batch_size < 1:
        raise ConfigError(f"--batch_size must be >= 1, got {FLAGS.batch_size}.")
    if (FLAGS.model_dir is None) == (FLAGS.pretrained is None):
        raise ConfigError("Pass exactly one of --model_dir (a run of train.py) or --pretrained (e.g. resnet_vae/w1a1).")
    if FLAGS.pretrained:
        model = pretrained.load(FLAGS.pretrained)
        settings = {k: model.record[k] for k in ("dataset", "batch_size", "seed") if k in model.record}
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
    try:
        ds = data.load(dataset, split, batch_size=FLAGS.batch_size or settings.get("batch_size", 64),
                       shuffle=False, data_dir=FLAGS.data_dir or settings.get("data_dir"),
                       manual_dir=settings.get("manual_dir"),
                       limit=FLAGS.eval_examples or settings.get("eval_examples"))
    except FileNotFoundError as err:
        raise DataNotFoundError(str(err)) from None
    except ValueError as err:
        raise ConfigError(str(err)) from None
    seed = FLAGS.seed if FLAGS.seed is not None else settings.get("seed", 0)
    bpd = experiment.evaluate_bits_per_dim(model, ds, num_samples=FLAGS.num_samples, seed=seed)
    print(json.dumps({"dataset": dataset, "split": split, "num_samples": FLAGS.num_samples,
                      "bits_per_dim": bpd}))


if __name__ == "__main__":
    cli.run(main)
