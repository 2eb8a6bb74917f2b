"""Trains a binary deep generative model and writes its report, samples and model files.

    python examples/train.py --model=flowpp --precision=w1a1 --preset=small \
        --dataset=fashion_mnist --epochs=10 --model_dir=runs/flowpp_w1a1

A killed run resumes at the epoch it stopped when started again with the same flags.
"""

import json

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
from absl import app, flags

from keras_bdgm import experiment

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
flags.DEFINE_integer("eval_examples", None, "Evaluate test bits/dim on this many test images (default: all).")
flags.DEFINE_string("overrides", "{}", 'JSON dict of preset overrides, e.g. \'{"width": 48}\'.')
flags.DEFINE_string("train_split", "train", "Split to train on, e.g. 'train[:90%]' to hold out a validation slice.")
flags.DEFINE_string("validation_split", None, "Held-out split for the validation curve, e.g. 'train[90%:]'.")
flags.DEFINE_integer("validation_examples", 1000, "Images of --validation_split evaluated for the curve.")
flags.DEFINE_integer("validation_every", 0, "Evaluate validation bits/dim every this many steps (0: never).")
flags.DEFINE_bool("overwrite", False, "Train again in a model_dir that holds a finished run.")


def main(argv):
    del argv
    try:
        overrides = json.loads(FLAGS.overrides)
    except json.JSONDecodeError as e:
        raise app.UsageError(f"--overrides must be a JSON dict: {e}") from e
    config = experiment.TrainConfig(
        model=FLAGS.model, precision=FLAGS.precision, preset=FLAGS.preset, dataset=FLAGS.dataset,
        epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate, model_dir=FLAGS.model_dir, seed=FLAGS.seed,
        strategy=FLAGS.strategy, tpu=FLAGS.tpu, data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
        eval_examples=FLAGS.eval_examples, overrides=overrides, overwrite=FLAGS.overwrite,
        train_split=FLAGS.train_split, validation_split=FLAGS.validation_split,
        validation_examples=FLAGS.validation_examples, validation_every=FLAGS.validation_every,
    )
    report = experiment.train(config)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    app.run(main)
