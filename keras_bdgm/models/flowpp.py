"""Flow++ (Ho et al., 2019) with binary residual layers (Bird et al., 2021) as a Keras model.

Dequantized pixels y = x + u, u ~ q(u | x) from the dequantization flow, go through the
main flow (data -> latent):

    logit preprocess -> stripe split -> n1 steps -> merge -> squeeze -> channel split
    -> n2 steps -> merge -> stripe split -> n3 steps -> merge -> z ~ N(0, I)

(steps: Normalize -> invertible 1x1 conv -> mixture-logistic coupling -> swap halves;
Flow++: n = 4, 2, 3). The training loss is the variational bound in bits per dimension:

    loss = -(log N(z) + log|det main| + log|det dequant| - log N(eps)) / (D ln 2)

`model.flow` is the generative map z -> y in [0, 256) as one `tfb.Bijector`, so
`tfd.TransformedDistribution(model.prior, model.flow)` is the continuous density.
docs/ARCHITECTURE.md has the layer-by-layer shapes and parameter counts.

Differences from the public code (tom-bird/binary-gen-models), kept on purpose:

* The inverse mixture CDF uses float64 Chandrupatla root finding
  (`tfp.math.find_root_chandrupatla`) on an exact bracket, not float32 bisection: TFP has
  no plain bisection, it needs fewer iterations, and non-convergence raises.
* Linear weight-norm gain, not softplus of a log-gain: it can start at exactly 0, so
  every gated block can start as the identity through one code path.
* Only the binary latent weights are clipped to [-1, 1] after each step, as in the paper;
  the public code's clamp also hits the gains and biases of its binary 1x1 layers (gate
  convs, context projections).
* sign(0) = +1 (larq's `ste_sign`), not 0 as in torch; it matters only where an input is
  exactly 0.
* The training defaults (keras_bdgm.runs.experiment) are those of the public train_flow.py at
  commit 8b45e5d: Adam, batch 128, lr 1e-3 constant, clip 1.0, skip bound 100, 25 init
  batches.

#### Examples

    model = FlowPlusPlus((28, 28, 1), precision="w1a1", preset="small")
    keras_bdgm.initialize(model, images[:256])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    model.fit(tf.data.Dataset.from_tensor_slices(images).batch(64), epochs=1)
    model.bits_per_dim(test_images)        # per image, single-sample bound
    samples = model.sample(16)             # uint8 [16, 28, 28, 1]

#### References
[1] Ho et al. Flow++. 2019. https://arxiv.org/abs/1902.00275
[2] Bird, Kingma, Barber. Reducing the Computational Cost of Deep Generative Models with
    Binary Neural Networks. ICLR 2021. https://arxiv.org/abs/2010.13476
"""

import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.bijectors import (
    CouplingConfig, CouplingSteps, Dequantizer, chain, channel_split, forward_and_log_det,
    logit_preprocess, squeeze, standard_normal_log_prob, stripe_split,
)
from keras_bdgm.models.noise import stateless_normal
from keras_bdgm.precision import parse as parse_precision
from keras_bdgm.models.presets import preset_config, resolve
from keras_bdgm.models.base import GenerativeModel

tfb, tfd = tfp.bijectors, tfp.distributions
_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")

PRESETS = {
    # 32x32x3 in the paper: 33.56M parameters.
    "paper": {
        "couplings": (4, 2, 3),       # coupling steps per stage of the main flow
        "width": 120,
        "num_blocks": 10,
        "num_components": 8,
        "dequant_couplings": 4,
        "dequant_width": 120,
        "dequant_blocks": 2,
        "context_width": 32,
        "context_blocks": 3,
        "dropout": 0.2,
        "attention_heads": 0,         # Flow++'s gated self-attention: off (as in the paper)
        "fuse_negation": True,        # w1a1 blocks fold [x, -x] into their convs (same numbers, faster)
        "init_scheme": "reference",   # data-dependent init scales (keras_bdgm.init.INIT_SCHEMES);
                                      # measured better than "identity": BENCHMARKS.md, "Init schemes"
    },
    # 28x28x1, trains on 2 CPU cores.
    "small": {
        "base": "paper",
        "couplings": (2, 2, 2),
        "width": 32,
        "num_blocks": 2,
        "num_components": 4,
        "dequant_couplings": 2,
        "dequant_width": 16,
        "dequant_blocks": 1,
        "context_width": 16,
        "context_blocks": 1,
        "dropout": 0.0,
    },
}

_KERAS_KWARGS = ("name", "trainable", "dtype")


