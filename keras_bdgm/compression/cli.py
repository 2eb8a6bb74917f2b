"""The `keras-bdgm-compress` command: lossless compression of PNGs with a trained model.

Installed by pip as `keras-bdgm-compress`, also run as `python -m keras_bdgm.compression`
(and `examples/compress.py` in a checkout):

    keras-bdgm-compress --input=photos/ --output=photos.kbc            # a folder, one file
    keras-bdgm-compress --input=photos/ --output=kbc/ --per_image      # one file per image
    keras-bdgm-compress --input=shirt.png --output=shirt.kbc           # one PNG
    keras-bdgm-compress --input=fashion_mnist:test[:1000] --output=test.kbc
    keras-bdgm-compress --decompress --input=photos.kbc --output=back/ # PNGs, names restored
    keras-bdgm-compress --decompress --input=kbc/ --output=back/       # a folder of files

The model is a shipped one (`--pretrained`, default `DEFAULT_MODEL`), a run's
(`--model_dir`) or a packed file (`--packed`, architecture from the report.json beside it
or --precision/--preset/--overrides). Decompressing without a model flag finds the shipped
model that wrote the file by the fingerprint it holds, so files written with an earlier
default model still decode. Files record the image names (the PNGs' file names;
000000.png, ... for a dataset split), and decompressing writes them back. A file is never
larger than the raw pixels plus a small header (`keras_bdgm.compression.codec`).

Progress shows as a bar; the summary says images, bits/dim of the files, bytes and speed.
A user's mistake (a PNG of the wrong size or mode, a file written with another model, a
damaged file, a missing input) is one line on stderr and exit status 2, and nothing is
written: every input is read and coded before the first output file is written, and each
file is written atomically.
"""

import json
import os
import sys
import time

import numpy as np

DEFAULT_MODEL = "pixelcnn/w1a32"
SUFFIX = ".kbc"


def define_flags():
    """Defines the command's absl flags (once)."""
    from absl import flags  # pylint: disable=import-outside-toplevel

    if "per_image" in flags.FLAGS:
        return
    flags.DEFINE_string("input", None, "PNGs to compress: a folder of PNGs, one PNG, or 'dataset:split' (e.g. "
                        "fashion_mnist:test[:1000]); with --decompress, a compressed file or a folder of them.")
    flags.DEFINE_string("output", None, "The compressed file; a folder with --per_image or --decompress.")
    flags.DEFINE_bool("decompress", False, "Decompress --input into PNGs in the folder --output.")
    flags.DEFINE_bool("per_image", False, f"One compressed file per image (--output is a folder of <name>{SUFFIX}).")
    flags.DEFINE_string("pretrained", None, f"A model shipped with keras_bdgm (default {DEFAULT_MODEL}; "
                        "see keras_bdgm.pretrained.list()).")
    flags.DEFINE_string("model_dir", None, "A trained run folder (holds model.keras), from examples/train.py.")
    flags.DEFINE_string("packed", None, "A packed .bdgm model file.")
    flags.DEFINE_enum("precision", None, ["w32a32", "w1a32", "w1a1"],
                      "Precision of the --packed model (default: report.json's, else w1a1).")
    flags.DEFINE_string("preset", None, "Preset of the --packed model (default: report.json's, else small).")
    flags.DEFINE_string("overrides", None, "JSON preset overrides of the --packed model (default: report.json's).")
    flags.DEFINE_integer("num_buckets", None, "Bits-back codec: buckets per latent (a power of two).")
    flags.DEFINE_integer("batch_size", None, "Images coded at once (default: the codec's).")
    flags.DEFINE_bool("elbo", False, "Also print the model's bits/dim on the images (its bound), for comparison.")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir, for a 'dataset:split' input.")
    flags.mark_flags_as_required(["input", "output"])


def _fail(message):
    from keras_bdgm.runs.errors import ConfigError  # pylint: disable=import-outside-toplevel

    raise ConfigError(message)


def _model(flags_, image_shape=None):
    from keras_bdgm import pretrained  # pylint: disable=import-outside-toplevel
    from keras_bdgm.compression import tools  # pylint: disable=import-outside-toplevel

    if sum(f is not None for f in (flags_.model_dir, flags_.packed, flags_.pretrained)) > 1:
        _fail("Pass at most one of --pretrained, --model_dir (a trained run folder) or --packed (a .bdgm file).")
    try:
        if flags_.model_dir is None and flags_.packed is None:
            return pretrained.load(flags_.pretrained or DEFAULT_MODEL)
        overrides = json.loads(flags_.overrides) if flags_.overrides is not None else None
        return tools.load_model(model_dir=flags_.model_dir, packed=flags_.packed, image_shape=image_shape,
                                precision=flags_.precision, preset=flags_.preset, overrides=overrides)
    except json.JSONDecodeError as err:
        _fail(f"--overrides is not JSON: {err}.")
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))


