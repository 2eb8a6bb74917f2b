"""The training step shared by every keras_bdgm model.

`GenerativeModel` is a `tf.keras.Model` whose subclasses implement one function,
`compute_losses(x, training) -> dict` of scalar losses (batch means, in bits per
dimension), holding at least `bits_per_dim`, the training objective. From it come:

* `train_step`: gradient of the objective; global-norm clipping to `clip_norm`;
  the update is skipped when the pre-clip norm is non-finite or above `skip_threshold`
  (the count is the `skipped_steps` metric, the norm the `grad_norm` metric). Binary
  latent weights are clipped by their constraints after every applied step.
* `test_step`: the same losses, without gradients.

The skip is decided in cross-replica context after the gradients are summed over
replicas, so it also holds under `tf.distribute` strategies (every replica agrees).

Example:

    class MyModel(GenerativeModel):
        def compute_losses(self, x, training=False):
            return {"bits_per_dim": ...}

    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    model.fit(uint8_images_dataset, epochs=10)
"""

import math

import numpy as np
import tensorflow as tf

from keras_bdgm.images import check_images


class _NoUnwrap:
    """Keeps distributed variables wrapped when passed through `merge_call`."""

    def __init__(self, value):
        self.value = value


def _is_legacy(optimizer):
    return isinstance(optimizer, tf.keras.optimizers.legacy.Optimizer)


def _build_optimizer(optimizer, variables):
    """Creates optimizer state outside the conditional update (cond cannot create it)."""
    with tf.init_scope():
        if _is_legacy(optimizer):
            optimizer._create_all_weights(variables)  # pylint: disable=protected-access
        else:
            optimizer.build(variables)


def _apply(optimizer, grads, variables):
    pairs = list(zip(grads, variables))
    if _is_legacy(optimizer):
        optimizer.apply_gradients(pairs, experimental_aggregate_gradients=False)
    else:
        optimizer.apply_gradients(pairs, skip_gradients_aggregation=True)


def apply_gradients_or_skip(optimizer, grads, variables, clip_norm, skip_threshold):
    """Clips `grads` to global norm `clip_norm` and applies them, unless their norm is
    non-finite or above `skip_threshold`. Call in replica context (e.g. in train_step).

    Returns:
      (grad_norm, skipped): the pre-clip global norm and 1.0 if the step was skipped.
    """
    strategy = tf.distribute.get_strategy()
    replica_ctx = tf.distribute.get_replica_context()
    if strategy.num_replicas_in_sync > 1:
        grads = replica_ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    norm = tf.linalg.global_norm(grads)
    ok = tf.math.is_finite(norm) & (norm <= skip_threshold)
    clipped, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)
    _build_optimizer(optimizer, variables)

    def skip():
        optimizer.iterations.assign_add(1, read_value=False)

    if tf.__internal__.distribute.strategy_supports_no_merge_call() or (
        strategy.num_replicas_in_sync == 1 and not tf.distribute.has_strategy()
    ):
        tf.__internal__.smart_cond.smart_cond(
            ok, lambda: _apply(optimizer, clipped, variables), skip
        )
    else:

        def cross_replica(distribution, grads, wrapped):
            def apply():
                distribution.extended.call_for_each_replica(
                    lambda g, w: _apply(optimizer, g, w.value), args=(grads, wrapped)
                )

            tf.__internal__.smart_cond.smart_cond(ok, apply, skip)

        replica_ctx.merge_call(cross_replica, args=(clipped, _NoUnwrap(variables)))
    return norm, 1.0 - tf.cast(ok, tf.float32)


def images_from(data):
    """The images of a batch from a dataset of images, (images, ...) or {"image": ...}."""
    if isinstance(data, dict):
        if "image" not in data:
            raise ValueError(f"A dict batch needs an 'image' key; got keys {sorted(data)}.")
        return data["image"]
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


