"""Image datasets for training and evaluation: batched uint8 `tf.data.Dataset`s.

`load(name, split, batch_size)` returns a dataset of uint8 image batches [B, H, W, C]
(pixel values 0..255, no labels), shuffled for training splits, prefetched. Pass it to
`model.fit` / `model.evaluate`; under a `tf.distribute` strategy Keras splits each batch
over the replicas.

Names:

- `fashion_mnist` (28x28x1), `mnist` (28x28x1), `cifar10` (32x32x3),
  `downsampled_imagenet/32x32`, `downsampled_imagenet/64x64` (32x32x3, 64x64x3):
  tensorflow-datasets datasets, prepared once into `data_dir`.
  * `fashion_mnist` is the embedded default and works offline: when it is not prepared
    yet and the four idx `.gz` files are in `manual_dir` or in Debian's
    `/usr/share/datasets/fashion-mnist` (package `dataset-fashion-mnist`), it is prepared
    from them (no network), else tfds downloads it.
  * `mnist`, `cifar10`: tfds downloads them (needs internet).
  * `downsampled_imagenet/*`: the download URLs are dead; pass `manual_dir`, a folder
    holding `train_32x32.tar` and `valid_32x32.tar` (or the 64x64 pair). Its splits are
    `train` and `validation`; `test` is accepted as `validation` (the paper's ImageNet
    test bits/dim are on the validation set).
- `folder:/path/to/images`: a folder of same-sized PNG/JPEG images, flat (one split,
  `train`) or with `train/`, `test/`, ... sub-folders. See `keras_bdgm.datasets.folder`.

Splits take tfds's slicing everywhere: "train[:90%]", "test[:1000]".

#### Examples

```python
from keras_bdgm import data

shape = data.image_shape("fashion_mnist")                  # (28, 28, 1), loads nothing
train = data.load("fashion_mnist", "train", batch_size=128)   # shuffled
test = data.load("fashion_mnist", "test", batch_size=500)     # file order
tiny = data.load("folder:/data/pngs", "train", 16, limit=64, seed=0)
model.fit(train, epochs=10, validation_data=test)
```
"""

import os
import re
import socket

import tensorflow as tf

from keras_bdgm.datasets import folder as _folder

FOLDER_PREFIX = "folder:"

_SHAPES = {
    "fashion_mnist": (28, 28, 1),
    "mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "downsampled_imagenet/32x32": (32, 32, 3),
    "downsampled_imagenet/64x64": (64, 64, 3),
}
KNOWN_DATASETS = tuple(_SHAPES)
DEFAULT_DATASET = "fashion_mnist"

# Hosts tfds downloads each dataset from, probed before a download so that a machine
# without internet gets the fix at once instead of after minutes of retries.
_DOWNLOAD_HOSTS = {
    "fashion_mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    "mnist": "storage.googleapis.com",
    "cifar10": "www.cs.toronto.edu",
}
# Split names some datasets spell differently.
_SPLIT_ALIASES = {
    "downsampled_imagenet/32x32": {"test": "validation"},
    "downsampled_imagenet/64x64": {"test": "validation"},
}


def _unknown_name(name):
    return ValueError(
        f"Unknown dataset {name!r}. Known datasets: {', '.join(KNOWN_DATASETS)}, or "
        f"'{FOLDER_PREFIX}/path/to/images' for a folder of same-sized PNG/JPEG images."
    )


def _folder_root(name):
    root = os.path.expanduser(name[len(FOLDER_PREFIX) :])
    if not root:
        raise ValueError(f"Dataset {name!r} names no folder; use '{FOLDER_PREFIX}/path/to/images'.")
    return root


def image_shape(name: str, split: str = "train") -> tuple:
    """Returns (H, W, C) of the images of dataset `name` without loading the data.

    For `folder:` datasets the image headers of `split` are read (and checked).

    Raises:
      ValueError: unknown name, or a folder with no images or mixed shapes.
    """
    if isinstance(name, str) and name.startswith(FOLDER_PREFIX):
        return _folder.resolve(_folder_root(name), split)[1]
    if name not in _SHAPES:
        raise _unknown_name(name)
    return _SHAPES[name]


def is_training_split(split: str) -> bool:
    """Returns whether `split` ("train", "train[:90%]", ...) is a training split."""
    return _split_base(split) == "train"