def _codec(model, flags_):
    from keras_bdgm import compression  # pylint: disable=import-outside-toplevel

    kwargs = {k: getattr(flags_, k) for k in ("num_buckets", "batch_size") if getattr(flags_, k) is not None}
    try:
        return compression.codec_for(model, **kwargs)
    except (ValueError, TypeError) as err:
        _fail(str(err))


def _read_input(flags_, image_shape):
    """(images, names) of --input."""
    from keras_bdgm.compression import tools  # pylint: disable=import-outside-toplevel

    spec = flags_.input
    try:
        if os.path.exists(spec):
            paths = tools.png_paths(spec)
            return tools.read_pngs(paths, image_shape), [os.path.basename(p) for p in paths]
        images = tools.load_images(spec, data_dir=flags_.data_dir)
    except ValueError as err:
        _fail(str(err))
    if tuple(images.shape[1:]) != tuple(image_shape):
        _fail(f"{spec} holds images of shape {tuple(images.shape[1:])}; this model codes {tuple(image_shape)}.")
    digits = max(6, len(str(len(images) - 1)))
    return images, [f"{i:0{digits}d}.png" for i in range(len(images))]


def _stem(name):
    return name[:-4] if name.lower().endswith(".png") else name


def compress_command(flags_):
    """--input -> --output; returns the summary lines."""
    from keras_bdgm import compression  # pylint: disable=import-outside-toplevel
    from keras_bdgm.compression import tools  # pylint: disable=import-outside-toplevel

    model = _model(flags_, _input_shape_hint(flags_))
    codec = _codec(model, flags_)
    images, names = _read_input(flags_, codec.image_shape)
    start = time.perf_counter()
    if flags_.per_image:
        blobs = codec.compress_each(images, names, progress=True)
        outputs = {os.path.join(flags_.output, _stem(n) + SUFFIX): b for n, b in zip(names, blobs)}
        if len(outputs) != len(names):
            _fail("Two input images share a name; --per_image needs distinct names.")
        stored = sum(compression.container.unpack(b)[0]["codec"] == compression.container.STORED for b in blobs)
    else:
        blob = codec.compress(images, progress=True, extra_params={"names": names})
        outputs = {flags_.output: blob}
        stored = len(images) if codec.last_stats.stored else 0
    seconds = time.perf_counter() - start
    if flags_.per_image:
        os.makedirs(flags_.output, exist_ok=True)
    for path, data in outputs.items():
        compression.write_atomic(path, data)
    total = sum(len(b) for b in outputs.values())
    lines = [_summary_line("encode", images, total, len(outputs), stored, seconds)]
    if flags_.elbo:
        lines.append(f"model bound: {tools.elbo_bits_per_dim(model, images):.4f} bits/dim (single sample)")
    lines.append(f"wrote {flags_.output}" + (f" ({len(outputs)} files)" if flags_.per_image else ""))
    return lines


def _input_shape_hint(flags_):
    """The image shape of a --packed model, read from the first PNG of --input (a packed
    file holds weights only); None otherwise."""
    if flags_.packed is None or not os.path.exists(flags_.input):
        return None
    from keras_bdgm.compression import tools  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    try:
        with Image.open(tools.png_paths(flags_.input)[0]) as image:
            return (image.size[1], image.size[0], len(image.getbands()))
    except (OSError, ValueError) as err:
        _fail(str(err))


