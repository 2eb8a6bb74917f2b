"""A PixelCNN++-style autoregressive model with 1-bit gated residual blocks.

The model factorizes an image in raster order (row by row, left to right),

    log p(x) = sum_{i, j} log p(x_ij | x_<ij),

with each conditional a discretized logistic mixture of K components (PixelCNN++, [1]):

    p(x_ij | x_<ij) = sum_k pi_k DiscretizedLogistic(x_ij; mu_k, s_k),
    (logits pi, mu, log s) = network(x)[i, j]      (log s clipped below at -7)

on pixels scaled to [-1, 1]; the edge bins take the logistic tails, so every pixel's 256
probabilities sum to 1 and log p(x) is exact: there are no latents and no bound.

The network (one resolution, no blind spot) has two streams of causal convolutions [1]:

    x' = [x / 127.5 - 1, 1]                      (a channel of ones marks the border)
    u  = down_shift(conv_2x3,down(x'))           row i sees the rows above i
    ul = down_shift(conv_1x3,down(x')) + right_shift(conv_2x1,down_right(x'))
                                                 (i, j) sees the rows above and row i left of j
    repeat num_blocks times:
        u  = GatedResidualBlock(causal="down")(u)
        ul = GatedResidualBlock(causal="down_right")(ul, context=u)
    params = conv_1x1(ELU(ul))                   3K channels: logits, means, log-scales

`keras_bdgm.layers`' `causal` convs pad the input with zeros above (and left) so output
(i, j) reads no pixel after (i, j) in raster order (docs in that module); the shifts move a
whole stream one row down or one column right. The gated blocks
(`keras_bdgm.blocks.GatedResidualBlock`: concat-ELU, causal conv, 1x1 context, 1x1 gate)
are the residual layers that `precision` binarizes (w1a32: sign weights; w1a1: sign
weights and activations); the input and output convs stay 32-bit, as in Bird et al. [2].
Dropout (rate `dropout`) only at w32a32.

Losses: bits_per_dim = -log p(x) / (D ln 2), D = H * W. `model(x)` and `log_prob(x, K)` are
log p(x) (any K and seed: every importance sample has the same weight). `sample` draws
pixel by pixel in raster order (H * W passes of the network). `pixel_params(x)` gives every
pixel's mixture parameters from one parallel pass: what a codec needs, since pixel (i, j)'s
parameters depend only on the pixels before it.

Images must have one channel: PixelCNN++'s linear dependence between colour channels is not
implemented, and a 3-channel image raises ValueError.

#### Examples

    model = PixelCNN((28, 28, 1), precision="w1a1", preset="small")
    keras_bdgm.initialize(model, images[:256])
    model.compile(optimizer=tf.keras.optimizers.Adam(2e-3))
    model.fit(tf.data.Dataset.from_tensor_slices(images).batch(64), epochs=1)
    model.bits_per_dim(test_images)                 # exact, per image
    logits, means, log_scales = model.pixel_params(test_images[:8])   # [8, 28, 28, K] each
    samples = model.sample(4, seed=0)               # uint8 [4, 28, 28, 1]

#### References
[1] Salimans, Karpathy, Chen, Kingma. PixelCNN++. ICLR 2017. https://arxiv.org/abs/1701.05517
[2] Bird, Kingma, Barber. Reducing the Computational Cost of Deep Generative Models with
    Binary Neural Networks. ICLR 2021. https://arxiv.org/abs/2010.13476
"""

import tensorflow as tf

from keras_bdgm.blocks import GatedResidualBlock
from keras_bdgm.distributions import discretized_logistic_mixture, discretized_logistic_mixture_log_prob
from keras_bdgm.init import init_scales
from keras_bdgm.layers import WNConv2D
from keras_bdgm.models.base import GenerativeModel
from keras_bdgm.models.presets import preset_config, resolve
from keras_bdgm.precision import parse as parse_precision

