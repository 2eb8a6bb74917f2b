"""tensorflow-datasets (tfds) datasets as a `Source`: prepared once into `data_dir`, then read.

Datasets (`KNOWN_DATASETS`) and how each is prepared when `data_dir` lacks it:

- `fashion_mnist` (28x28x1): offline from the four idx `.gz` files in `manual_dir` or in
  Debian's `/usr/share/datasets/fashion-mnist` (package `dataset-fashion-mnist`), see
  `keras_bdgm.datasets.fashion_mnist`; else tfds downloads it.
- `mnist` (28x28x1), `cifar10` (32x32x3): tfds downloads them (needs internet).
- `downsampled_imagenet/32x32`, `downsampled_imagenet/64x64`: the download URLs are dead;
  `manual_dir` must hold `train_32x32.tar` and `valid_32x32.tar` (or the 64x64 pair).
  Its splits are `train` and `validation`; `test` reads `validation` (the paper's
  ImageNet test bits/dim are on the validation set).

Before a download the dataset's host is probed (`reachable`), so a machine without
internet gets the fix at once instead of after minutes of retries.

#### Examples

```python
from keras_bdgm.datasets import tfds

source = tfds.TfdsSource("fashion_mnist", data_dir="/tmp/tfds")
source.image_shape()                     # (28, 28, 1), reads nothing
source.num_examples("train[:90%]")       # 54000 (prepares the data the first time)
ds = source.load("test", batch_size=500)
```
"""

import os
import socket

import tensorflow as tf

from keras_bdgm.datasets import prepared, splits
from keras_bdgm.datasets.source import Source

IMAGE_SHAPES = {
    "fashion_mnist": (28, 28, 1),
    "mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "downsampled_imagenet/32x32": (32, 32, 3),
    "downsampled_imagenet/64x64": (64, 64, 3),
}
KNOWN_DATASETS = tuple(IMAGE_SHAPES)

# The splits each dataset stores.
SPLITS = {
    "fashion_mnist": ("train", "test"),
    "mnist": ("train", "test"),
    "cifar10": ("train", "test"),
    "downsampled_imagenet/32x32": ("train", "validation"),
    "downsampled_imagenet/64x64": ("train", "validation"),
}
# Split names some datasets spell differently: the name a user passes -> the stored one.
SPLIT_ALIASES = {
    "downsampled_imagenet/32x32": {"test": "validation"},
    "downsampled_imagenet/64x64": {"test": "validation"},
}
# Hosts tfds downloads each dataset from.
DOWNLOAD_HOSTS = {
    "fashion_mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    "mnist": "storage.googleapis.com",
    "cifar10": "www.cs.toronto.edu",
}


