"""Helpers of the compression command line (examples/compress.py) and benchmark.

* `load_model(model_dir=..., packed=..., ...)`: a trained model from a run folder
  (`model.keras`) or from a packed `.bdgm` file plus its architecture.
* `load_images(spec)`: uint8 images [N, H, W, C] from a folder of PNGs or a dataset split
  such as "fashion_mnist:test[:1000]".
* `write_pngs(folder, images)`: one PNG per image, each written atomically.
* `elbo_bits_per_dim(model, images)`: the model's mean single-sample -ELBO in bits/dim.

Example:

    model = load_model(model_dir="runs/vae_w1a1")
    images = load_images("fashion_mnist:test[:100]")
    data = keras_bdgm.compression.compress(model, images)
"""

import json
import os
import re

import numpy as np
import tensorflow as tf

from keras_bdgm import datasets, memory

from keras_bdgm.runs import recipes, run_dir
from keras_bdgm.compression.container import write_atomic

_SPEC = re.compile(r"^(?P<name>.+?):(?P<split>\w+(\[[^\]]*\])?)$")


def load_model(model_dir=None, packed=None, image_shape=None, precision=None, preset=None, overrides=None):
    """A model from `model_dir` (its model.keras) or from a `packed` .bdgm file.

    A packed file holds weights only: the ResNetVAE is built from `image_shape` and the
    architecture arguments; those left None come from the run.json / report.json beside
    the file (a run folder of examples/train.py), else the defaults "w1a1", "small", {}.

    Raises:
      ValueError: neither or both sources, or a packed file whose weights do not fit.
    """
    if (model_dir is None) == (packed is None):
        raise ValueError("Pass exactly one of model_dir (a trained run folder) or packed (a .bdgm file).")
    if model_dir is not None:
        return run_dir.load_model(model_dir)
    folder = os.path.dirname(os.path.abspath(packed))
    report = {}
    for name in (run_dir.CONFIG_FILE, run_dir.REPORT_FILE):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            report.update(json.load(open(path)))
    if report.get("model", "resnet_vae") != "resnet_vae":
        raise ValueError(f"{folder} holds a {report['model']} run; the codec needs a resnet_vae.")
    if image_shape is None:
        raise ValueError("Loading a packed model needs the image shape.")
    overrides = report.get("overrides", {}) if overrides is None else overrides
    model = recipes.build_model(
        "resnet_vae", tuple(image_shape), precision or report.get("precision", "w1a1"),
        preset or report.get("preset", "small"), **overrides)
    memory.load_packed(model, packed)
    return model


def load_images(spec, data_dir=None, batch_size=1024):
    """uint8 [N, H, W, C] from a folder of images or "dataset:split" (tfds slicing allowed).

    Folders are read flat, files in sorted name order.
    """
    if os.path.isdir(spec):
        name, split = datasets.FOLDER_PREFIX + spec, "train"
    else:
        match = _SPEC.match(spec)
        if not match:
            raise ValueError(
                f"--input {spec!r} is neither a folder nor 'dataset:split' (e.g. 'fashion_mnist:test[:1000]')."
            )
        name, split = match.group("name"), match.group("split")
    ds = datasets.load(name, split, batch_size=batch_size, shuffle=False, data_dir=data_dir)
    batches = [np.asarray(batch) for batch in ds]
    if not batches:
        raise ValueError(f"{spec!r} holds no images.")
    return np.concatenate(batches).astype(np.uint8)


def write_pngs(folder, images):
    """Writes images [N, H, W, C] as folder/000000.png, ... (each atomically); returns the paths."""
    os.makedirs(folder, exist_ok=True)
    digits = max(6, len(str(len(images) - 1)))
    paths = []
    for i, image in enumerate(images):
        path = os.path.join(folder, f"{i:0{digits}d}.png")
        write_atomic(path, tf.io.encode_png(np.asarray(image, np.uint8)).numpy())
        paths.append(path)
    return paths


def elbo_bits_per_dim(model, images, batch_size=256, seed=0):
    """The model's mean single-sample -ELBO on `images`, in bits/dim (public log_prob)."""
    total = 0.0
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        total += float(np.sum(model.log_prob(chunk, num_samples=1, seed=(seed, start))))
    return -total / (len(images) * model.num_dims * np.log(2.0))


_PNG_MODES = {1: "L", 3: "RGB"}


def png_paths(path):
    """The PNG files a path names: itself, or a folder's *.png files in sorted order."""
    path = os.fspath(path)
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(".png"))
        if not names:
            raise ValueError(f"{path} holds no PNG files.")
        return [os.path.join(path, n) for n in names]
    if os.path.isfile(path):
        return [path]
    raise ValueError(f"{path} does not exist.")


def read_pngs(paths, image_shape):
    """uint8 [N, H, W, C] from PNG files, each checked against the model's `image_shape`.

    Raises:
      ValueError: a file that is not a PNG, or one of another size or mode (the message
        names the file, what it is and what the model codes: mode "L" for C = 1, "RGB"
        for C = 3).
    """
    from PIL import Image  # pylint: disable=import-outside-toplevel

    height, width, channels = (int(d) for d in image_shape)
    want = _PNG_MODES.get(channels, f"{channels} channels")
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                if image.format != "PNG":
                    raise ValueError(f"{path} is a {image.format} file, not a PNG.")
                if image.size != (width, height) or image.mode != want:
                    raise ValueError(
                        f"{path} is a {image.size[0]}x{image.size[1]} PNG of mode {image.mode}; this model codes "
                        f"{width}x{height} PNGs of mode {want}.")
                images.append(np.asarray(image, np.uint8).reshape(height, width, channels))
        except (OSError, SyntaxError) as err:
            raise ValueError(f"{path} cannot be read as a PNG: {err}.") from None
    return np.stack(images)


def write_named_pngs(folder, images, names):
    """Writes images [N, H, W, C] as folder/<name> (each atomically); returns the paths.

    Raises ValueError, before writing anything, for a name that would leave the folder."""
    for name in names:
        if os.path.basename(name) != name or name in ("", ".", ".."):
            raise ValueError(f"The file stores the image name {name!r}, which is not a plain file name.")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for image, name in zip(images, names):
        path = os.path.join(folder, name)
        write_atomic(path, tf.io.encode_png(np.asarray(image, np.uint8)).numpy())
        paths.append(path)
    return paths
