"""Lossless image compression with a trained ResNet VAE (bits-back ANS).

    python examples/compress.py --model_dir=runs/vae_w1a1 --input=fashion_mnist:test[:1000] --output=test.kbc
    python examples/compress.py --model_dir=runs/vae_w1a1 --decompress --input=test.kbc --output=decoded/

--input: a folder of PNGs or a dataset split; with --decompress, a compressed file, and
--output the folder the PNGs go to (000000.png, ...). --packed=model.bdgm instead of
--model_dir loads the packed 1-bit weights (architecture from --precision, --preset,
--overrides, else from a report.json beside the file). Prints the number of images,
bits/dim (net, with the initial bits, and for the whole file), the model's mean -ELBO
in bits/dim on the same images and the encode or decode speed. Files are written
atomically. Decode on the same kind of machine as encoded (keras_bdgm.compression).
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines off; before it loads

import keras_bdgm  # noqa: E402,F401
from absl import flags  # noqa: E402

from keras_bdgm import compression, pretrained  # noqa: E402

from keras_bdgm.runs import cli  # noqa: E402
from keras_bdgm.compression import container, tools  # noqa: E402
from keras_bdgm.runs.errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A trained run folder (holds model.keras), from examples/train.py.")
flags.DEFINE_string("packed", None, "A packed .bdgm model file (instead of --model_dir).")
flags.DEFINE_string("pretrained", None, "A model shipped with keras_bdgm, e.g. resnet_vae/w1a1 (see keras_bdgm.pretrained.list()).")
flags.DEFINE_enum("precision", None, ["w32a32", "w1a32", "w1a1"],
                  "Precision of the --packed model (default: report.json's, else w1a1).")
flags.DEFINE_string("preset", None, "Preset of the --packed model (default: report.json's, else small).")
flags.DEFINE_string("overrides", None, "JSON preset overrides of the --packed model (default: report.json's, else {}).")
flags.DEFINE_string("input", None, "Images: a folder of PNGs or 'dataset:split' (e.g. fashion_mnist:test[:1000]); "
                    "with --decompress, the compressed file.", required=True)
flags.DEFINE_string("output", None, "The compressed file; with --decompress, the folder for the PNGs.", required=True)
flags.DEFINE_bool("decompress", False, "Decompress --input into PNGs in --output.")
flags.DEFINE_integer("num_buckets", compression.DEFAULT_NUM_BUCKETS, "Buckets per latent (a power of two).")
flags.DEFINE_integer("batch_size", compression.DEFAULT_BATCH_SIZE, "Images coded at once.")
flags.DEFINE_bool("elbo", True, "Also compute the model's -ELBO on the images, for comparison.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir.")


def _model(image_shape):
    if FLAGS.pretrained:
        try:
            return pretrained.load(FLAGS.pretrained)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(str(err)) from None
    try:
        overrides = json.loads(FLAGS.overrides) if FLAGS.overrides is not None else None
    except ValueError as err:
        raise ConfigError(f"--overrides is not JSON: {err}.") from None
    try:
        return tools.load_model(model_dir=FLAGS.model_dir, packed=FLAGS.packed, image_shape=image_shape,
                                precision=FLAGS.precision, preset=FLAGS.preset, overrides=overrides)
    except (ValueError, FileNotFoundError) as err:
        if isinstance(err, ConfigError) or not isinstance(err, ValueError):
            raise
        raise ConfigError(str(err)) from None


def _summary(model, images, stats):
    lines = [
        f"images: {stats.images} of {'x'.join(map(str, images.shape[1:]))}",
        f"bits/dim: {stats.net_bits_per_dim:.4f} net, {stats.bits_per_dim_with_initial:.4f} with the "
        f"{stats.initial_bits} initial bits, {stats.file_bits_per_dim:.4f} for the whole file "
        f"({stats.file_bytes} bytes)",
    ]
    if FLAGS.elbo:
        elbo = tools.elbo_bits_per_dim(model, images)
        lines.append(f"model -ELBO: {elbo:.4f} bits/dim (single sample); net rate / -ELBO = "
                     f"{stats.net_bits_per_dim / elbo:.4f}")
    lines.append(f"{stats.direction}: {stats.images_per_second:.1f} images/s ({stats.seconds:.1f} s)")
    return "\n".join(lines)


def _compress():
    try:
        images = tools.load_images(FLAGS.input, data_dir=FLAGS.data_dir)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    model = _model(images.shape[1:])
    try:
        codec = compression.BitsBackCodec(model, num_buckets=FLAGS.num_buckets, batch_size=FLAGS.batch_size)
        codec.check_images(images)  # before anything is coded or written
    except ValueError as err:
        raise ConfigError(str(err)) from None
    blob = codec.compress(images, progress=True)
    compression.write_atomic(FLAGS.output, blob)
    return model, images, codec, f"wrote {FLAGS.output} ({len(blob)} bytes)"


def _decompress():
    try:
        with open(FLAGS.input, "rb") as f:
            blob = f.read()
    except OSError as err:
        raise ConfigError(f"Cannot read --input: {err}.") from None
    try:
        header, _ = container.unpack(blob, name=FLAGS.input)
        model = _model(header["image_shape"])
        codec = compression.BitsBackCodec.from_params(model, header["params"])
        images = codec.decompress(blob, progress=True, name=FLAGS.input)
    except ValueError as err:  # bad file, other model: nothing is written
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(str(err)) from None
    tools.write_pngs(FLAGS.output, images)
    return model, images, codec, f"wrote {len(images)} PNGs to {FLAGS.output}"


def main(argv):
    del argv
    if sum(f is not None for f in (FLAGS.model_dir, FLAGS.packed, FLAGS.pretrained)) != 1:
        raise ConfigError("Pass exactly one of --model_dir (a trained run folder), --packed (a .bdgm file) "
                          "or --pretrained (e.g. resnet_vae/w1a1).")
    model, images, codec, wrote = _decompress() if FLAGS.decompress else _compress()
    print(_summary(model, images, codec.last_stats))
    print(wrote)


if __name__ == "__main__":
    cli.run(main)