def reachable(host, timeout=5.0) -> bool:
    """Whether a TCP connection to `host` (port 443) opens; True behind a configured proxy."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


class TfdsSource(Source):
    """A tfds dataset of `KNOWN_DATASETS`, prepared in `data_dir` on first read.

    Args:
      name: one of `KNOWN_DATASETS`.
      data_dir: tfds data directory (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
      manual_dir: folder of source files: the four Fashion-MNIST idx `.gz` files
        (default Debian's), or the downsampled ImageNet tar files (required there).
      download: allow tfds to download over the network when the data is not prepared.
      reachable: `host -> bool`, whether a download host answers (default: `reachable`,
        a TCP probe); tests pass a stub to simulate a machine without internet.

    Raises:
      ValueError: `name` is not one of `KNOWN_DATASETS`.
    """

    def __init__(self, name, data_dir=None, manual_dir=None, download=True, *, reachable=None):
        if name not in IMAGE_SHAPES:
            raise ValueError(f"Unknown tfds dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}.")
        self.name = name
        self.data_dir = data_dir
        self.manual_dir = manual_dir
        self.download = download
        self._reachable = reachable
        self._builder = None

    def tfds_split(self, split) -> str:
        """The split string tfds reads for `split` (aliases applied): "test[:10%]" ->
        "validation[:10%]" for downsampled ImageNet.

        Raises:
          ValueError: a malformed split, or one the dataset does not have.
        """
        parsed = splits.parse(split)
        stored = SPLIT_ALIASES.get(self.name, {}).get(parsed.name, parsed.name)
        if stored not in SPLITS[self.name]:
            aliases = [f"{a} (= {s})" for a, s in SPLIT_ALIASES.get(self.name, {}).items()]
            raise ValueError(
                f"Dataset {self.name!r} has no split {parsed.name!r} (in {split!r}); its splits "
                f"are {', '.join(SPLITS[self.name] + tuple(aliases))}."
            )
        return str(parsed.renamed(stored))

    def has_split(self, name):
        stored = SPLIT_ALIASES.get(self.name, {}).get(name, name)
        return stored in SPLITS[self.name]

    def image_shape(self, split="train"):
        self.tfds_split(split)  # checks it
        return IMAGE_SHAPES[self.name]

    def builder(self):
        """The tfds builder, its data prepared in `data_dir` (done once per source).

        Raises:
          FileNotFoundError: the data is not prepared and cannot be; the message says
            where it looked and how to get it.
        """
        if self._builder is None:
            self._builder = _prepared_builder(
                self.name, self.data_dir, self.manual_dir, self.download, self._reachable or reachable
            )
        return self._builder

    def num_examples(self, split):
        stored = splits.parse(self.tfds_split(split))
        size = self.builder().info.splits[stored.name].num_examples
        return stored.count(size, of=repr(self.name))

    def read(self, split, *, shuffle=False, seed=None, limit=None):
        import tensorflow_datasets  # pylint: disable=import-outside-toplevel

        tfds_split = self.tfds_split(split)
        self.num_examples(split)  # checks the bounds, with our message
        # No tfds auto-cache: runs read a split partly (a few steps, an init batch, a limit),
        # and a partly read cache is thrown away with a warning. `load(cache=True)` caches.
        read_config = tensorflow_datasets.ReadConfig(shuffle_seed=seed, try_autocache=False)
        ds = self.builder().as_dataset(
            split=tfds_split, shuffle_files=shuffle and limit is None, read_config=read_config
        )
        shape = IMAGE_SHAPES[self.name]
        ds = ds.map(
            lambda example: tf.ensure_shape(example["image"], shape),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return ds if limit is None else ds.take(int(limit))


def _prepared_builder(name, data_dir, manual_dir, download, is_reachable):
    """Returns a tfds builder of `name` whose data is prepared in `data_dir` (default
    `prepared.default_data_dir()`), preparing it atomically (`keras_bdgm.datasets.prepared`)."""
    import tensorflow_datasets  # pylint: disable=import-outside-toplevel

    data_dir = os.fspath(data_dir) if data_dir is not None else prepared.default_data_dir()

    def make_builder(root):
        return tensorflow_datasets.builder(name, data_dir=root)

    builder = make_builder(data_dir)
    if builder.is_prepared():
        return builder
    where = os.fspath(builder.data_dir)
    return prepared.prepare(make_builder, data_dir, _preparation(name, data_dir, where, manual_dir, download, is_reachable))


def _preparation(name, data_dir, where, manual_dir, download, is_reachable):
    """Returns `prepare_into(staging_data_dir)` for `prepared.prepare`, which prepares
    `name` there; raises FileNotFoundError at once when it cannot be prepared."""
    import tensorflow_datasets  # pylint: disable=import-outside-toplevel

    if name == "fashion_mnist":
        from keras_bdgm.datasets import fashion_mnist  # pylint: disable=import-outside-toplevel

        source_dir = manual_dir if manual_dir is not None else fashion_mnist.DEBIAN_DIR
        if fashion_mnist.has_files(source_dir):
            return lambda staging: fashion_mnist.prepare_into(staging, source_dir)
        if manual_dir is not None:
            raise FileNotFoundError(
                f"fashion_mnist is not prepared in {where}, and "
                + fashion_mnist.missing_files_message(manual_dir, fashion_mnist.missing_files(manual_dir))
            )
        local_help = (
            f"the Fashion-MNIST idx files are not in {fashion_mnist.DEBIAN_DIR} either "
            f"(install them offline with `apt-get install {fashion_mnist.DEBIAN_PACKAGE}`, "
            "or pass manual_dir= a folder holding train-images-idx3-ubyte.gz, "
            "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
        )
        return _download(name, data_dir, where, download, is_reachable, local_help)

    if name.startswith("downsampled_imagenet/"):
        _check_downsampled_imagenet(name, where, manual_dir)
        return lambda staging: tensorflow_datasets.builder(name, data_dir=staging).download_and_prepare(
            download_config=tensorflow_datasets.download.DownloadConfig(
                manual_dir=os.fspath(manual_dir), try_download_gcs=False
            )
        )

    return _download(
        name, data_dir, where, download, is_reachable,
        "tfds needs internet to download it (or copy a prepared data_dir from a machine that has it)",
    )


def _download(name, data_dir, where, download, is_reachable, local_help):
    """Returns `prepare_into(staging)` downloading `name` (the downloads are kept in
    `data_dir/downloads`, tfds's place), or raises FileNotFoundError when it cannot."""
    import tensorflow_datasets  # pylint: disable=import-outside-toplevel

    host = DOWNLOAD_HOSTS.get(name)
    if not download:
        problem = "download=False"
    elif host is not None and not is_reachable(host):
        problem = f"{host} cannot be reached (no internet?)"
    else:
        problem = None

    def failed(problem):
        return FileNotFoundError(
            f"Dataset {name!r} is not prepared in {where} and cannot be downloaded: {problem}; "
            f"{local_help}. Once prepared, pass the same data_dir."
        )

    if problem is not None:
        raise failed(problem)

    def prepare_into(staging):
        try:
            tensorflow_datasets.builder(name, data_dir=staging).download_and_prepare(
                download_dir=os.path.join(data_dir, "downloads") if prepared.is_local(data_dir) else None,
                download_config=tensorflow_datasets.download.DownloadConfig(try_download_gcs=False),
            )
        except OSError as err:  # includes requests' connection errors
            raise failed(f"the download failed ({type(err).__name__}: {err})") from err

    return prepare_into


def _check_downsampled_imagenet(name, where, manual_dir):
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
