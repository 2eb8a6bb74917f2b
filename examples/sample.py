"""Writes a PNG grid of samples from a saved model.

    python examples/sample.py --model_dir=runs/flowpp_w1a1_small --num=64 --temperature=0.9 --out=grid.png
    python examples/sample.py --pretrained=resnet_vae/w1a1 --out=grid.png   # a model shipped with keras_bdgm
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines off; before it loads

import keras_bdgm  # noqa: E402,F401
from absl import flags  # noqa: E402

from keras_bdgm import image_grid, pretrained  # noqa: E402

from keras_bdgm.runs import cli, experiment  # noqa: E402
from keras_bdgm.runs.errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A model_dir written by train.py.")
flags.DEFINE_string("pretrained", None, "Instead of --model_dir: a model shipped with keras_bdgm, e.g. resnet_vae/w1a1.")
flags.DEFINE_integer("num", 64, "Number of samples.")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature (scales the prior's standard deviation).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out", None, "PNG path (default: <model_dir>/samples_t<temperature>.png).")


def main(argv):
    del argv
    if FLAGS.num < 1:
        raise ConfigError(f"--num must be >= 1, got {FLAGS.num}.")
    if not FLAGS.temperature > 0:
        raise ConfigError(f"--temperature must be > 0, got {FLAGS.temperature}.")
    if (FLAGS.model_dir is None) == (FLAGS.pretrained is None):
        raise ConfigError("Pass exactly one of --model_dir (a run of train.py) or --pretrained (e.g. resnet_vae/w1a1).")
    if FLAGS.pretrained:
        model = pretrained.load(FLAGS.pretrained)
        default = f"samples_{FLAGS.pretrained.replace('/', '_')}_t{FLAGS.temperature:g}.png"
    else:
        model = experiment.load_model(FLAGS.model_dir)
        default = os.path.join(FLAGS.model_dir, f"samples_t{FLAGS.temperature:g}.png")
    out = FLAGS.out or default
    image_grid.sample_grid(model, FLAGS.num, temperature=FLAGS.temperature, seed=FLAGS.seed, path=out)
    print(out)


if __name__ == "__main__":
    cli.run(main)
