"""`RunData`: the data one training run reads, resolved and checked once.

Example:

    data = RunData(config)            # ConfigError / DataNotFoundError before anything runs
    model.fit(data.train(), steps_per_epoch=100)
    evaluate_bits_per_dim(model, data.evaluation())
"""

import numpy as np
import tensorflow as tf

from keras_bdgm import datasets
from keras_bdgm.runs.errors import ConfigError, DataNotFoundError
from keras_bdgm.runs.recipes import recipe


class RunData:
    """The data a run reads (training, evaluation, validation and init batches), checked once.

    Raises ConfigError / DataNotFoundError at construction, before anything is trained or
    written, when a split the run reads is missing or its images differ in shape.
    """

    def __init__(self, config):
        self.config = config
        try:
            self.source = datasets.resolve(config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir)
            self.image_shape = self.source.image_shape(config.train_split)
            for use, split in (("evaluation", config.eval_split), ("validation", config.validation_split)):
                if split is None or (use == "validation" and not config.validation_every):
                    continue
                self.source.num_examples(split)  # prepares the data once and checks the slice
                other = self.source.image_shape(split)
                if other != self.image_shape:
                    raise ValueError(
                        f"The {use} split {split!r} holds {other} images, the training split {self.image_shape}.")
        except FileNotFoundError as err:
            raise DataNotFoundError(str(err)) from None
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def _load(self, split, batch_size, shuffle=False, **kwargs):
        return self.source.load(split, batch_size, shuffle=shuffle, **kwargs)

    def train(self, skip_batches=0):
        """Shuffled training batches, repeated; a resumed run skips the batches it trained.

        Batches are global batches (`batch_size` images). Under a multi-worker strategy every
        worker runs this same seeded pipeline and tf.data shards it by DATA (not by FILE: tfds
        splits may be one file, fewer than the workers): each global batch is split into
        per-replica batches in order and worker w keeps those of its replicas. So at every
        step the workers see disjoint parts of one global batch (each worker reads all the
        data and drops the others' parts), and their union, in replica order, is the batch a
        single process with the same replicas trains on (tests/test_multi_worker.py).
        """
        c = self.config
        ds = self._load(c.train_split, c.batch_size, shuffle=True, seed=c.seed, drop_remainder=True).repeat()
        ds = ds.skip(skip_batches) if skip_batches else ds
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    def evaluation(self):
        c = self.config
        return self._load(c.eval_split, c.eval_batch, limit=c.eval_examples)

    def validation_images(self):
        """The validation curve's images, as one uint8 array."""
        c = self.config
        ds = self._load(c.validation_split, c.validation_examples, limit=c.validation_examples)
        return np.concatenate([np.asarray(b) for b in ds])

    def init_batch(self):
        """One batch for the data-dependent init: the recipe's batches, at most 512 images."""
        c = self.config
        n = c.init_examples or min(recipe(c.model).init_batches * c.batch_size, 512)
        return next(iter(self._load(c.train_split, n, shuffle=True, seed=c.seed + 1)))