def _split_base(split):
    match = re.match(r"\s*(\w+)", str(split))
    if not match:
        raise ValueError(
            f"Cannot parse split {split!r}; use e.g. 'train', 'test' or 'train[:90%]'."
        )
    return match.group(1)


HELD_OUT = ("train[:90%]", "train[90%:]")


def _slice_complement(split):
    """"train[:90%]" for "train[90%:]" and the reverse; None for other splits."""
    name, start, end = _folder.parse_split(split)
    if name != "train" or (start is None) == (end is None):
        return None
    return f"train[{end}:]" if start is None else f"train[:{start}]"


def train_and_eval_splits(name: str, train_split=None, eval_split=None):
    """Returns (train split, evaluation split, note) for dataset `name`.

    Defaults: "train" and "test" where the dataset has a test split. A flat image folder
    has only "train", so its last 10% is held out: ("train[:90%]", "train[90%:]"), and the
    note says so. An evaluation slice of train ("train[95%:]") trains on the rest.

    Raises:
      ValueError: an evaluation split inside the training data with no disjoint training
        split given.
    """
    note = None
    flat = (
        isinstance(name, str) and name.startswith(FOLDER_PREFIX)
        and not os.path.isdir(os.path.join(_folder_root(name), "test"))
    )
    if eval_split is None:
        if flat:
            eval_split = HELD_OUT[1]
            note = (
                f"{name[len(FOLDER_PREFIX):]} has no test/ sub-folder: evaluated on its last 10% "
                f"({HELD_OUT[1]}), trained on the rest"
            )
        else:
            eval_split = "test"
    if train_split is None:
        if is_training_split(eval_split):
            train_split = _slice_complement(eval_split)
            if train_split is None:
                raise ValueError(
                    f"Evaluation split {eval_split!r} lies in the training data; evaluate on "
                    "a slice such as 'train[90%:]' (training then uses the rest), or pass a "
                    "training split that does not overlap it."
                )
        else:
            train_split = "train"
    return train_split, eval_split, note


