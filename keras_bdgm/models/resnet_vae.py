"""ResNet VAE with bidirectional inference, full-precision or binary (Bird et al., 2021).

Architecture (docs/ARCHITECTURE.md has the layer-by-layer shapes and parameter counts),
pixels scaled to [-1, 1], latents at H/2 x W/2:

    in:   x -> 5x5 stride-2 WN conv (C -> h) -> ELU -> processing ResidualBlocks (5x5)
    up:   for layer l = 1..L:   (q_mean_l, q_raw_l) = conv3x3(ELU(u));  u = blocks_l^up(u)
    down: d = 0 (a constant H/2 x W/2 x h);  for l = L..1:
            (p_mean, p_raw, r_mean, r_raw) = conv3x3(ELU(d))
            p(z_l | z_>l)    = Logistic(p_mean, 0.01 + softplus(p_raw))
            q(z_l | x, z_>l) = Logistic(r_mean + q_mean_l, 0.01 + softplus(r_raw + q_raw_l))
            z_l ~ q (p when sampling);  d = blocks_l^down(d) + conv3x3(ELU(z_l))
    out:  d -> ELU -> processing ResidualBlocks (5x5) -> ELU -> 5x5 stride-2 WN conv^T (h -> C)
          = the means of a discretized logistic with one learned scalar log-scale.

Only the residual blocks take `precision` (binary weights at w1, sign activations at a1);
every other layer is 32-bit. As in the public code, the top layer's bottom-up block has
weights (they count in the paper's 56.15M) but its output feeds nothing; it is run only
while the model is being built, never in training or evaluation.

Losses (bits per dimension, D = H*W*C):

    elbo(x)      = log p(x | z) - sum_l [log q(z_l) - log p(z_l)],  z ~ q   (one sample)
    bits_per_dim = (-log p(x|z) + sum_l free_bits_kl(KL_l, kl_min)) / (D ln 2)   (training)
                 = -elbo / (D ln 2)                                          (evaluation)
    kl, distortion = the two parts of -elbo, in bits per dimension.

`model(x)` is the single-sample ELBO per image in nats. `log_prob(x, num_samples=K)`
(keras_bdgm.models.base.GenerativeModel) is the ELBO at K = 1 and the importance-weighted bound
log (1/K) sum_k exp(log p(x, z_k) - log q(z_k | x)) for K > 1, computed in chunks of samples;
this model supplies the log-weights (`log_weights`), sharing one bottom-up pass per batch
between the chunks.

Differences from the public code (tom-bird/binary-gen-models), kept on purpose:

* sign(0) = +1 (larq's `ste_sign`), not 0 as in torch: at w1a1 the first top-down
  residual block sees the all-zero start state as all +1. A 1-bit value has no 0.
* Likelihood scale exp(log_scale), not softplus(raw): the same one positive scalar, and
  the parameter is the log-scale its name says.
* Exact discretized logistic (every bin's mass in log space), not the PixelCNN++-style
  approximation for low-mass bins: the loss is a true bound.
* Evaluation reports the ELBO without free bits; the public code keeps the free-bits floor
  in its test loss, which overstates that loss.
* Linear weight-norm gain, not softplus of a log-gain: it can start at exactly 0, so every
  residual block starts as the identity through one code path.
* ELU, not tanh, as the real-valued residual activation: the paper says ELU.
* The training recipe (keras_bdgm.runs.experiment) is that of the public train_rvae.py at commit
  8b45e5d (Adam, batch 128, lr 2e-3 decayed x0.999995 per step to 5e-4, clip 1.0, skip bound
  1e5, 2 init batches), the script written for this model; the later train.py (a9311d2)
  has other defaults (lr 1e-3 constant, skip bound 100, 25 init batches, 1 processing block).

#### Examples

    vae = ResNetVAE((28, 28, 1), precision="w1a1", preset="small")
    keras_bdgm.initialize(vae, train_images[:256])
    vae.compile(optimizer=tf.keras.optimizers.Adam(2e-3))
    vae.fit(dataset, epochs=10)              # dataset of uint8 [N, 28, 28, 1] batches
    vae.bits_per_dim(test_images, num_samples=1000)
    vae.sample(16, temperature=0.8, seed=1)  # uint8 [16, 28, 28, 1]

#### References
[1] Bird, Kingma, Barber. Reducing the Computational Cost of Deep Generative Models with
    Binary Neural Networks. ICLR 2021. https://arxiv.org/abs/2010.13476
[2] Kingma et al. Improved Variational Inference with Inverse Autoregressive Flow. 2016.
    https://arxiv.org/abs/1606.04934
[3] Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders. 2015.
    https://arxiv.org/abs/1509.00519
"""

