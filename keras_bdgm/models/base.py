"""The contract and the training step shared by every keras_bdgm model.

`GenerativeModel` is a `tf.keras.Model` for likelihood-based models of uint8 images. A
subclass supplies the model-specific pieces (see the class docstring); the rest lives here
once:

* `train_step` / `test_step`: the objective of `compute_losses(x, training) -> dict` (scalar
  batch means in bits per dimension, at least `bits_per_dim`). Training takes its gradient,
  clips it to global norm `clip_norm` and skips the update when the pre-clip norm is
  non-finite or above `skip_threshold` (counted by the `skipped_steps` metric; the norm is
  the `grad_norm` metric). A non-finite loss or norm is left out of the epoch's running
  means (they average the finite ones), so one bad batch does not make them NaN. The skip
  is decided in cross-replica context after the gradients are summed over replicas, so it
  also holds under `tf.distribute` strategies.
* `log_prob(x, num_samples, seed, samples_per_chunk)`: the importance-weighted bound from
  the model's per-sample log-weights, in chunks of samples.
* `bits_per_dim(x, ...)`: -log_prob / (D ln 2), D = H * W * C.

The importance-weighted bound is in `keras_bdgm.models.importance`, the seed rule in
`keras_bdgm.models.seeds` and the skipped update in `keras_bdgm.models.updates`.

Example:

    class MyModel(GenerativeModel):
        def compute_losses(self, x, training=False):
            return {"bits_per_dim": ...}
        def log_weights(self, context, seed, chunk):
            ...  # [chunk.size, N] log-weights of samples chunk.start .. chunk.start + chunk.size - 1

    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    model.fit(uint8_images_dataset, epochs=10)
    model.log_prob(images, num_samples=100, seed=0)   # [N] nats
"""

import math

import numpy as np
import tensorflow as tf

from keras_bdgm.bijectors import shared
from keras_bdgm.images import check_images
from keras_bdgm.models.importance import (  # noqa: F401  (public here too)
    IWAE_CHUNK_ROWS, ImportanceChunk, check_num_samples, check_positive_int, importance_bound,
    importance_chunks)