def load(
    name: str,
    split: str,
    batch_size: int,
    shuffle=None,
    data_dir=None,
    manual_dir=None,
    *,
    drop_remainder: bool = False,
    limit=None,
    seed=None,
    shuffle_buffer: int = 10_000,
    cache: bool = False,
    download: bool = True,
) -> tf.data.Dataset:
    """Returns a batched, prefetched dataset of uint8 images [B, H, W, C] of `name`/`split`.

    Pipeline: read (tfds or folder) -> first `limit` examples -> [cache] -> [shuffle
    with a `shuffle_buffer`-element buffer, reshuffled each epoch] -> batch -> prefetch.

    Args:
      name: one of `KNOWN_DATASETS` or "folder:/path/to/images".
      split: "train", "test", ... with optional tfds slicing ("train[:90%]").
      batch_size: images per batch (the global batch under `tf.distribute`).
      shuffle: shuffle examples (and tfds files); default True for training splits
        (name "train"), False otherwise, which keeps the stored order.
      data_dir: tfds data directory (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`);
        unused for folders.
      manual_dir: folder of source files: the four Fashion-MNIST idx `.gz` files
        (default Debian's `/usr/share/datasets/fashion-mnist`), or the downsampled
        ImageNet tar files (required there).
      drop_remainder: drop the last, smaller batch.
      limit: keep only the first `limit` examples of the split (tiny runs).
      seed: seed of the shuffle (default: from TensorFlow's global seed).
      shuffle_buffer: size of the shuffle buffer.
      cache: keep the decoded images in memory after the first epoch.
      download: allow tfds to download over the network when the data is not prepared.

    Returns:
      A `tf.data.Dataset` of uint8 tensors [B, H, W, C].

    Raises:
      ValueError: unknown name, bad split/arguments, a bad image folder.
      FileNotFoundError: the data is not there and cannot be prepared; the message says
        where it looked and how to get it.
    """
    if not isinstance(name, str):
        raise _unknown_name(name)
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}.")
    if shuffle is None:
        shuffle = is_training_split(split)

    if name.startswith(FOLDER_PREFIX):
        files, shape = _folder.resolve(_folder_root(name), split)
        if limit is not None:
            files = files[: int(limit)]
        ds = _folder.dataset(files, shape)
    elif name in _SHAPES:
        shape = _SHAPES[name]
        ds = _tfds_images(
            name, split, data_dir, manual_dir, download,
            shuffle_files=bool(shuffle) and limit is None, seed=seed,
        )
        if limit is not None:
            ds = ds.take(int(limit))
    else:
        raise _unknown_name(name)

    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(int(shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def _tfds_images(name, split, data_dir, manual_dir, download, shuffle_files, seed):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    split = _alias_split(name, split)
    builder = _prepared_builder(name, data_dir, manual_dir, download)
    # No tfds auto-cache: runs read a split partly (a few steps, an init batch, a limit),
    # and a partly read cache is thrown away with a warning. `load(cache=True)` caches.
    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
    ds = builder.as_dataset(split=split, shuffle_files=shuffle_files, read_config=read_config)
    shape = _SHAPES[name]
    return ds.map(
        lambda example: tf.ensure_shape(example["image"], shape),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _alias_split(name, split):
    aliases = _SPLIT_ALIASES.get(name, {})
    base = _split_base(split)
    if base in aliases:
        return re.sub(rf"^\s*{base}", aliases[base], str(split), count=1)
    return split


def _prepared_builder(name, data_dir, manual_dir, download):
    """Returns a tfds builder of `name` whose data is prepared in `data_dir`."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    where = os.fspath(builder.data_dir)

    if name == "fashion_mnist":
        from keras_bdgm.datasets import fashion_mnist  # pylint: disable=import-outside-toplevel

        source_dir = manual_dir if manual_dir is not None else fashion_mnist.DEBIAN_DIR
        if fashion_mnist.has_files(source_dir):
            return fashion_mnist.prepare(data_dir=data_dir, source_dir=source_dir)
        if manual_dir is not None:
            raise FileNotFoundError(
                f"fashion_mnist is not prepared in {where}, and "
                + fashion_mnist.missing_files_message(
                    manual_dir, fashion_mnist.missing_files(manual_dir)
                )
            )
        local_help = (
            f"the Fashion-MNIST idx files are not in {fashion_mnist.DEBIAN_DIR} either "
            f"(install them offline with `apt-get install {fashion_mnist.DEBIAN_PACKAGE}`, "
            "or pass manual_dir= a folder holding train-images-idx3-ubyte.gz, "
            "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
        )
        _download(builder, name, where, download, local_help)
        return builder

    if name.startswith("downsampled_imagenet/"):
        _prepare_downsampled_imagenet(builder, name, where, manual_dir)
        return builder

    _download(
        builder, name, where, download,
        "tfds needs internet to download it (or copy a prepared data_dir from a machine "
        "that has it)",
    )
    return builder


def _reachable(host, timeout=5.0) -> bool:
    """Whether a TCP connection to `host` (port 443) opens; True behind a configured proxy."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _download(builder, name, where, download, local_help):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    host = _DOWNLOAD_HOSTS.get(name)
    if not download:
        problem = "download=False"
    elif host is not None and not _reachable(host):
        problem = f"{host} cannot be reached (no internet?)"
    else:
        problem = None
    if problem is None:
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False)
            )
            return
        except OSError as err:  # includes requests' connection errors
            problem = f"the download failed ({type(err).__name__}: {err})"
    raise FileNotFoundError(
        f"Dataset {name!r} is not prepared in {where} and cannot be downloaded: {problem}; "
        f"{local_help}. Once prepared, pass the same data_dir."
    )


def _prepare_downsampled_imagenet(builder, name, where, manual_dir):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    size = name.split("/")[1]
    wanted = [f"train_{size}.tar", f"valid_{size}.tar"]
    missing = (
        wanted if manual_dir is None
        else [f for f in wanted if not os.path.isfile(os.path.join(manual_dir, f))]
    )
    if missing:
        looked = "no manual_dir was given" if manual_dir is None else f"missing in {manual_dir}"
        raise FileNotFoundError(
            f"Dataset {name!r} is not prepared in {where}, and its source files "
            f"{', '.join(missing)} are needed ({looked}). Its tfds download URLs "
            "(image-net.org/small) are dead: get the two Downsampled ImageNet tar files, "
            "put them in one folder and pass manual_dir=that folder."
        )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=os.fspath(manual_dir), try_download_gcs=False
        )
    )
