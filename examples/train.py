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

from keras_bdgm.runs import cli, experiment  # noqa: E402

FLAGS = flags.FLAGS
cli.define_flags("model", "precision", "preset", "overrides", "dataset", "data_dir", "manual_dir", "epochs",
                 "steps_per_epoch", "batch_size", "seed", "model_dir", "train_split", "validation_split",
                 "eval_examples", "eval_batch_size", "strategy",
                 help_model_dir="Where checkpoints, logs, report and model files go.",
                 help_train_split="Split to train on (default: train, or the rest of it beside a train "
                                  "slice given as --eval_split), e.g. 'train[:90%]'.",
                 help_validation_split="Held-out split for the validation curve, e.g. 'train[90%:]'.",
                 help_eval_examples="Evaluate test bits/dim on this many images of --eval_split (default: all).")
flags.DEFINE_float("learning_rate", None, "Adam learning rate; default per model (flowpp 1e-3; resnet_vae 2e-3 decaying to 5e-4).")
flags.DEFINE_enum("learning_rate_decay", None, ["cosine"],
                  "cosine: decay the learning rate to 0 over the run (default: the model's recipe).")
flags.DEFINE_string("warm_start", None, "A finished run's model_dir or a .keras file of the same model: "
                    "its weights start this run (e.g. to fine-tune it with --learning_rate_decay=cosine).")
flags.DEFINE_bool("jit_compile", None, "Compile the train step with XLA (default: tf.function; XLA only when the run has "
                  "at least the model's break-even number of steps ahead, where a model sets one: none does now); "
                  "keras_bdgm.xla_cache keeps the compiled step for the next process.")
flags.DEFINE_string("tpu", None, "TPU name or address, with --strategy=tpu.")
flags.DEFINE_string("eval_split", None, "Split for the test bits/dim (default: test; for a flat image folder, "
                    "its last 10%, train[90%:], with training on the rest).")
flags.DEFINE_integer("validation_examples", 1000, "Images of --validation_split evaluated for the curve.")
flags.DEFINE_integer("validation_every", 0, "Evaluate validation bits/dim every this many steps (0: never).")
flags.DEFINE_bool("overwrite", False, "Start over in a model_dir that holds a run (finished or not).")


def main(argv):
    del argv
    config = experiment.TrainConfig(
        model=FLAGS.model, precision=FLAGS.precision, preset=FLAGS.preset, dataset=FLAGS.dataset,
        epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate, learning_rate_decay=FLAGS.learning_rate_decay,
        warm_start=FLAGS.warm_start, jit_compile=FLAGS.jit_compile, model_dir=FLAGS.model_dir, seed=FLAGS.seed,
        strategy=FLAGS.strategy, tpu=FLAGS.tpu, data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
        eval_split=FLAGS.eval_split, eval_examples=FLAGS.eval_examples, eval_batch_size=FLAGS.eval_batch_size,
        overrides=cli.overrides(), overwrite=FLAGS.overwrite, train_split=FLAGS.train_split,
        validation_split=FLAGS.validation_split, validation_examples=FLAGS.validation_examples,
        validation_every=FLAGS.validation_every,
    )
    report = experiment.train(config)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    cli.run(main)