from keras_bdgm.models.grappler import grappler_off_helps, without_grappler
from keras_bdgm.models.seeds import stateless_seed
from keras_bdgm.models.updates import StepMean, apply_gradients_or_skip, build_optimizer


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

    The contract. A subclass implements

    * `compute_losses(x, training)`: {name: scalar batch mean in bits/dim} for every name in
      `loss_names`, the first being the objective `bits_per_dim` (x: float32 pixels 0..255).
    * `log_weights(context, seed, chunk)`: the log-weights log p(x, z) - log q(z | x) in
      nats, [chunk.size, N], of importance samples chunk.start .. chunk.start + size - 1 of
      every image (row k holds sample chunk.start + k); `context` is what
      `importance_context(x)` returned (by default x itself; a model overrides it for work
      that all chunks of a batch share, e.g. the VAE's bottom-up pass), `seed` the call's
      int32[2] seed (`keras_bdgm.models.seeds`). `log_prob` and `bits_per_dim` come from it.
    * `call(x, training=None)`: the single-sample bound log p(x, z) - log q(z | x) per image,
      in nats ([N] float32, the ELBO estimate: higher is better; bits/dim = -call / (D ln 2)),
      with fresh noise from `noise_seed()` (an estimate with the distribution of
      `log_prob(x)`, not necessarily its draw for that seed); `training=True` turns on
      dropout. Keras' `model(x)`
      and `model.predict` give this, and `keras_bdgm.initialize` runs it where a model has
      no `data_dependent_init`.
    * `sample(n, temperature=1.0, seed=None, ...)`: n uint8 images [n, H, W, C].

    and sets, in its constructor (which also creates every weight, so weights can be loaded,
    counted and saved at once):

    * `config`: dict, the resolved hyperparameters (the preset with the overrides applied).
      (`hparams` is a deprecated alias.)
    * `latent_shape`: (h, w, c) of one latent tensor of one image: z of the main flow for
      Flow++ (h * w * c = D), each of the `num_latent_layers` layers z_1..z_L for the ResNet
      VAE. A batch of n images has latents of shape [n, *latent_shape] (per layer).
    * `num_latent_layers`: how many such tensors (default 1); 0 (and `latent_shape` ())
      for a model without latents, such as the PixelCNN, whose log-weights are all the
      exact log p(x), whatever the seed.

    Models draw random noise with stateless ops seeded by `stateless_seed(seed)`, fresh
    seeds coming from `noise_seed()`, so resumed training is reproducible.

    Args:
      image_shape: (H, W, C) of the 8-bit images.
      clip_norm: global gradient-norm clip.
      skip_threshold: an update whose pre-clip gradient norm is above this is skipped.
    """

    loss_names = ("bits_per_dim",)
    num_latent_layers = 1
    # What `compile` uses for jit_compile (XLA) when its caller does not say: a subclass sets
    # True where XLA is faster and gives the same numbers as the tf.function step.
    default_jit_compile = False
    # A training run (`keras_bdgm.runs.train`) with at least this many train steps ahead and
    # no jit_compile of its own compiles its step with XLA: the run is long enough for XLA's
    # faster steps to repay the compilation (measured on CPU). None: never.
    xla_break_even_steps = None
    # False: on a CPU-only host the tf.function train step (and a model's own sampling graph,
    # where it says so) runs with Grappler off (`keras_bdgm.models.grappler`), for a model
    # whose large graphs make Grappler's rewriting cost seconds of start-up and gain nothing
    # per call (measured: Flow++).
    grappler_on_cpu = True

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
        self._loss_trackers = [StepMean(name) for name in self.loss_names]
        self._skipped_tracker = tf.keras.metrics.Sum("skipped_steps")
        self._grad_norm_tracker = StepMean("grad_norm")

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

    def stateless_seed(self, seed=None):
        """The int32[2] seed of `seed` (`keras_bdgm.models.seeds`): `noise_seed()` when None,
        else `stateless_seed(seed)`."""
        if seed is None:
            return self.noise_seed()
        return stateless_seed(seed)

    @property
    def hparams(self):
        """Deprecated alias of `config` (the resolved hyperparameters)."""
        return self.config

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

    # ---------------------------------------------------------------- the bound

    def importance_context(self, x):
        """Per-batch work shared by all chunks of `log_prob` (x: checked float32 pixels).

        Whatever it returns (a tensor or a nested structure of tensors) is passed to
        `log_weights`. The default is x itself."""
        return x

    def log_weights(self, context, seed, chunk):
        """[chunk.size, N] log p(x, z_k) - log q(z_k | x) in nats for the chunk's samples.

        Args:
          context: `importance_context(x)` of the batch x.
          seed: the call's int32[2] seed, the same for every chunk.
          chunk: an `ImportanceChunk` (index and start may be int32 scalar tensors).
        """
        raise NotImplementedError

    def log_prob(self, x, num_samples=1, seed=None, samples_per_chunk=None):
        """Per-image lower bound on log p(x) in nats: the ELBO (K = 1) or the
        importance-weighted bound (K > 1), computed in chunks (module docstring):

            log p(x) >= logsumexp_k(log p(x, z_k) - log q(z_k | x)) - log K,  z_k ~ q(z | x)

        Args:
          x: uint8 images [N, H, W, C].
          num_samples: K, an integer >= 1.
          seed: an int, a pair of ints or None (fresh noise); see "Seeds".
          samples_per_chunk: samples per image evaluated at once (default: about
            `IWAE_CHUNK_ROWS` image-sample rows per chunk). It sets which noise each sample
            gets for the ResNet VAE, not for Flow++.

        Returns:
          float32 [N].

        Raises:
          ValueError: bad images, num_samples or samples_per_chunk not an integer >= 1.

        Example:

            model.log_prob(images, num_samples=1000, seed=0)
        """
        num_samples = check_num_samples(num_samples)
        x = self.check_images(x)
        chunks = importance_chunks(num_samples, x.shape[0], samples_per_chunk)
        context = self.importance_context(x)
        seed = self.stateless_seed(seed)
        bounds = [tf.reduce_logsumexp(self.log_weights(context, seed, chunk), axis=0) for chunk in chunks]
        return importance_bound(bounds, num_samples)

    def bits_per_dim(self, x, num_samples=1, **kwargs):
        """Per-image negative log-likelihood (bound) in bits per dimension.

        Extra arguments (`seed`, `samples_per_chunk`) go to `log_prob`.
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

    # ---------------------------------------------------------------- training

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, weighted_metrics=None,
                run_eagerly=None, steps_per_execution=None, jit_compile=None, **kwargs):
        """`tf.keras.Model.compile`, where jit_compile=None (not given) means the model's
        `default_jit_compile`: XLA by default for a model class that sets it, except with
        `run_eagerly=True` or several replicas. An explicit `jit_compile` (True or False) wins.

        The saved compile config keeps the argument as given (None stays None), so a loaded
        model gets the default of the code that loads it.
        """
        requested = jit_compile
        if jit_compile is None:
            jit_compile = bool(
                self.default_jit_compile and not run_eagerly and not tf.config.functions_run_eagerly()
                and self.distribute_strategy.num_replicas_in_sync == 1
            )
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights,
                        weighted_metrics=weighted_metrics, run_eagerly=run_eagerly,
                        steps_per_execution=steps_per_execution, jit_compile=jit_compile, **kwargs)
        compile_config = getattr(self, "_compile_config", None)
        if compile_config is not None:
            compile_config.config["jit_compile"] = requested

    def compile_from_config(self, config):
        """Compiles from a saved compile config, as `tf.keras.Model.compile_from_config` does
        (which skips any model whose `compile` is overridden, as here)."""
        self.compile(**tf.keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            build_optimizer(self.optimizer, self.trainable_variables)  # its slots, for the saved optimizer state

    def make_train_function(self, force=False):
        """Keras' train function, with the optimizer's state created first (and, for a
        model with `grappler_on_cpu = False` on a CPU-only host, called with Grappler
        off: `keras_bdgm.models.grappler`).

        A `tf.function` that creates variables on its first call is traced twice (once to
        create them, once more without): creating the optimizer's slots beforehand makes
        the first train step trace the model once, about half of its start-up time.
        """
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and self.built and self.train_function is None:
            with self.distribute_strategy.scope():
                build_optimizer(optimizer, self.trainable_variables)
        function = super().make_train_function(force=force)
        if not self.run_eagerly and not self.jit_compile and self.distribute_strategy.num_replicas_in_sync == 1:
            function = self.train_function = self._grappler_off_for(function)
        return function

    def _grappler_off_for(self, function):
        """`function` called with Grappler off (`keras_bdgm.models.grappler`) where this model
        asks for it (`grappler_on_cpu = False`) and the host has no GPU or TPU; else itself."""
        if self.grappler_on_cpu or getattr(function, "grappler_off", False) or not grappler_off_helps():
            return function
        return without_grappler(function)

    def _update_loss_trackers(self, losses, finite_only=False):
        """Adds a step's losses to the running means; `finite_only` (training) leaves out a
        non-finite loss, whose update was skipped (`keras_bdgm.models.updates`)."""
        for tracker in self._loss_trackers:
            if finite_only:
                tracker.update_finite(losses[tracker.name])
            else:
                tracker.update_state(losses[tracker.name])
        return {t.name: t.result() for t in self._loss_trackers}

    # Not converted by AutoGraph: the step has no tensor-dependent Python control flow (the
    # clip-or-skip is a tf.cond), and converting it converted every layer's `call` on the
    # first trace, a fifth of Flow++'s first train step.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        # noise_seed numbers its call sites from 1 in every trace, so replica r of a
        # one-process MirroredStrategy and worker r of a MultiWorkerMirroredStrategy draw the
        # same noise (each replica is traced separately; the second seed half separates them).
        self._replica_draws = 0
        x = self.check_images(images_from(data))
        with tf.GradientTape() as tape, shared.inlined(self.jit_compile):  # XLA: math inline
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
        self._grad_norm_tracker.update_finite(norm)
        logs = self._update_loss_trackers(losses, finite_only=True)
        logs.update(skipped_steps=self._skipped_tracker.result(), grad_norm=self._grad_norm_tracker.result())
        return logs

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        x = self.check_images(images_from(data))
        with shared.inlined(self.jit_compile):  # XLA compiles shared function calls slowly
            return self._update_loss_trackers(self.compute_losses(x, training=False))
