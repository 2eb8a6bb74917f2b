"""Image datasets for training and evaluation: batched uint8 `tf.data.Dataset`s.

`resolve(name)` turns a dataset name into a `Source` (below); its
`load(split, batch_size)` returns a dataset of uint8 image batches [B, H, W, C] (pixel
values 0..255, no labels), shuffled for training splits, prefetched. Pass it to
`model.fit` / `model.evaluate`; under a `tf.distribute` strategy Keras splits each batch
over the replicas. A run that reads several splits resolves its dataset once, so tfds data
is prepared and an image folder scanned once. `load(name, split, ...)` and
`image_shape(name, split)` resolve and read in one call.

Names (`SOURCES` maps each name, or a prefix ending in ":", to its source):

- `fashion_mnist` (28x28x1), `mnist` (28x28x1), `cifar10` (32x32x3),
  `downsampled_imagenet/32x32`, `downsampled_imagenet/64x64` (32x32x3, 64x64x3):
  tensorflow-datasets datasets, prepared once into `data_dir`; `fashion_mnist` works
  offline from Debian's `dataset-fashion-mnist` files. See `keras_bdgm.datasets.tfds`.
- `folder:/path/to/images`: a folder of same-sized PNG/JPEG images, flat (one split,
  `train`) or with `train/`, `test/`, ... sub-folders. See `keras_bdgm.datasets.folder`.

Splits take tfds's slicing everywhere: "train[:90%]", "test[:1000]"; see
`keras_bdgm.datasets.splits`.

#### Examples

```python
from keras_bdgm import datasets

source = datasets.resolve("fashion_mnist", data_dir="/tmp/tfds")
shape = source.image_shape("train")                      # (28, 28, 1), loads nothing
train = source.load("train", batch_size=128)               # shuffled
test = source.load("test", batch_size=500)                 # file order
model.fit(train, epochs=10, validation_data=test)

tiny = datasets.load("folder:/data/pngs", "train", 16, limit=64, seed=0)   # one-off read
```

The modules, one job each (`load` and `resolve` above are defined here):

- `source`: `Source`, what every dataset offers: `image_shape(split)`,
  `num_examples(split)`, `has_split(name)` and `load(split, batch_size, ...)`.
- `splits`: the one parser of split strings ("train", "train[:90%]", "test[:1000]"),
  with tensorflow-datasets' slicing and rounding, used by every source.
- `tfds`: `TfdsSource`, tensorflow-datasets datasets (image shapes, split aliases,
  preparing and downloading, `manual_dir`, downsampled ImageNet).
- `prepared`: where tfds data lives by default (`$TFDS_DATA_DIR`, else
  `~/tensorflow_datasets`, read at each call) and preparing a dataset there atomically:
  staged in a temporary folder and renamed into place under a file lock, so an interrupted
  preparation leaves nothing a later load trusts and concurrent ones take turns.
- `fashion_mnist`: a tfds builder that prepares the standard `fashion_mnist` dataset
  offline from the four idx `.gz` files (Debian package `dataset-fashion-mnist`).
- `folder`: `FolderSource`, a folder of same-sized PNG/JPEG images.

The modules import their heavy dependencies (tensorflow-datasets, PIL) when first used,
except `fashion_mnist`, which `tfds` imports only to prepare Fashion-MNIST.

This package is a wing of its own: it imports nothing else of keras_bdgm, and the models,
the runs and the products read data through it.
"""

import tensorflow as tf

from keras_bdgm.datasets import folder as _folder
from keras_bdgm.datasets import splits as _splits
from keras_bdgm.datasets import tfds as _tfds
from keras_bdgm.datasets.source import Source

FOLDER_PREFIX = _folder.PREFIX
KNOWN_DATASETS = _tfds.KNOWN_DATASETS
DEFAULT_DATASET = "fashion_mnist"
HELD_OUT = _splits.HELD_OUT


