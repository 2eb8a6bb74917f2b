"""Trains a binary deep generative model and writes its report, samples and model files.

    python examples/train.py --model=flowpp --precision=w1a1 --preset=small \
        --dataset=fashion_mnist --epochs=10 --model_dir=runs/flowpp_w1a1

A killed run continues where it stopped (training, evaluation or writing its files) when
started again with the same flags; --epochs may grow to train an unfinished run longer.
Flags that change the model or its training must match the run in --model_dir (else it
stops and names them); pass --overwrite to start over there.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines off; before it loads

import keras_bdgm  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import flags  # noqa: E402

from keras_bdgm import cli, experiment  # noqa: E402
from keras_bdgm.errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "flowpp", list(experiment.MODELS), "Which model to train.")
flags.DEFINE_enum("precision", "w1a1", ["w32a32", "w1a32", "w1a1"], "Residual-layer weights/activations bits.")
flags.DEFINE_string("preset", "small", "Architecture preset (e.g. small, paper).")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name (see keras_bdgm.data.KNOWN_DATASETS) or folder:/path.")
flags.DEFINE_integer("epochs", 10, "Epochs to train.")
flags.DEFINE_integer("steps_per_epoch", 100, "Training steps per epoch.")
flags.DEFINE_integer("batch_size", 64, "Global batch size.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate; default per model (flowpp 1e-3; resnet_vae 2e-3 decaying to 5e-4).")
flags.DEFINE_string("model_dir", "runs/flowpp_w1a1_small", "Where checkpoints, logs, report and model files go.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_enum("strategy", "default", list(experiment.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_string("tpu", None, "TPU name or address, with --strategy=tpu.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir.")
flags.DEFINE_string("manual_dir", None, "tensorflow-datasets manual_dir (downsampled ImageNet).")
flags.DEFINE_string("eval_split", None, "Split for the test bits/dim (default: test; for a flat image folder, "
                    "its last 10%, train[90%:], with training on the rest).")
flags.DEFINE_integer("eval_examples", None, "Evaluate test bits/dim on this many images of --eval_split (default: all).")
flags.DEFINE_string("overrides", "{}", 'JSON object of preset overrides, e.g. \'{"width": 48}\'.')
flags.DEFINE_string("train_split", None, "Split to train on (default: train, or the rest of it beside a "
                    "train slice given as --eval_split), e.g. 'train[:90%]'.")
flags.DEFINE_string("validation_split", None, "Held-out split for the validation curve, e.g. 'train[90%:]'.")
flags.DEFINE_integer("validation_examples", 1000, "Images of --validation_split evaluated for the curve.")
flags.DEFINE_integer("validation_every", 0, "Evaluate validation bits/dim every this many steps (0: never).")
flags.DEFINE_bool("overwrite", False, "Start over in a model_dir that holds a run (finished or not).")


def main(argv):
    del argv
    try:
        overrides = json.loads(FLAGS.overrides)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--overrides must be a JSON object such as '{{\"width\": 48}}': {e}.") from None
    config = experiment.TrainConfig(
        model=FLAGS.model, precision=FLAGS.precision, preset=FLAGS.preset, dataset=FLAGS.dataset,
        epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate, model_dir=FLAGS.model_dir, seed=FLAGS.seed,
        strategy=FLAGS.strategy, tpu=FLAGS.tpu, data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
        eval_split=FLAGS.eval_split, eval_examples=FLAGS.eval_examples, overrides=overrides,
        overwrite=FLAGS.overwrite, train_split=FLAGS.train_split, validation_split=FLAGS.validation_split,
        validation_examples=FLAGS.validation_examples, validation_every=FLAGS.validation_every,
    )
    report = experiment.train(config)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    cli.run(main)
