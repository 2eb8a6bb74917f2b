"""Prepares tfds's standard `fashion_mnist` offline, from local idx `.gz` files.

Debian's package `dataset-fashion-mnist` installs the four Fashion-MNIST files
(`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`,
`t10k-labels-idx1-ubyte.gz`) under `/usr/share/datasets/fashion-mnist/`. They hold the
same idx data as the upstream files, recompressed, so their checksums differ from the ones
tfds records and tfds's `manual_dir` rejects them. `DebianFashionMNIST` subclasses tfds's
`FashionMNIST` builder (same name `fashion_mnist`, version, features and splits) and reads
the files directly instead of downloading, so the prepared dataset in `data_dir` is the
standard one: `tfds.load("fashion_mnist", data_dir=data_dir)` reads it afterwards.

The idx format (big-endian): images start with the magic number 2051, then N, rows, cols
as int32, then N*rows*cols uint8 pixels; labels start with 2049, then N, then N uint8.

#### Examples

```python
from keras_bdgm.datasets import fashion_mnist

builder = fashion_mnist.prepare(data_dir="/tmp/tfds")     # about a minute, once
ds = builder.as_dataset(split="train")                    # {"image", "label"}
```

#### References

[1] Han Xiao, Kashif Rasul, Roland Vollgraf. Fashion-MNIST: a Novel Image Dataset for
    Benchmarking Machine Learning Algorithms. https://arxiv.org/abs/1708.07747
"""

import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

from keras_bdgm.datasets import prepared

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
NUM_EXAMPLES = {"train": 60000, "test": 10000}
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049


def missing_files(source_dir) -> list:
    """Returns the Fashion-MNIST file names not present in `source_dir` (all when it is None)."""
    names = [name for pair in FILES.values() for name in pair]
    if source_dir is None or not os.path.isdir(source_dir):
        return names
    return [name for name in names if not os.path.isfile(os.path.join(source_dir, name))]


def has_files(source_dir) -> bool:
    """Returns whether `source_dir` holds all four Fashion-MNIST idx `.gz` files."""
    return not missing_files(source_dir)


def read_idx(path) -> np.ndarray:
    """Returns the uint8 array stored in an idx file (gzip-compressed or not).

    Raises:
      ValueError: the file is not an idx1/idx3 uint8 file, or its size disagrees with
        its header.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 8:
        raise ValueError(f"{path} is too short to be an idx file ({len(raw)} bytes).")
    magic = int.from_bytes(raw[0:4], "big")
    if magic == _IMAGES_MAGIC:
        shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
        offset = 16
    elif magic == _LABELS_MAGIC:
        shape = (int.from_bytes(raw[4:8], "big"),)
        offset = 8
    else:
        raise ValueError(
            f"{path} is not an idx uint8 image/label file (magic {magic}, expected "
            f"{_IMAGES_MAGIC} or {_LABELS_MAGIC}). Reinstall the `{DEBIAN_PACKAGE}` package."
        )
    expected = offset + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw)} bytes; the file is truncated or corrupt. Reinstall the "
            f"`{DEBIAN_PACKAGE}` package."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


class DebianFashionMNIST(tfds.image_classification.FashionMNIST, skip_registration=True):
    """tfds's `fashion_mnist` builder reading local idx `.gz` files instead of downloading.

    Same dataset name, version, features ({"image": 28x28x1 uint8, "label": 10 classes})
    and splits (train 60000, test 10000) as tfds's `FashionMNIST`; only the source
    differs. It is not registered, so `tfds.builder("fashion_mnist")` stays tfds's own.

    Args:
      source_dir: folder with the four Fashion-MNIST files (default: Debian's
        `/usr/share/datasets/fashion-mnist`).
      **kwargs: `data_dir`, `config`, `version` as for any tfds builder.
    """

    name = "fashion_mnist"

    def __init__(self, *, source_dir=None, **kwargs):
        super().__init__(**kwargs)
        self._source_dir = os.fspath(source_dir) if source_dir is not None else DEBIAN_DIR
        self._original_state["source_dir"] = self._source_dir  # tfds pickles builders by this

    @property
    def source_dir(self) -> str:
        return self._source_dir

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        missing = missing_files(self._source_dir)
        if missing:
            raise FileNotFoundError(missing_files_message(self._source_dir, missing))
        return [
            tfds.core.SplitGenerator(
                name=split,
                gen_kwargs=dict(
                    num_examples=NUM_EXAMPLES[split],
                    data_path=os.path.join(self._source_dir, images),
                    label_path=os.path.join(self._source_dir, labels),
                ),
            )
            for split, (images, labels) in FILES.items()
        ]

    def _generate_examples(self, num_examples, data_path, label_path):
        images = read_idx(data_path)
        labels = read_idx(label_path)
        if images.shape != (num_examples,) + IMAGE_SHAPE[:2] or labels.shape != (num_examples,):
            raise ValueError(
                f"Expected {num_examples} images of 28x28 and as many labels in "
                f"{data_path} / {label_path}, got {images.shape} and {labels.shape}."
            )
        if labels.max() >= NUM_CLASSES:
            raise ValueError(f"{label_path} holds labels >= {NUM_CLASSES}; the file is corrupt.")
        for index in range(num_examples):
            yield index, {"image": images[index][..., None], "label": int(labels[index])}


def missing_files_message(source_dir, missing) -> str:
    """The message for missing Fashion-MNIST source files, with the ways to get them."""
    return (
        f"Fashion-MNIST source files not found in {source_dir!r} (missing: "
        f"{', '.join(missing)}). Install them with `apt-get install {DEBIAN_PACKAGE}` "
        f"(puts them in {DEBIAN_DIR}), pass manual_dir= a folder holding those four idx "
        "`.gz` files, or let tensorflow-datasets download `fashion_mnist` on a machine "
        "with internet access."
    )


def prepare(data_dir=None, source_dir=None) -> DebianFashionMNIST:
    """Prepares `fashion_mnist` into `data_dir` from local files (no-op if already there).

    The preparation is atomic (`keras_bdgm.datasets.prepared`): staged in a temporary
    folder and renamed into place under a file lock, so an interrupted one leaves nothing
    that a later call trusts, and concurrent ones take turns.

    Args:
      data_dir: tfds data directory (default: `$TFDS_DATA_DIR`, else
        `~/tensorflow_datasets`; read at each call).
      source_dir: folder with the four idx `.gz` files (default: Debian's).

    Returns:
      The prepared builder; `builder.as_dataset(split=...)` reads it.

    Raises:
      FileNotFoundError: the source files are missing (the message says how to get them).
    """
    def make_builder(root):
        return DebianFashionMNIST(data_dir=root, source_dir=source_dir)

    return prepared.prepare(make_builder, data_dir, lambda staging: prepare_into(staging, source_dir))


def prepare_into(data_dir, source_dir=None) -> None:
    """Prepares `fashion_mnist` into the tfds data directory `data_dir` in place (not
    atomically: `prepare` and `keras_bdgm.datasets.tfds` call it on a staging folder)."""
    builder = DebianFashionMNIST(data_dir=data_dir, source_dir=source_dir)
    missing = missing_files(builder.source_dir)
    if missing:
        raise FileNotFoundError(missing_files_message(builder.source_dir, missing))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