class GenerativeModel(tf.keras.Model):
    """Base class of keras_bdgm's models: likelihood-based, trained on uint8 images.

    Subclasses implement `compute_losses(x, training)` (x: float32 pixels 0..255) and
    `log_prob(x, num_samples)`; they list their loss names in `loss_names`, the first
    being the objective `bits_per_dim`. They draw random noise with stateless ops seeded
    by `noise_seed()`, so resumed training is reproducible.

    Args:
      image_shape: (H, W, C) of the 8-bit images.
      clip_norm: global gradient-norm clip.
      skip_threshold: an update whose pre-clip gradient norm is above this is skipped.
    """

    loss_names = ("bits_per_dim",)

    def __init__(self, image_shape, clip_norm=1.0, skip_threshold=100.0, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        if len(self.image_shape) != 3 or min(self.image_shape) <= 0:
            raise ValueError(f"image_shape must be (height, width, channels), got {image_shape!r}.")
        self.clip_norm = float(clip_norm)
        self.skip_threshold = float(skip_threshold)
        # Training noise (dequantization, latent samples) comes from `noise_seed()`: this
        # generator's state is checkpointed with the model (not a weight), so a run resumed
        # by BackupAndRestore draws the same noise as an uninterrupted one. Seeded from
        # numpy, which tf.keras.utils.set_random_seed seeds.
        self.rng = tf.random.Generator.from_seed(int(np.random.randint(2**31 - 1)))
        self._base_seed = int(np.random.randint(2**31 - 1))
        self._replica_draws = 0
        self._loss_trackers = [tf.keras.metrics.Mean(name) for name in self.loss_names]
        self._skipped_tracker = tf.keras.metrics.Sum("skipped_steps")
        self._grad_norm_tracker = tf.keras.metrics.Mean("grad_norm")

    def noise_seed(self):
        """A fresh int32[2] seed for stateless random ops (`tf.random.stateless_*`).

        On one device it comes from `self.rng`. Inside a multi-replica step (where a
        shared generator's state updates would be synchronized across replicas in an
        order the replicas need not agree on) it is (base seed + draw index,
        step * replicas + replica id): distinct per replica, step and call site, and
        restored with the optimizer's step on resume.
        """
        ctx = tf.distribute.get_replica_context()
        strategy = tf.distribute.get_strategy()
        if ctx is None or strategy.num_replicas_in_sync == 1 or self.optimizer is None:
            return self.rng.uniform_full_int([2], dtype=tf.int32)
        self._replica_draws += 1  # at trace time: one constant per call site
        step = tf.cast(self.optimizer.iterations, tf.int32)
        replica = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
        return tf.stack([
            tf.constant((self._base_seed + self._replica_draws) % (2**31 - 1), tf.int32),
            step * strategy.num_replicas_in_sync + replica,
        ])

    @property
    def num_dims(self) -> int:
        """D = H * W * C, the dimensions that bits/dim divides by."""
        return int(np.prod(self.image_shape))

    def nats_to_bits_per_dim(self, nats):
        """Converts a negative log-likelihood in nats per image to bits per dimension."""
        return nats / (self.num_dims * math.log(2.0))

    @property
    def metrics(self):
        return [*self._loss_trackers, self._skipped_tracker, self._grad_norm_tracker]

    def count_params(self):
        """Parameters of the model (every weight but the metrics' running totals)."""
        metric_state = {id(v) for m in self.metrics for v in m.variables}
        return int(sum(np.prod(w.shape) for w in self.weights if id(w) not in metric_state))

    def compute_losses(self, x, training=False):
        """Returns {name: scalar batch mean} for every name in `loss_names`."""
        raise NotImplementedError

    def log_prob(self, x, num_samples=1):
        """Per-image log-likelihood (bound) in nats."""
        raise NotImplementedError

    def bits_per_dim(self, x, num_samples=1, **kwargs):
        """Per-image negative log-likelihood (bound) in bits per dimension.

        Extra arguments (e.g. `seed`) go to `log_prob`.
        """
        return self.nats_to_bits_per_dim(-self.log_prob(x, num_samples=num_samples, **kwargs))

    @staticmethod
    def check_sample_args(n, temperature):
        """Raises ValueError unless `n` >= 1 images at `temperature` > 0 can be sampled."""
        if int(n) < 1:
            raise ValueError(f"Cannot sample {n!r} images: pass n >= 1.")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")

    def check_images(self, x):
        """float32 pixels 0..255 of a batch, after checking shape and values."""
        return check_images(x, self.image_shape)

    def _update_loss_trackers(self, losses):
        for tracker in self._loss_trackers:
            tracker.update_state(losses[tracker.name])
        return {t.name: t.result() for t in self._loss_trackers}

    def train_step(self, data):
        x = self.check_images(images_from(data))
        with tf.GradientTape() as tape:
            losses = self.compute_losses(x, training=True)
            objective = losses[self.loss_names[0]]
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = objective / replicas
        variables = self.trainable_variables  # after the forward pass, which builds them
        grads = tape.gradient(scaled, variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
        norm, skipped = apply_gradients_or_skip(
            self.optimizer, grads, variables, self.clip_norm, self.skip_threshold
        )
        # Every replica makes the same decision; count it once.
        self._skipped_tracker.update_state(skipped / replicas)
        self._grad_norm_tracker.update_state(norm)
        logs = self._update_loss_trackers(losses)
        logs.update(skipped_steps=self._skipped_tracker.result(), grad_norm=self._grad_norm_tracker.result())
        return logs

    def test_step(self, data):
        x = self.check_images(images_from(data))
        return self._update_loss_trackers(self.compute_losses(x, training=False))
