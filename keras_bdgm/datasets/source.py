"""`Source`: a dataset resolved once, from which a run reads all its splits.

A source knows its image shape and split sizes, and builds the batched uint8 pipelines
that `model.fit` / `model.evaluate` take. Each kind of data subclasses it
(`keras_bdgm.datasets.tfds.TfdsSource`, `keras_bdgm.datasets.folder.FolderSource`) with
`image_shape`, `num_examples`, `has_split` and `read`; `load` is shared. Sources do their
slow work (preparing tfds data, scanning image files) once, when first needed, and keep
it: resolve a dataset once per run and read every split from that object.

#### Examples

```python
from keras_bdgm import datasets

source = datasets.resolve("folder:/data/pngs")               # cheap: nothing read yet
shape = source.image_shape("train")                      # scans the images once
n = source.num_examples("train[90%:]")
train = source.load("train[:90%]", batch_size=64, seed=0)  # shuffled (a training split)
held_out = source.load("train[90%:]", batch_size=64, shuffle=False)
```
"""

import abc

import tensorflow as tf

from keras_bdgm.datasets import splits


def _check_count(what, value, none_ok=False):
    if none_ok and value is None:
        return
    try:
        whole = int(value) == value
    except (TypeError, ValueError):
        whole = False
    if not whole or value < 1:
        raise ValueError(f"{what} must be a positive integer{' or None' if none_ok else ''}, got {value!r}.")


class Source(abc.ABC):
    """A dataset of uint8 images [H, W, C] with named splits ("train", "test", ...).

    Attributes:
      name: the dataset name it was resolved from ("fashion_mnist", "folder:/data/pngs").
    """

    name: str

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"

    @abc.abstractmethod
    def image_shape(self, split="train") -> tuple:
        """(H, W, C) of the images of `split`, reading as little as possible."""

    @abc.abstractmethod
    def num_examples(self, split) -> int:
        """How many images `split` ("train", "test[:50%]", ...) selects.

        Raises:
          ValueError: an unknown split or a slice beyond the split's size.
          FileNotFoundError: the data is not there and cannot be prepared.
        """

    @abc.abstractmethod
    def has_split(self, name: str) -> bool:
        """Whether the dataset has a split called `name` ("train", "test", ...)."""

    @abc.abstractmethod
    def read(self, split, *, shuffle=False, seed=None, limit=None) -> tf.data.Dataset:
        """Unbatched uint8 images [H, W, C] of `split`: the first `limit` in stored order.

        `shuffle` says the caller shuffles the examples; a source may then also read its
        files in a `seed`ed random order (tfds's `shuffle_files`).
        """

    def default_eval_split(self) -> tuple:
        """(evaluation split, note or None) when the user names none: "test" by default."""
        return "test", None

    def load(
        self,
        split,
        batch_size: int,
        shuffle=None,
        seed=None,
        drop_remainder: bool = False,
        limit=None,
        *,
        shuffle_buffer: int = 10_000,
        cache: bool = False,
    ) -> tf.data.Dataset:
        """Batched, prefetched uint8 images [B, H, W, C] of `split`.

        Pipeline: read -> first `limit` examples -> [cache] -> [shuffle with a
        `shuffle_buffer`-element buffer, reshuffled each epoch] -> batch -> prefetch.

        Args:
          split: "train", "test", ... optionally sliced ("train[:90%]"); see `splits`.
          batch_size: images per batch (the global batch under `tf.distribute`).
          shuffle: shuffle the examples; default True for training splits (name
            "train"), False otherwise, which keeps the stored order.
          seed: seed of the shuffle (default: from TensorFlow's global seed).
          drop_remainder: drop the last, smaller batch.
          limit: keep only the first `limit` examples of the split (tiny runs).
          shuffle_buffer: size of the shuffle buffer.
          cache: keep the decoded images in memory after the first epoch.

        Raises:
          ValueError: bad split or arguments.
          FileNotFoundError: the data is not there and cannot be prepared.
        """
        _check_count("batch_size", batch_size)
        _check_count("limit", limit, none_ok=True)
        if shuffle is None:
            shuffle = splits.is_training(split)
        ds = self.read(split, shuffle=bool(shuffle), seed=seed, limit=None if limit is None else int(limit))
        if cache:
            ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(int(shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
        return ds.prefetch(tf.data.AUTOTUNE)