PRESETS = {
    # 28x28x1 (Fashion-MNIST): 98k parameters; trains on 2 CPU cores.
    "small": {
        "width": 32,
        "num_blocks": 3,
        "num_components": 5,
        "dropout": 0.0,
        "fuse_negation": True,       # w1a1 blocks fold [x, -x] into their convs (same numbers, faster)
        "init_scheme": "identity",   # data-dependent init scales (keras_bdgm.init.INIT_SCHEMES)
    },
    # For tests: a few thousand parameters.
    "tiny": {"base": "small", "width": 8, "num_blocks": 1, "num_components": 3},
}

MIN_LOG_SCALE = -7.0  # PixelCNN++'s floor on the components' log-scales
_OUT_INIT_SCALE = 0.1  # the output conv starts near 0: broad, equal components
_KERAS_KWARGS = ("name", "trainable", "dtype")
_POSITIVE_INTS = ("width", "num_blocks", "num_components")


def _check_config(config):
    for key in _POSITIVE_INTS:
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"PixelCNN {key} must be an integer >= 1, got {value!r}.")
    if not 0.0 <= config["dropout"] < 1.0:
        raise ValueError(f"PixelCNN dropout must be in [0, 1), got {config['dropout']!r}.")


def down_shift(x):
    """x moved one row down, a zero row on top: row i holds row i - 1."""
    return tf.pad(x[:, :-1], [[0, 0], [1, 0], [0, 0], [0, 0]])


def right_shift(x):
    """x moved one column right, a zero column on the left: column j holds column j - 1."""
    return tf.pad(x[:, :, :-1], [[0, 0], [0, 0], [1, 0], [0, 0]])


