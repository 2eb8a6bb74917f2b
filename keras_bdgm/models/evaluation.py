"""Bits per dimension of a model over a dataset: compiled, batched, with a progress bar.

For a model with bound log p_K(x) <= log p(x) (`GenerativeModel.log_prob` with K =
`num_samples` importance samples; K = 1 is the ELBO) and images of D = H * W * C
dimensions,

    bits/dim = (1 / M) sum_{i=1..M} -log p_K(x_i) / (D ln 2)     over the M images.

Batch b of the dataset (0, 1, ...) draws its noise from the seed pair (seed, b), so a figure
is reproducible from the model, the images, their batching, K and the seed. It depends on the
batching: the same images batched differently get other noise, an equally valid estimate
that differs by Monte Carlo noise (small next to the spread over images, but not zero), so
reproduce a reported figure with the batch size it was computed with.

Each batch runs as two `tf.function` graphs, the model's per-batch `importance_context` and
one chunk of samples (`log_weights`, reduced by logsumexp), traced once per batch shape (and
chunk size, at most two per shape); the seed and the chunk's position go in as tensors, so
new batches and seeds do not retrace. The graphs of a model are kept (`evaluator_for`), so a
second evaluation does not trace again. The bound is `log_prob`'s (`importance_chunks`,
`importance_bound` of keras_bdgm.models.base), equal to it up to float32 rounding in the last
bits (graph vs eager).

Progress: a Keras progress bar over batches with the running bits/dim; with K > 1 it also
moves after each chunk of samples (K = 1000 takes a while).

Example:

    from keras_bdgm import datasets

    from keras_bdgm.models import evaluation
    ds = datasets.load("fashion_mnist", "test", batch_size=256, shuffle=False)
    evaluation.evaluate_bits_per_dim(model, ds, num_samples=1000, seed=0)
    # 12/40 [=======>......................] - ETA: 9:41 - bits_per_dim: 3.6401
"""

import operator
import weakref

import numpy as np
import tensorflow as tf

from keras_bdgm.models.importance import (
    ImportanceChunk, check_num_samples, check_positive_int, importance_bound, importance_chunks,
)
from keras_bdgm.models.base import images_from

# Images per evaluation batch where nothing else is given (the fastest on 2 CPU cores for the
# small presets of both models; larger batches are no faster).
DEFAULT_BATCH_SIZE = 256

_EVALUATORS = weakref.WeakKeyDictionary()


class BoundEvaluator:
    """`model.log_prob` of one batch as compiled graphs, one chunk of samples at a time.

    Args:
      model: a `keras_bdgm.models.base.GenerativeModel`.

    Example:

        evaluator = evaluator_for(model)
        evaluator.log_prob(images, num_samples=100, seed=(0, 3))   # [N] nats
    """

    def __init__(self, model):
        self._model = weakref.ref(model)  # the graphs must not keep the model alive
        self.context_fn = tf.function(self._context, autograph=False)
        self.chunk_fn = tf.function(self._chunk_bound, autograph=False)

    @property
    def model(self):
        return self._model()

    def _context(self, x):
        return self.model.importance_context(x)

    def _chunk_bound(self, context, seed, index, start, count, size):
        chunk = ImportanceChunk(index=index, count=count, start=start, size=size)
        return tf.reduce_logsumexp(self.model.log_weights(context, seed, chunk), axis=0)

    @property
    def tracing_count(self):
        """Graphs traced so far (both functions together)."""
        return self.context_fn.experimental_get_tracing_count() + self.chunk_fn.experimental_get_tracing_count()

    def log_prob(self, images, num_samples=1, seed=None, samples_per_chunk=None, on_chunk=None):
        """`model.log_prob(images, num_samples, seed, samples_per_chunk)`, compiled: [N] nats.

        Args:
          images: uint8 [N, H, W, C] (checked eagerly, with the model's ValueErrors).
          num_samples, seed, samples_per_chunk: as in `GenerativeModel.log_prob`.
          on_chunk: called as on_chunk(chunks_done, chunks) after each chunk, or None.
        """
        model = self.model
        num_samples = check_num_samples(num_samples)
        x = model.check_images(images)
        chunks = importance_chunks(num_samples, x.shape[0], samples_per_chunk)
        context = self.context_fn(x)
        seed = model.stateless_seed(seed)
        bounds = []
        for chunk in chunks:
            index, start = tf.constant(chunk.index, tf.int32), tf.constant(chunk.start, tf.int32)
            bounds.append(self.chunk_fn(context, seed, index, start, chunk.count, chunk.size))
            if on_chunk is not None:
                on_chunk(chunk.index + 1, chunk.count)
        return importance_bound(bounds, num_samples)


def evaluator_for(model):
    """The `BoundEvaluator` of `model`, made on first use and kept while the model lives."""
    evaluator = _EVALUATORS.get(model)
    if evaluator is None:
        evaluator = _EVALUATORS[model] = BoundEvaluator(model)
    return evaluator


def _images_only(*parts):
    """A dataset element's images (elements: images, (images, ...), {"image": ...})."""
    return images_from(parts[0] if len(parts) == 1 else parts)