@_serializable
class MainFlow(tf.keras.layers.Layer):
    """The main flow's variables (three stages of coupling steps) and its bijectors.

    Args:
      image_shape: (H, W, C), H even, W divisible by 4.
      couplings: coupling steps of the three stages.
      config: the `CouplingConfig` (or its dict; None: the defaults) of every stage's
        coupling networks (`coupling_config` makes it from a preset).
      **kwargs: `CouplingConfig` fields (replacing the config's) and Keras layer arguments.
    """

    def __init__(self, image_shape, couplings=(4, 2, 3), config=None, **kwargs):
        config = CouplingConfig.resolve(config, CouplingConfig.pop_fields(kwargs))
        super().__init__(**kwargs)
        self.config = config
        self.image_shape = tuple(int(d) for d in image_shape)
        self.couplings = tuple(int(n) for n in couplings)
        if len(self.couplings) != 3 or min(self.couplings) < 0:
            raise ValueError(f"couplings must be 3 non-negative step counts, got {couplings!r}.")
        h, w, c = self.image_shape
        self.stages = [
            CouplingSteps((h, w // 2, 2 * c), self.couplings[0], config, name="stage_0"),
            CouplingSteps((h // 2, w // 2, 4 * c), self.couplings[1], config, name="stage_1"),
            CouplingSteps((h // 2, w // 4, 8 * c), self.couplings[2], config, name="stage_2"),
        ]

    @property
    def latent_shape(self):
        h, w, c = self.image_shape
        return (h // 2, w // 2, 4 * c)

    def bijectors(self, training=False):
        """The main flow y in [0, 256) -> z, in forward order."""
        h, w, c = self.image_shape
        split0 = stripe_split(self.image_shape, name="stripe_split_0")
        split1 = channel_split(name="channel_split_1")
        split2 = stripe_split(self.latent_shape, name="stripe_split_2")
        return [
            logit_preprocess(),
            split0, *self.stages[0].bijectors(training=training), tfb.Invert(split0),
            squeeze(self.image_shape),
            split1, *self.stages[1].bijectors(training=training), tfb.Invert(split1),
            split2, *self.stages[2].bijectors(training=training), tfb.Invert(split2),
        ]

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "couplings": list(self.couplings),
                "config": self.config.get_config()}


def coupling_config(preset, precision):
    """The `CouplingConfig` of the main flow's coupling networks, from a resolved preset (a
    dict of `PRESETS` fields) and the model's precision; the dequantizer's replaces width
    and num_blocks with the preset's dequant_width and dequant_blocks."""
    return CouplingConfig(
        width=preset["width"], num_blocks=preset["num_blocks"], num_components=preset["num_components"],
        precision=precision, dropout=preset["dropout"], attention_heads=preset["attention_heads"],
        fuse_negation=preset["fuse_negation"], init_scheme=preset["init_scheme"],
    )


@_serializable
class FlowPlusPlus(GenerativeModel):
    """Flow++ with variational dequantization for 8-bit images [N, H, W, C].

    Args:
      image_shape: (H, W, C) with H even and W divisible by 4.
      precision: "w32a32", "w1a32" or "w1a1" (the residual blocks' weights/activations).
      preset: "paper" (32x32x3 CIFAR-10 model) or "small"; see `PRESETS`.
      clip_norm, skip_threshold: of the training step (skip updates with norm > 100).
      **overrides: preset fields to change (e.g. width=16, couplings=(1, 1, 1)), or the Keras
        arguments name / trainable / dtype.

    Raises:
      ValueError: unknown preset or override, bad precision or image shape.
    """

    # jit_compile when `compile` is not given one (GenerativeModel.compile): tf.function. XLA
    # (`compile(..., jit_compile=True)`, `train.py --jit_compile`) gives the same numbers up to
    # float rounding (the noise comes from `keras_bdgm.models.noise`, the same with or without
    # XLA) and 0.97-1.2x the tf.function step on 2 CPU cores, but compiling it adds about a
    # minute to the first step (less with `keras_bdgm.xla_cache` warm): worth it only for long
    # runs (BENCHMARKS.md, "Start-up").
    default_jit_compile = False
    # Its ~14,500-op step graph: Grappler's rewrite costs 2.5-3 s of the first step on a CPU
    # and gains nothing per step (BENCHMARKS.md, "Start-up"): off there (`grappler`), for
    # the train step and `sample`'s graph.
    grappler_on_cpu = False

    def __init__(self, image_shape, precision="w32a32", preset="small", clip_norm=1.0,
                 skip_threshold=100.0, **overrides):
        keras_kwargs = {k: overrides.pop(k) for k in _KERAS_KWARGS if k in overrides}
        super().__init__(image_shape, clip_norm=clip_norm, skip_threshold=skip_threshold, **keras_kwargs)
        h, w, c = self.image_shape
        if h % 2 or w % 4:
            raise ValueError(
                f"FlowPlusPlus needs an even image height and a width divisible by 4 (for the "
                f"squeeze and stripe splits), got image_shape {self.image_shape}; pad or crop "
                "the images."
            )
        self.precision = parse_precision(precision).name
        self.preset = preset
        self.overrides = dict(overrides)
        self.config = resolve(PRESETS, preset, overrides, model="FlowPlusPlus")
        cfg = self.config
        coupling = coupling_config(cfg, self.precision)
        self.main = MainFlow(self.image_shape, cfg["couplings"], coupling, name="main_flow")
        self.dequantizer = Dequantizer(
            self.image_shape, cfg["dequant_couplings"],
            coupling.replace(width=cfg["dequant_width"], num_blocks=cfg["dequant_blocks"]),
            context_width=cfg["context_width"], context_blocks=cfg["context_blocks"], name="dequantizer",
        )
        with tf.init_scope():  # create every variable now, so weights can be loaded at once
            self._log_weights(tf.zeros((1, *self.image_shape)), training=False, seed=0)
        self.built = True
        # `sample`'s graph: traced once per n; temperature and seed are tensor arguments.
        self._sample_fn = self._grappler_off_for(tf.function(self._sample_images, autograph=False))

    @property
    def latent_shape(self):
        """Shape of z: (H/2, W/2, 4C)."""
        return self.main.latent_shape

    @property
    def prior(self):
        """N(0, I) over z, as a distribution with event shape `latent_shape`."""
        return tfd.Independent(tfd.Normal(tf.zeros(self.latent_shape), 1.0), reinterpreted_batch_ndims=3)

    @property
    def flow(self):
        """The generative bijector z -> dequantized pixels y in [0, 256) (one tfb.Bijector)."""
        return tfb.Invert(chain(self.main.bijectors(training=False), name="main_flow"), name="flowpp")

    def _log_weights_from_noise(self, x, eps, training):
        """log p(x + u) - log q(u | x) per row of x (float pixels), u from the dequantizer
        with the standard normal noise eps [rows, H, W, C]."""
        u, log_q = self.dequantizer.sample(x, eps, training=training)
        z, ldj = forward_and_log_det(self.main.bijectors(training=training), x + u)
        return standard_normal_log_prob(z) + ldj - log_q

    def _log_weights(self, x, training, seed=None):
        """log p(x + u) - log q(u | x) per image, one u per image (x: float pixels); `seed`
        as in `stateless_seed` (None: fresh noise from `noise_seed()`)."""
        eps = stateless_normal(tf.shape(x), self.stateless_seed(seed))
        return self._log_weights_from_noise(x, eps, training)

    def call(self, inputs, training=None):
        """Per-image single-sample bound log p(x + u) - log q(u | x) in nats, u with fresh
        noise (GenerativeModel's contract); bits/dim = -model(x) / (D ln 2)."""
        x = self.check_images(inputs)
        return self._log_weights(x, training=bool(training))

    def compute_losses(self, x, training=False):
        bpd = self.nats_to_bits_per_dim(-self._log_weights(x, training=training))
        return {"bits_per_dim": tf.reduce_mean(bpd)}

    def log_weights(self, context, seed, chunk):
        """[chunk.size, N] log p(x + u_k) - log q(u_k | x) in nats, u_k ~ q(u | x).

        Sample k of image i is row k * N + i of the noise `stateless_normal` draws for
        [K * N, H, W, C] and `seed` (`tf.random.stateless_normal`'s, up to float rounding),
        whatever the chunking (a chunk skips to its rows), so `log_prob` has the same noise for
        every `samples_per_chunk`, with or without XLA.
        """
        x = context
        n = tf.shape(x)[0]
        tiled = tf.tile(x, [chunk.size, 1, 1, 1])  # row = sample * N + image
        # D = H * W * C is a multiple of 4 (W is), as `stateless_normal`'s offset must be.
        offset = tf.cast(chunk.start, tf.int64) * tf.cast(n, tf.int64) * self.num_dims
        eps = stateless_normal(tf.shape(tiled), seed, offset)
        log_w = self._log_weights_from_noise(tiled, eps, training=False)
        return tf.reshape(log_w, [chunk.size, n])

    def sample(self, n, temperature=1.0, seed=None, compiled=True):
        """n images, uint8 [n, H, W, C], from z ~ N(0, temperature^2 I) through `flow`.

        Args:
          n: number of images, >= 1.
          temperature: > 0; scales the prior's standard deviation.
          seed: an int s (the pair (s, 0)) or a pair of ints for reproducible images; None
            draws fresh noise.
          compiled: run as a `tf.function` graph, traced once per n (temperature and the seed
            go in as tensors, so changing them does not retrace). False runs the same code
            eagerly: the reference path, giving the same images (up to float rounding that
            can move a rare pixel across an integer boundary).

        Raises:
          ValueError: n < 1 or temperature <= 0.
          tf.errors.InvalidArgumentError: an inverse coupling's root finder did not converge.
        """
        self.check_sample_args(n, temperature)
        seed = self.stateless_seed(seed)  # drawn eagerly, so the noise generator advances once
        temperature = tf.cast(temperature, tf.float32)
        run = self._sample_fn if compiled else self._sample_images
        return run(int(n), temperature, seed)

    def _sample_images(self, n, temperature, seed):
        """`sample`'s computation: n (int), temperature (float32 scalar), seed (int32[2])."""
        z = tf.random.stateless_normal((n, *self.latent_shape), seed=seed) * temperature
        y = self.flow.forward(z)
        return tf.cast(tf.clip_by_value(tf.floor(y), 0.0, 255.0), tf.uint8)

    def data_dependent_init(self, x):
        """The init pass of `keras_bdgm.initialize`: one eager forward pass on x."""
        self._log_weights(self.check_images(x), training=False)

    def get_config(self):
        return preset_config(self, clip_norm=self.clip_norm, skip_threshold=self.skip_threshold)

    @classmethod
    def from_config(cls, config):
        return cls(**config)