def _folder_source(name, data_dir=None, manual_dir=None, download=True):
    del data_dir, manual_dir, download  # a folder is read where it is
    return _folder.FolderSource(name[len(FOLDER_PREFIX) :], name=name)


# Dataset name (or a prefix ending in ":") -> factory(name, data_dir, manual_dir, download)
# returning a `Source`. Register a new source here; tests swap entries for stubs.
SOURCES = {
    **{name: _tfds.TfdsSource for name in KNOWN_DATASETS},
    FOLDER_PREFIX: _folder_source,
}


def _unknown_name(name):
    return ValueError(
        f"Unknown dataset {name!r}. Known datasets: {', '.join(KNOWN_DATASETS)}, or "
        f"'{FOLDER_PREFIX}/path/to/images' for a folder of same-sized PNG/JPEG images."
    )


def resolve(name, data_dir=None, manual_dir=None, download=True) -> Source:
    """Returns the `Source` of dataset `name`; cheap (nothing is read until it is used).

    Keep the source for the whole run: it prepares tfds data and scans image folders once.
    A `Source` passed as `name` is returned as it is.

    Args:
      name: one of `KNOWN_DATASETS`, "folder:/path/to/images", or another `SOURCES` key.
      data_dir: tfds data directory (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`);
        unused for folders.
      manual_dir: folder of source files: the four Fashion-MNIST idx `.gz` files
        (default Debian's `/usr/share/datasets/fashion-mnist`), or the downsampled
        ImageNet tar files (required there).
      download: allow tfds to download over the network when the data is not prepared.

    Raises:
      ValueError: unknown name, or "folder:" with no path.
    """
    if isinstance(name, Source):
        return name
    if not isinstance(name, str):
        raise _unknown_name(name)
    factory = SOURCES.get(name)
    if factory is None:
        prefix = next((p for p in SOURCES if p.endswith(":") and name.startswith(p)), None)
        if prefix is None:
            raise _unknown_name(name)
        factory = SOURCES[prefix]
    return factory(name, data_dir=data_dir, manual_dir=manual_dir, download=download)


def image_shape(name, split: str = "train") -> tuple:
    """Returns (H, W, C) of the images of dataset `name` without loading the data.

    For `folder:` datasets the images of `split` are scanned (and checked); call
    `resolve(name).image_shape(split)` to keep the scan.

    Raises:
      ValueError: unknown name or split, or a folder with no images or mixed shapes.
    """
    return resolve(name).image_shape(split)


def is_training_split(split: str) -> bool:
    """Returns whether `split` ("train", "train[:90%]", ...) is a training split."""
    return _splits.is_training(split)


def train_and_eval_splits(name, train_split=None, eval_split=None):
    """Returns (train split, evaluation split, note) for dataset `name` (or a `Source`).

    Defaults: "train" and "test" where the dataset has a test split. A flat image folder
    has only "train", so its last 10% is held out: ("train[:90%]", "train[90%:]"), and the
    note says so. An evaluation slice of train ("train[95%:]") trains on the rest.

    Raises:
      ValueError: unknown name, a malformed split, or an evaluation split inside the
        training data with no disjoint training split given.
    """
    note = None
    if eval_split is None:
        eval_split, note = resolve(name).default_eval_split()
    if train_split is None:
        if is_training_split(eval_split):
            train_split = _splits.complement(eval_split)
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
    name,
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

    `resolve(name, data_dir, manual_dir, download).load(split, batch_size, ...)`: see
    `resolve` for the dataset arguments and `Source.load` for the rest. A run that reads
    several splits should resolve once and call the source's `load`.

    Raises:
      ValueError: unknown name, bad split/arguments, a bad image folder.
      FileNotFoundError: the data is not there and cannot be prepared; the message says
        where it looked and how to get it.
    """
    source = resolve(name, data_dir=data_dir, manual_dir=manual_dir, download=download)
    return source.load(
        split, batch_size, shuffle, seed, drop_remainder, limit,
        shuffle_buffer=shuffle_buffer, cache=cache,
    )