def decompress_command(flags_):
    """--input (a file or a folder of files) -> PNGs in --output; returns the summary lines."""
    from keras_bdgm import compression  # pylint: disable=import-outside-toplevel
    from keras_bdgm.compression import container, tools  # pylint: disable=import-outside-toplevel

    if os.path.isdir(flags_.input):
        paths = sorted(os.path.join(flags_.input, n) for n in os.listdir(flags_.input) if n.endswith(SUFFIX))
        if not paths:
            _fail(f"{flags_.input} holds no {SUFFIX} files.")
    elif os.path.isfile(flags_.input):
        paths = [flags_.input]
    else:
        _fail(f"--input {flags_.input} does not exist.")
    blobs, headers = [], []
    for path in paths:
        with open(path, "rb") as f:
            blobs.append(f.read())
        try:
            headers.append(container.unpack(blobs[-1], name=path)[0])
        except ValueError as err:
            _fail(str(err))
    model = codec = None
    coded_headers = [h for h in headers if h["codec"] != container.STORED]
    if coded_headers:
        model = _decoding_model(flags_, coded_headers[0])
        codec = _codec(model, flags_)
    start = time.perf_counter()
    coded = [k for k, h in enumerate(headers) if h["codec"] != container.STORED]
    decoded = [None] * len(paths)
    try:
        if len(coded) == 1:
            decoded[coded[0]] = codec.decompress(blobs[coded[0]], progress=True, name=paths[coded[0]])
        elif coded:  # one-image files are decoded together, a batch at a time
            for k, images_k in zip(coded, codec.decompress_each([blobs[k] for k in coded], [paths[k] for k in coded],
                                                                 progress=True)):
                decoded[k] = images_k
        for k, header in enumerate(headers):
            if header["codec"] == container.STORED:
                decoded[k] = compression.decompress(None, blobs[k])
    except ValueError as err:
        _fail(str(err))
    stored = sum(len(d) for d, h in zip(decoded, headers) if h["codec"] == container.STORED)
    images, names = [], []
    for path, header, decoded_k in zip(paths, headers, decoded):
        count = len(decoded_k)
        file_names = header["params"].get("names")
        if not file_names or len(file_names) != count:
            base = os.path.basename(path)
            base = base[: -len(SUFFIX)] if base.endswith(SUFFIX) else base
            file_names = [f"{base}_{j:06d}.png" for j in range(count)] if len(paths) > 1 else \
                [f"{j:06d}.png" for j in range(count)]
        images.append(decoded_k)
        names += file_names
    seconds = time.perf_counter() - start
    if len(set(names)) != len(names):
        _fail(f"The files in {flags_.input} store the same image name twice; decompress them one at a time.")
    images = np.concatenate(images)
    try:
        tools.write_named_pngs(flags_.output, images, names)
    except ValueError as err:
        _fail(str(err))
    return [_summary_line("decode", images, sum(len(b) for b in blobs), len(blobs), stored, seconds),
            f"wrote {len(images)} PNGs to {flags_.output}"]


def _decoding_model(flags_, header):
    """The model that wrote the file of `header`: the one the flags name; without a model
    flag, the shipped model whose fingerprint the file holds, the default one first (so
    files written while another shipped model was the default still decode). Where none
    matches, the default: its codec's check then names the mismatch."""
    if any(getattr(flags_, key) is not None for key in ("pretrained", "model_dir", "packed")):
        return _model(flags_, header["image_shape"])
    from keras_bdgm import pretrained  # pylint: disable=import-outside-toplevel

    default = _model(flags_, header["image_shape"])
    if _wrote(default, header):
        return default
    for name in pretrained.list():
        if pretrained.parse_name(name)[:2] == pretrained.parse_name(DEFAULT_MODEL)[:2]:
            continue
        try:
            candidate = pretrained.load(name)
        except (ValueError, FileNotFoundError):
            continue
        if _wrote(candidate, header):
            return candidate
    return default


def _wrote(model, header):
    """Whether `model` (with its codec) wrote a file with this header."""
    from keras_bdgm import compression  # pylint: disable=import-outside-toplevel

    try:
        compression.codec_for(model).check_header(header)
    except ValueError:
        return False
    return True


def _summary_line(direction, images, file_bytes, files, stored, seconds):
    dims = int(np.prod(images.shape))
    stored_note = f", {stored} stored as raw pixels" if stored else ""
    return (f"{len(images)} images of {'x'.join(map(str, images.shape[1:]))} in {files} file"
            f"{'s' if files != 1 else ''}: {file_bytes} bytes, {8 * file_bytes / dims:.4f} bits/dim{stored_note}; "
            f"{direction} {len(images) / max(seconds, 1e-9):.1f} images/s ({seconds:.1f} s)")


def _main(argv):
    from absl import flags  # pylint: disable=import-outside-toplevel

    if len(argv) > 1:
        _fail(f"Unexpected arguments {argv[1:]}; pass --input=... and --output=....")
    flags_ = flags.FLAGS
    lines = decompress_command(flags_) if flags_.decompress else compress_command(flags_)
    print("\n".join(lines))


def main():
    """Entry point of `keras-bdgm-compress` and `python -m keras_bdgm.compression`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO lines off; before it loads
    import keras_bdgm  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    from keras_bdgm.runs import cli  # pylint: disable=import-outside-toplevel

    define_flags()
    if len(sys.argv) > 0 and sys.argv[0].endswith("__main__.py"):
        sys.argv[0] = "keras-bdgm-compress"
    cli.run(_main)