import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.blocks import ResidualBlock
from keras_bdgm.distributions import (
    DiscretizedLogistic,
    free_bits_kl,
    kl_per_channel,
    logistic_from_raw,
    sample_with_kl,
)
from keras_bdgm.init import init_scales
from keras_bdgm.layers import WNConv2D, WNConv2DTranspose
from keras_bdgm.precision import parse as parse_precision
from keras_bdgm.models.presets import resolve
from keras_bdgm.models.base import GenerativeModel
from keras_bdgm.models.noise import split_seed

PRESETS = {
    # Bird et al. (2021), 32x32x3: 56.15M parameters (96.06M with width=336).
    "paper": {
        "width": 256,
        "latent_layers": 12,
        "z_channels": 8,
        "processing_blocks": 4,
        "blocks_per_layer": 1,
        "kl_min": 0.1,
        "dropout": 0.0,
        "clip_norm": 1.0,
        "skip_threshold": 1e5,
        "init_scheme": "identity",  # data-dependent init scales (keras_bdgm.init.INIT_SCHEMES); a near
                                    # tie with "reference": BENCHMARKS.md, "Init schemes"
    },
    # 28x28x1 (e.g. Fashion-MNIST) at > 50 training images/s on 2 CPU cores.
    "small": {
        "base": "paper",
        "width": 48,
        "latent_layers": 4,
        "processing_blocks": 1,
    },
}

_POSITIVE_INTS = ("width", "latent_layers", "z_channels")
_NON_NEGATIVE_INTS = ("processing_blocks", "blocks_per_layer")
_LATENT_INIT_SCALE = 0.1


def _check_hparams(config):
    for key in _POSITIVE_INTS + _NON_NEGATIVE_INTS:
        value = config[key]
        low = 1 if key in _POSITIVE_INTS else 0
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"ResNetVAE {key} must be an integer >= {low}, got {value!r}.")
    if not config["kl_min"] >= 0:
        raise ValueError(f"ResNetVAE kl_min must be >= 0 nats, got {config['kl_min']!r}.")


def _prior(p_mean, p_raw, temperature):
    """p(z_l | z_>l) with its scale times `temperature`, a float or a scalar tensor (a tensor
    always multiplies; x * 1.0 == x exactly, so it matches the float path at 1.0)."""
    if not tf.is_tensor(temperature):
        return logistic_from_raw(p_mean, p_raw, temperature=temperature)
    prior = logistic_from_raw(p_mean, p_raw)
    return tfp.distributions.Logistic(loc=prior.loc, scale=prior.scale * temperature)


def _to_uint8(values):
    """[-1, 1] grid values -> uint8 pixels."""
    return tf.cast(tf.round((values + 1.0) * 127.5), tf.uint8)