def _rebatched(batches, batch_size):
    """The images of an iterable of batches, in batches of `batch_size` (the last smaller)."""
    pending, size = [], 0
    for batch in batches:
        images = np.asarray(images_from(batch))
        pending.append(images)
        size += len(images)
        while size >= batch_size:
            merged = np.concatenate(pending)
            yield merged[:batch_size]
            pending, size = [merged[batch_size:]], size - batch_size
    if size:
        yield np.concatenate(pending)


def batches_of(dataset, batch_size=None):
    """(batches, number of batches or None): `dataset`'s batches, rebatched to `batch_size`.

    Args:
      dataset: a `tf.data.Dataset` or an iterable (e.g. a list) of batches, each uint8 images
        [N, H, W, C], (images, ...) or {"image": images, ...}.
      batch_size: None keeps the dataset's batches; else images per batch (the last batch
        holds the rest).

    Raises:
      ValueError: batch_size not an integer >= 1; an infinite or empty tf.data.Dataset.
    """
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(dataset, tf.data.Dataset):
        if batch_size is not None:
            dataset = dataset.map(_images_only).unbatch().batch(batch_size)
        cardinality = int(dataset.cardinality())
        if cardinality == tf.data.INFINITE_CARDINALITY:
            raise ValueError("The evaluation dataset is infinite (repeated?); pass a finite one, e.g. ds.take(n).")
        if cardinality == 0:
            raise ValueError("The evaluation dataset is empty: there are no images to evaluate.")
        return dataset, (cardinality if cardinality > 0 else None)
    if batch_size is not None:
        return _rebatched(dataset, batch_size), None
    return dataset, (len(dataset) if hasattr(dataset, "__len__") else None)


def evaluate_bits_per_dim(model, dataset, num_samples=1, seed=0, batch_size=None, samples_per_chunk=None,
                          verbose=1):
    """Mean per-image bits/dim of `model` over a dataset of uint8 image batches.

        bits/dim = mean_i -log p_K(x_i) / (D ln 2),   batch b's noise from seed (seed, b)

    The same figure as calling `model.bits_per_dim(images, num_samples, seed=(seed, b))` on
    batch b eagerly and averaging over all images (in float64), up to float32 rounding.

    Args:
      model: a `keras_bdgm.models.base.GenerativeModel` (FlowPlusPlus, ResNetVAE).
      dataset: a `tf.data.Dataset` or an iterable of batches: uint8 images [N, H, W, C],
        (images, labels) or {"image": images, ...}.
      num_samples: K >= 1 importance samples per image (1: the ELBO).
      seed: int; batch b draws its noise from the seed pair (seed, b).
      batch_size: None evaluates the dataset's own batches; an int rebatches its images
        (which changes the noise per image, see the module docstring).
      samples_per_chunk: samples per image evaluated at once (default: about 1024
        image-sample rows per chunk); see `GenerativeModel.log_prob`.
      verbose: 0 silent, 1 a progress bar (batches, running bits/dim; with K > 1 it moves
        per chunk of samples), 2 one line at the end.

    Returns:
      float: the mean bits/dim over all images.

    Raises:
      ValueError: num_samples, batch_size or samples_per_chunk not an integer >= 1, a
        non-integer seed, bad verbose, bad images, or an empty or infinite dataset.

    Example:

        ds = tf.data.Dataset.from_tensor_slices(test_images).batch(256)
        evaluate_bits_per_dim(model, ds)                      # the ELBO, in bits/dim
        evaluate_bits_per_dim(model, ds, num_samples=1000)    # the importance-weighted bound
    """
    num_samples = check_num_samples(num_samples)
    if samples_per_chunk is not None:
        samples_per_chunk = check_positive_int("samples_per_chunk", samples_per_chunk)
    try:
        seed = operator.index(seed)
    except TypeError:
        raise ValueError(f"seed must be an integer, got {seed!r}.") from None
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}.")
    batches, num_batches = batches_of(dataset, batch_size)
    evaluator = evaluator_for(model)
    progbar = tf.keras.utils.Progbar(num_batches, verbose=verbose, stateful_metrics=["bits_per_dim"],
                                     unit_name="batch") if verbose else None
    total, count, done = 0.0, 0, 0
    for b, batch in enumerate(batches):
        on_chunk = None
        if progbar is not None and num_samples > 1:
            def on_chunk(chunks_done, chunks, b=b):
                if chunks_done < chunks:
                    progbar.update(b + chunks_done / chunks)
        log_p = evaluator.log_prob(images_from(batch), num_samples, seed=(seed, b),
                                   samples_per_chunk=samples_per_chunk, on_chunk=on_chunk)
        bpd = np.asarray(model.nats_to_bits_per_dim(-log_p), np.float64)
        total += bpd.sum()
        count += bpd.size
        done = b + 1
        if progbar is not None:
            progbar.update(done, [("bits_per_dim", total / count)], finalize=False)
    if count == 0:
        raise ValueError("The evaluation dataset is empty: there are no images to evaluate.")
    if progbar is not None:
        progbar.update(done, [("bits_per_dim", total / count)], finalize=True)
    return float(total / count)
