"""Test bits/dim of a saved model.

    python examples/evaluate.py --model_dir=runs/flowpp_w1a1_small --num_samples=1

--num_samples > 1 gives the importance-weighted bound.
"""

import json
import os

import keras_bdgm  # noqa: F401
from absl import app, flags

from keras_bdgm import data, experiment

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A model_dir written by train.py.", required=True)
flags.DEFINE_string("dataset", None, "Dataset (default: the one in report.json).")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_integer("batch_size", None, "Batch size (default: the report's, which with its seed reproduces its figure).")
flags.DEFINE_integer("num_samples", 1, "Importance samples per image (1 = the training bound).")
flags.DEFINE_integer("eval_examples", None, "Evaluate this many images (default: the report's setting, else all).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir.")
flags.DEFINE_integer("seed", None, "Noise seed (default: the report's, so its figure is reproduced).")


def main(argv):
    del argv
    report_path = os.path.join(FLAGS.model_dir, experiment.REPORT_FILE)
    report = json.load(open(report_path)) if os.path.exists(report_path) else {}
    dataset = FLAGS.dataset or report.get("dataset")
    if dataset is None:
        raise app.UsageError(f"No report.json in {FLAGS.model_dir}; pass --dataset.")
    model = experiment.load_model(FLAGS.model_dir)
    examples = FLAGS.eval_examples or report.get("eval_examples")
    batch_size = FLAGS.batch_size or report.get("batch_size", 64)
    ds = data.load(dataset, FLAGS.split, batch_size=batch_size, shuffle=False,
                   data_dir=FLAGS.data_dir, limit=examples)
    seed = FLAGS.seed if FLAGS.seed is not None else report.get("seed", 0)
    bpd = experiment.evaluate_bits_per_dim(model, ds, num_samples=FLAGS.num_samples, seed=seed)
    print(json.dumps({"dataset": dataset, "split": FLAGS.split, "num_samples": FLAGS.num_samples,
                      "bits_per_dim": bpd}))


if __name__ == "__main__":
    app.run(main)