@tf.keras.utils.register_keras_serializable(package="keras_bdgm")
class ResNetVAE(GenerativeModel):
    """Hierarchical VAE with logistic latents and bidirectional inference.

    Args:
      image_shape: (H, W, C) of the uint8 images; H and W even.
      precision: "w32a32", "w1a32" or "w1a1" for the residual blocks.
      preset: "paper" (Bird et al., 32x32x3) or "small" (28x28x1 on a CPU).
      name: the Keras model name.
      **overrides: hyperparameters replacing the preset's: width, latent_layers,
        z_channels, processing_blocks, blocks_per_layer, kl_min, dropout, clip_norm,
        skip_threshold.

    Raises:
      ValueError: unknown preset or hyperparameter (the message lists the valid ones),
        bad precision, odd image height or width.
    """

    loss_names = ("bits_per_dim", "kl", "distortion")
    # No run picks XLA for it by itself. With oneDNN's CPU kernels (on since 0.3.1) XLA's
    # step was 1.16x the tf.function step on a 2-core AVX2 machine but 0.81-0.90x on a
    # 2-core AVX-512 one, where its compilation adds 5-9 s to the first step (2-2.5 s with
    # the persistent cache warm; BENCHMARKS.md, "XLA for the VAE, again"): not a default
    # that pays on every CPU. `compile(..., jit_compile=True)` /
    # `train.py --jit_compile` still give the same numbers (`noise`).
    xla_break_even_steps = None

    def __init__(self, image_shape, precision="w32a32", preset="small", name=None, **overrides):
        config = resolve(PRESETS, preset, overrides, model="ResNetVAE")
        _check_hparams(config)
        super().__init__(
            image_shape,
            clip_norm=config["clip_norm"],
            skip_threshold=config["skip_threshold"],
            name=name,
        )
        height, width, channels = self.image_shape
        if height % 2 or width % 2:
            raise ValueError(
                f"ResNetVAE halves the image with stride-2 convs, so height and width must "
                f"be even; got image_shape {self.image_shape}. Pad or crop the images."
            )
        self.precision = parse_precision(precision).name
        self.preset = preset
        self.overrides = dict(overrides)
        self.config = config  # the resolved hyperparameters (`hparams`: deprecated alias)
        h, z = config["width"], config["z_channels"]
        self.latent_shape = (height // 2, width // 2, z)
        self.kl_min = float(config["kl_min"])

        def blocks(count, kernel_size, prefix):
            return [
                ResidualBlock(h, kernel_size, self.precision, config["dropout"], name=f"{prefix}_{i}")
                for i in range(count)
            ]

        def latent_conv(filters, name):
            return WNConv2D(filters, 3, padding="same", init_scale=_LATENT_INIT_SCALE, name=name)

        entry_scale = init_scales(config["init_scheme"])["entry"]
        self.in_conv = WNConv2D(h, 5, strides=2, padding="same", init_scale=entry_scale, name="in_conv")
        self.in_blocks = blocks(config["processing_blocks"], 5, "in_block")
        self.out_blocks = blocks(config["processing_blocks"], 5, "out_block")
        self.out_conv = WNConv2DTranspose(channels, 5, strides=2, padding="same", init_scale=entry_scale,
                                          name="out_conv")
        n, per = config["latent_layers"], config["blocks_per_layer"]
        self.up_convs = [latent_conv(2 * z, f"up_conv_{l}") for l in range(n)]
        self.up_blocks = [blocks(per, 3, f"up_block_{l}") for l in range(n)]
        self.down_convs = [latent_conv(4 * z, f"down_conv_{l}") for l in range(n)]
        self.down_blocks = [blocks(per, 3, f"down_block_{l}") for l in range(n)]
        self.z_convs = [latent_conv(h, f"z_conv_{l}") for l in range(n)]
        self.log_scale = self.add_weight(name="log_scale", shape=(), initializer="zeros")
        with tf.init_scope():  # create every variable now: count_params, summary and loading work at once
            self._forward(tf.zeros((1, *self.image_shape)), seed=0)
        self.built = True
        self._bottom_up_fn = tf.function(self._bottom_up, reduce_retracing=True, autograph=False)
        self._log_weights_fn = tf.function(self._log_weights, reduce_retracing=True, autograph=False)
        # `sample`'s graph: traced once per (n, sample_pixels); temperature and seed are tensors.
        self._sample_fn = tf.function(self._sample_images, autograph=False)

    @property
    def num_latent_layers(self):
        """L, the latent layers; each holds `latent_shape` = (H/2, W/2, z_channels) per image."""
        return len(self.up_convs)

    # ---------------------------------------------------------------- the network

    @staticmethod
    def _scale_pixels(x):
        return x / 127.5 - 1.0

    def _bottom_up(self, x_scaled, training=False):
        """Posterior parameters [B, H/2, W/2, 2z] of each layer, bottom layer first."""
        u = tf.nn.elu(self.in_conv(x_scaled))
        for block in self.in_blocks:
            u = block(u, training=training)
        params = []
        top = self.num_latent_layers - 1
        for l, (conv, blocks) in enumerate(zip(self.up_convs, self.up_blocks)):
            params.append(conv(tf.nn.elu(u)))
            if l < top or not all(b.built for b in blocks):  # the top's output feeds nothing
                for block in blocks:
                    u = block(u, training=training)
        return params

    # ---------------------------------------------------------------- per-layer steps
    # The generative path one step at a time. `_top_down` is built from these, and the
    # lossless codec (keras_bdgm.compression) runs them one layer at a time, so both
    # compute the same thing from one copy of the logic:
    #
    #   d = initial_state(B)
    #   for l = L-1 .. 0:  p_mean, p_raw, r_mean, r_raw = top_down_params(l, d)
    #                      z_l = any value (a sample, a bucket centre, ...)
    #                      d = top_down_update(l, d, z_l)
    #   means = pixel_means(d)
    #
    # with p(z_l | z_>l) = Logistic(p_mean, 0.01 + softplus(p_raw)) and, given
    # (q_mean, q_raw) = bottom_up(x_scaled)[l], q(z_l | x, z_>l) =
    # Logistic(r_mean + q_mean, 0.01 + softplus(r_raw + q_raw)).

    def bottom_up(self, x_scaled):
        """(q_mean, q_raw) of each layer, bottom layer first; each [B, H/2, W/2, z].

        `x_scaled`: float32 images scaled to [-1, 1] (pixels / 127.5 - 1)."""
        return [tuple(tf.split(p, 2, axis=-1)) for p in self._bottom_up(x_scaled)]

    def initial_state(self, batch_size):
        """The top-down state d before the top layer: zeros [B, H/2, W/2, width]."""
        h2, w2, _ = self.latent_shape
        return tf.zeros([batch_size, h2, w2, self.config["width"]])

    def top_down_params(self, l, d):
        """Layer l's (p_mean, p_raw, r_mean, r_raw), each [B, H/2, W/2, z], from state d."""
        return tuple(tf.split(self.down_convs[l](tf.nn.elu(d)), 4, axis=-1))

    def prior_params(self, l, d):
        """Layer l's (p_mean, p_raw) only: `top_down_params`' first two, computing half the conv."""
        prior_half = slice(0, 2 * self.latent_shape[-1])
        return tuple(tf.split(self.down_convs[l](tf.nn.elu(d), output_channels=prior_half), 2, axis=-1))

    def top_down_update(self, l, d, z, training=False):
        """The state after layer l: d = blocks_l^down(d) + conv3x3(ELU(z_l))."""
        for block in self.down_blocks[l]:
            d = block(d, training=training)
        return d + self.z_convs[l](tf.nn.elu(z))

    def pixel_means(self, d, training=False):
        """The output path: the discretized logistic's means [B, H, W, C] from the final d."""
        d = tf.nn.elu(d)  # the output path starts with an activation, as in the reference code
        for block in self.out_blocks:
            d = block(d, training=training)
        return self.out_conv(tf.nn.elu(d))

    def _top_down(self, batch_size, up_params=None, seed=None, temperature=1.0, training=False):
        """Runs the generative path; returns (logistic means [B, H, W, C], KL maps).

        With `up_params` z is drawn from the bidirectional posterior and the KL maps are
        the single-sample estimates log q(z_l) - log p(z_l) [B, H/2, W/2, z], bottom layer
        first; without, z is drawn from the prior (scales times `temperature`).
        """
        n = self.num_latent_layers
        seeds = split_seed(self.stateless_seed(seed), n=n)  # as tfp.random.split_seed's, also under XLA
        # Until the top layer's z is added, d is the same for every image: the top layer's
        # parameters and blocks run on one row, broadcast against the batch (unless training
        # with dropout, whose masks differ per image).
        shared = not (training and self.config["dropout"] > 0)
        d = self.initial_state(1 if shared else batch_size)
        kls = [None] * n
        for l in reversed(range(n)):
            if up_params is None:
                p_mean, p_raw = (tf.broadcast_to(t, tf.concat([[batch_size], tf.shape(t)[1:]], 0))
                                 for t in self.prior_params(l, d))
                z = _prior(p_mean, p_raw, temperature).sample(seed=seeds[l])
            else:
                p_mean, p_raw, r_mean, r_raw = self.top_down_params(l, d)
                q_mean, q_raw = tf.split(up_params[l], 2, axis=-1)
                posterior = logistic_from_raw(r_mean + q_mean, r_raw + q_raw)
                z, kls[l] = sample_with_kl(posterior, logistic_from_raw(p_mean, p_raw), seeds[l])
            d = self.top_down_update(l, d, z, training=training)
        return self.pixel_means(d, training=training), kls

    def likelihood(self, means):
        """p(x | z): the discretized logistic with the learned scalar log-scale."""
        return DiscretizedLogistic(means, tf.exp(self.log_scale))

    def _forward(self, x_scaled, training=False, seed=None):
        """One posterior sample: (log p(x|z) [B], KL maps per layer, logistic means).

        `seed`: an int, a pair or None (`GenerativeModel.stateless_seed`)."""
        up = self._bottom_up(x_scaled, training=training)
        means, kls = self._top_down(tf.shape(x_scaled)[0], up, seed=seed, training=training)
        log_px = tf.reduce_sum(self.likelihood(means).log_prob(x_scaled), axis=[1, 2, 3])
        return log_px, kls, means

    @staticmethod
    def _total_kl(kls):
        return tf.add_n([tf.reduce_sum(kl, axis=[1, 2, 3]) for kl in kls])

    def call(self, inputs, training=None):
        """Single-sample ELBO log p(x|z) - KL per image in nats ([B]), fresh noise from
        `noise_seed()`; `initialize` uses this pass."""
        x = self._scale_pixels(self.check_images(inputs))
        log_px, kls, _ = self._forward(x, training=training)
        return log_px - self._total_kl(kls)

    # ---------------------------------------------------------------- losses and bounds

    def compute_losses(self, x, training=False):
        """bits_per_dim (free bits at training=True only), kl and distortion, in bits/dim."""
        log_px, kls, _ = self._forward(self._scale_pixels(x), training=training)
        distortion = -tf.reduce_mean(log_px)
        kl = tf.reduce_mean(self._total_kl(kls))
        if training:
            objective = distortion + tf.add_n([free_bits_kl(k, self.kl_min) for k in kls])
        else:
            objective = distortion + kl
        return {
            "bits_per_dim": self.nats_to_bits_per_dim(objective),
            "kl": self.nats_to_bits_per_dim(kl),
            "distortion": self.nats_to_bits_per_dim(distortion),
        }

    def kl_per_layer(self, x, seed=None):
        """Single-sample KL of each latent layer, nats per image (batch mean); [L], bottom first."""
        x = self._scale_pixels(self.check_images(x))
        _, kls, _ = self._forward(x, seed=seed)
        return tf.stack([tf.reduce_sum(kl_per_channel(k)) for k in kls])

    def _log_weights(self, x_scaled, up_params, seed):
        """log p(x, z) - log q(z | x) for one posterior sample per row; [rows]."""
        means, kls = self._top_down(tf.shape(x_scaled)[0], up_params, seed=seed)
        log_px = tf.reduce_sum(self.likelihood(means).log_prob(x_scaled), axis=[1, 2, 3])
        return log_px - self._total_kl(kls)

    def importance_context(self, x):
        """(x scaled to [-1, 1], the bottom-up pass's posterior parameters): computed once
        per batch and shared by every chunk of the importance-weighted bound."""
        x_scaled = self._scale_pixels(x)
        return x_scaled, self._bottom_up_fn(x_scaled)

    def log_weights(self, context, seed, chunk):
        """[chunk.size, N] log p(x, z_k) - log q(z_k | x) in nats, z_k ~ q(z | x).

        Chunk c of C draws its samples with the c-th of the C seeds that
        `tfp.random.split_seed(seed, n=C)` splits from the call's seed, on the batch tiled
        chunk.size times (row = sample * N + image): so the noise of a sample depends on the
        chunking (`samples_per_chunk`), the bound's distribution does not.
        """
        x_scaled, up = context
        seeds = tfp.random.split_seed(seed, n=chunk.count)
        if tf.is_tensor(chunk.index):
            chunk_seed = tf.gather(tf.stack(seeds), chunk.index)
        else:
            chunk_seed = seeds[chunk.index]
        tiled = [tf.tile(t, [chunk.size, 1, 1, 1]) for t in [x_scaled, *up]]
        log_w = self._log_weights_fn(tiled[0], tiled[1:], chunk_seed)
        return tf.reshape(log_w, [chunk.size, -1])

    # ---------------------------------------------------------------- images out

    def sample(self, n, temperature=1.0, seed=None, sample_pixels=False, compiled=True):
        """n images from the prior, uint8 [n, H, W, C].

        Latents are drawn with prior scales times `temperature`; pixels are the
        likelihood's mode (its rounded means), or a draw from it with `sample_pixels`.

        Args:
          n: number of images, >= 1.
          temperature: > 0.
          seed: an int s (the pair (s, 0)) or a pair of ints for reproducible images; None
            draws fresh noise.
          sample_pixels: draw pixels from the likelihood instead of taking its mode.
          compiled: run as a `tf.function` graph, traced once per (n, sample_pixels);
            temperature and the seed go in as tensors, so changing them does not retrace.
            False runs the same code eagerly: the reference path, giving the same images (up
            to float rounding that can move a rare pixel across a rounding boundary).

        Raises:
          ValueError: n < 1 or temperature <= 0.
        """
        self.check_sample_args(n, temperature)
        seed = self.stateless_seed(seed)  # drawn eagerly: the noise generator advances once
        run = self._sample_fn if compiled else self._sample_images
        return run(int(n), tf.cast(temperature, tf.float32), seed, bool(sample_pixels))

    def _sample_images(self, n, temperature, seed, sample_pixels):
        """`sample`'s computation: n (int), temperature (float32 scalar), seed (int32[2])."""
        latent_seed, pixel_seed = tfp.random.split_seed(seed, n=2)
        means, _ = self._top_down(n, seed=latent_seed, temperature=temperature)
        likelihood = self.likelihood(means)
        pixels = likelihood.sample(seed=pixel_seed) if sample_pixels else likelihood.mode()
        return _to_uint8(pixels)

    def reconstruct(self, x, seed=None):
        """x -> z ~ q(z | x) -> the likelihood's mode, uint8 like x."""
        x = self._scale_pixels(self.check_images(x))
        _, _, means = self._forward(x, seed=seed)
        return _to_uint8(self.likelihood(means).mode())

    # ---------------------------------------------------------------- serialization

    def get_config(self):
        return {
            "image_shape": list(self.image_shape),
            "precision": self.precision,
            "preset": self.preset,
            "name": self.name,
            **self.overrides,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