@tf.keras.utils.register_keras_serializable(package="keras_bdgm")
class PixelCNN(GenerativeModel):
    """PixelCNN++-style model of 1-channel 8-bit images [N, H, W, 1] (module docstring).

    Args:
      image_shape: (H, W, 1).
      precision: "w32a32", "w1a32" or "w1a1" (the gated blocks' weights/activations).
      preset: "small" (width 32, 3 blocks, 5 components) or "tiny"; see `PRESETS`.
      clip_norm, skip_threshold: of the training step.
      **overrides: preset fields to change (e.g. width=48, num_blocks=4), or the Keras
        arguments name / trainable / dtype.

    Raises:
      ValueError: unknown preset or override, bad precision, or images with other than 1
        channel.
    """

    num_latent_layers = 0  # no latents: the bound is log p(x) itself
    latent_shape = ()
    # No XLA by default (GenerativeModel.compile): on 2 CPU cores the XLA train step of the
    # small w1a1 model took 1.5x the tf.function step's time.
    default_jit_compile = False

    def __init__(self, image_shape, precision="w32a32", preset="small", clip_norm=1.0,
                 skip_threshold=100.0, **overrides):
        keras_kwargs = {k: overrides.pop(k) for k in _KERAS_KWARGS if k in overrides}
        super().__init__(image_shape, clip_norm=clip_norm, skip_threshold=skip_threshold, **keras_kwargs)
        if self.image_shape[-1] != 1:
            raise ValueError(
                f"PixelCNN supports 1-channel images, got image_shape {self.image_shape}; convert "
                "the images to grayscale (the colour channels' linear dependence of PixelCNN++ is "
                "not implemented)."
            )
        self.precision = parse_precision(precision).name
        self.preset = preset
        self.overrides = dict(overrides)
        self.config = resolve(PRESETS, preset, overrides, model="PixelCNN")
        _check_config(self.config)
        cfg = self.config
        width, entry = cfg["width"], init_scales(cfg["init_scheme"])["entry"]

        def in_conv(kernel, causal, name):
            return WNConv2D(width, kernel, causal=causal, init_scale=entry, name=name)

        def block(causal, context, name):
            return GatedResidualBlock(
                width, precision=self.precision, context=context, dropout=cfg["dropout"],
                fuse_negation=cfg["fuse_negation"], init_scheme=cfg["init_scheme"], causal=causal, name=name,
            )

        self.in_down = in_conv((2, 3), "down", "in_down")
        self.in_down_row = in_conv((1, 3), "down", "in_down_row")
        self.in_down_right = in_conv((2, 1), "down_right", "in_down_right")
        self.down_blocks = [block("down", False, f"down_block_{b}") for b in range(cfg["num_blocks"])]
        self.down_right_blocks = [block("down_right", True, f"down_right_block_{b}")
                                  for b in range(cfg["num_blocks"])]
        self.out_conv = WNConv2D(3 * cfg["num_components"], 1, init_scale=_OUT_INIT_SCALE, name="out_conv")
        with tf.init_scope():  # create every variable now, so weights can be loaded at once
            self._network(tf.zeros((1, *self.image_shape)))
        self.built = True
        # `sample`'s graph: traced once per n; temperature and seed are tensor arguments.
        self._sample_fn = tf.function(self._sample_images, autograph=False)

    @property
    def num_components(self):
        """K, the mixture components per pixel."""
        return self.config["num_components"]

    # ---------------------------------------------------------------- the network

    def _network(self, scaled, training=False):
        """(logits, means, log_scales), each [N, H, W, K], of pixels scaled to [-1, 1]."""
        x = tf.concat([scaled, tf.ones_like(scaled)], axis=-1)
        u = down_shift(self.in_down(x))
        ul = down_shift(self.in_down_row(x)) + right_shift(self.in_down_right(x))
        for down, down_right in zip(self.down_blocks, self.down_right_blocks):
            u = down(u, training=training)
            ul = down_right(ul, context=u, training=training)
        logits, means, log_scales = tf.split(self.out_conv(tf.nn.elu(ul)), 3, axis=-1)
        return logits, means, tf.maximum(log_scales, MIN_LOG_SCALE)

    @staticmethod
    def _scale_pixels(x):
        return x / 127.5 - 1.0

    def pixel_params(self, x, training=False):
        """The mixture parameters of every pixel given the image, from one parallel pass.

        Pixel (i, j)'s parameters depend only on the pixels before it in raster order, so
        `pixel_params(x)[.., i, j, :]` is p(x_ij | x_<ij) for every (i, j) at once:

            p(x_ij | x_<ij) = sum_k softmax(logits)_k DiscretizedLogistic(means_k, exp(log_scales_k))

        on the [-1, 1] scale (pixel / 127.5 - 1; `keras_bdgm.distributions`).

        Args:
          x: uint8 images [N, H, W, 1] (or whole numbers 0..255 of any numeric dtype).

        Returns:
          (logits, means, log_scales), float32 [N, H, W, K] each.

        Raises:
          ValueError: bad images (shape, values).

        Example:
            logits, means, log_scales = model.pixel_params(images)
        """
        return self._network(self._scale_pixels(self.check_images(x)), training=training)

    def _log_prob(self, x, training=False):
        """log p(x) per image in nats (x: checked float pixels 0..255)."""
        scaled = self._scale_pixels(x)
        logits, means, log_scales = self._network(scaled, training=training)
        log_px = discretized_logistic_mixture_log_prob(scaled[..., 0], logits, means, log_scales)
        return tf.reduce_sum(log_px, axis=[1, 2])

    # ---------------------------------------------------------------- the contract

    def call(self, inputs, training=None):
        """log p(x) per image in nats (exact; GenerativeModel's contract, no noise drawn);
        bits/dim = -model(x) / (D ln 2)."""
        return self._log_prob(self.check_images(inputs), training=bool(training))

    def compute_losses(self, x, training=False):
        bpd = self.nats_to_bits_per_dim(-self._log_prob(x, training=training))
        return {"bits_per_dim": tf.reduce_mean(bpd)}

    def importance_context(self, x):
        """log p(x) per image: computed once per batch for every chunk of samples."""
        return self._log_prob(x)

    def log_weights(self, context, seed, chunk):
        """[chunk.size, N]: log p(x) for every sample (no latents: every weight is exact)."""
        del seed
        return tf.tile(context[None], [chunk.size, 1])

    def data_dependent_init(self, x):
        """The init pass of `keras_bdgm.initialize`: one eager forward pass on x."""
        self._log_prob(self.check_images(x))

    # ---------------------------------------------------------------- sampling

    def sample(self, n, temperature=1.0, seed=None, compiled=True):
        """n images, uint8 [n, H, W, 1], drawn pixel by pixel in raster order.

        Pixel (i, j) is drawn from `pixel_params` of the image so far, with the mixture
        logits divided by `temperature` and the components' scales multiplied by it
        (`keras_bdgm.distributions.discretized_logistic_mixture`); each step runs the
        network on the `receptive_rows` + 1 rows that pixel's parameters depend on (H * W
        passes over a strip of the image).

        Args:
          n: number of images, >= 1.
          temperature: > 0 (1: the model's distribution).
          seed: an int s (the pair (s, 0)) or a pair of ints for reproducible images; None
            draws fresh noise. Pixel p's draw uses `stateless_fold_in(seed, p)`.
          compiled: run as a `tf.function` graph, traced once per n (temperature and the seed
            go in as tensors). False runs the same code eagerly (slow; the reference path).

        Raises:
          ValueError: n < 1 or temperature <= 0, a bad seed.
        """
        self.check_sample_args(n, temperature)
        seed = self.stateless_seed(seed)  # drawn eagerly, so the noise generator advances once
        run = self._sample_fn if compiled else self._sample_images
        return run(int(n), tf.cast(temperature, tf.float32), seed)

    @property
    def receptive_rows(self):
        """R: the parameters of row i depend on rows i - R .. i of the image only.

        Every op that reaches one row up (a 2-row causal conv, a down shift) adds 1; the
        longest chain is the down stream's: its input conv, its shift, one conv per block.
        """
        return self.config["num_blocks"] + 2

    def _row_params(self, scaled, i):
        """(logits, means, log_scales) [N, W, K] of row i (an int32 scalar), from the R + 1
        rows i - R .. i alone (`receptive_rows`; the first R + 1 rows for i < R): the numbers
        of `_network(scaled)[:, i]` (up to float rounding: the convs run on another shape)
        for a fraction of the work."""
        h = self.image_shape[0]
        rows = min(self.receptive_rows + 1, h)
        start = tf.clip_by_value(i - rows + 1, 0, h - rows)
        frame = scaled[:, start:start + rows]
        return tuple(t[:, i - start] for t in self._network(frame))

    def _sample_images(self, n, temperature, seed):
        """`sample`'s computation: n (int), temperature (float32 scalar), seed (int32[2])."""
        h, w, _ = self.image_shape

        def step(p, scaled):
            i, j = p // w, p % w
            logits, means, log_scales = (t[:, j] for t in self._row_params(scaled, i))
            mixture = discretized_logistic_mixture(logits, means, log_scales, temperature)
            value = mixture.sample(seed=tf.random.experimental.stateless_fold_in(seed, p))
            at_p = tf.reshape(tf.one_hot(p, h * w), [1, h, w, 1])
            return p + 1, scaled + at_p * value[:, None, None, None]  # the pixel was 0

        _, scaled = tf.while_loop(lambda p, _: p < h * w, step,
                                  (tf.constant(0), tf.zeros([n, h, w, 1])))
        return tf.cast(tf.round((scaled + 1.0) * 127.5), tf.uint8)

    # ---------------------------------------------------------------- serialization

    def get_config(self):
        return preset_config(self, clip_norm=self.clip_norm, skip_threshold=self.skip_threshold)

    @classmethod
    def from_config(cls, config):
        return cls(**config)
