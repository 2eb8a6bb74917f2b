"""Weight-normalized (WN) and binary weight-normalized (BWN) Keras layers.

Weight normalization (Salimans & Kingma, 2016) writes each output channel's weights as
`w = g * v / ||v||`. With binary latent weights the norm is known in advance:
`||sign(v)|| = sqrt(n)` with n the fan-in (kh * kw * c_in for a conv), so

    y = (g / sqrt(n)) * conv(x, sign(v)) + b                (BWN)
    y = (g / ||v||)   * conv(x, v)       + b                (WN)

Both are the stock Keras layer (larq's quantized layer for BWN) run without bias, with a
per-channel scale and the bias. The 2D convs fold the scale into the kernel,

    y = conv(x, v * (g / ||v||)) + b,

one Conv2D and a BiasAdd (which TensorFlow's graph optimizer fuses, with a following ELU,
into one op) instead of a multiply over every output value. The two orders are the same
math and differ in float rounding only. Not folded: Dense and the transposed convs, and a
BWN conv with sign inputs (w1a1), whose conv(sign x, sign v) is an exact integer on every
backend and is scaled afterwards, so that XLA and oneDNN agree bit for bit.
The gain g and bias b stay float32. BWN defaults to larq's `ste_sign` kernel quantizer
(sign(0) = +1, straight-through gradient) and the `weight_clip` constraint (latent
weights clipped to [-1, 1] after every optimizer step); `input_quantizer="ste_sign"`
binarizes the activations as well.

The 2D convs also take `causal="down"` or `causal="down_right"` (PixelCNN++'s shifted
convs): a kh x kw kernel whose input is zero-padded with kh - 1 rows on top and, for
"down", (kw - 1) // 2 columns on the left and the rest on the right, for "down_right",
kw - 1 columns on the left only. Output (i, j) then reads input rows i - kh + 1 .. i only
and, for "down_right", columns j - kw + 1 .. j only; the output has the input's height and
width. The padding is added after the input quantizer, so padded sign inputs are 0 (they
add nothing) and the binary conv stays exact.

Every layer supports `keras_bdgm.initialize` (per-channel output mean 0 and std
`init_scale` on a batch) and round-trips through `.keras` files.

#### Examples

    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        WNConv2D(32, 3, padding="same", activation="elu"),
        BWNConv2D(32, 3, padding="same", input_quantizer="ste_sign"),
        BWNConv2D(32, (2, 3), causal="down"),        # reads only rows i-1, i
    ])

#### References
[1] Bird, Kingma, Barber. Reducing the Computational Cost of Deep Generative Models with
    Binary Neural Networks. ICLR 2021. https://arxiv.org/abs/2010.13476
[2] Salimans, Kingma. Weight Normalization. 2016. https://arxiv.org/abs/1602.07868
"""

import larq as lq
import numpy as np
import tensorflow as tf

from keras_bdgm.init import DataDependentInit, in_init_scope
from keras_bdgm.precision import parse as parse_precision

_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")

_INIT_EPSILON = 1e-6

# The `causal` options of the 2D convs (module docstring); None: the stock `padding`.
CAUSAL_PADDINGS = (None, "down", "down_right")


def _take(values, channels):
    """values[..., channels] (the last axis), or values itself for channels=None."""
    return values if channels is None else values[..., channels]


class _WeightNormBase(DataDependentInit):
    """Mixin: stock layer without bias -> per-channel scale g * c -> bias -> activation.

    Subclasses set `_out_axis` (the kernel's output-channel axis) and implement
    `_kernel_norm_reciprocal()`, the c in `y = g * c * layer(x) + b`; `_scaled` may fold
    the scale into the kernel (`_FoldedConv2D`).
    """

    _out_axis = -1
    _expected_rank = None

    def __init__(self, *args, init_scale=1.0, use_bias=True, activation=None, **kwargs):
        self.init_scale = float(init_scale)
        if self.init_scale < 0 or not np.isfinite(self.init_scale):
            raise ValueError(f"init_scale must be finite and >= 0, got {init_scale!r}.")
        self.wn_use_bias = bool(use_bias)
        self.wn_activation = tf.keras.activations.get(activation)
        super().__init__(*args, use_bias=False, activation=None, **kwargs)
        if getattr(self, "data_format", "channels_last") != "channels_last":
            raise ValueError(
                f"{type(self).__name__} supports data_format='channels_last' only."
            )

    def build(self, input_shape):
        super().build(input_shape)
        channels = self.kernel.shape[self._out_axis]
        self.gain = self.add_weight(
            name="gain", shape=[channels], initializer="ones", trainable=True
        )
        self.bias = (
            self.add_weight(
                name="bias", shape=[channels], initializer="zeros", trainable=True
            )
            if self.wn_use_bias
            else None
        )

    def _check_inputs(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        if not inputs.dtype.is_floating:
            raise ValueError(
                f"Layer {self.name!r} expects floating-point inputs, got {inputs.dtype.name}; "
                "cast first, e.g. tf.cast(images, tf.float32) / 127.5 - 1."
            )
        rank = inputs.shape.rank
        if self._expected_rank is not None and rank is not None:
            if rank != self._expected_rank:
                raise ValueError(
                    f"Layer {self.name!r} expects inputs of rank {self._expected_rank} "
                    f"[batch, height, width, channels], got shape {inputs.shape}."
                )
        elif rank is not None and rank < 2:
            raise ValueError(
                f"Layer {self.name!r} expects inputs of rank >= 2 [batch, ..., features], "
                f"got shape {inputs.shape}."
            )
        return inputs

    def _fan_in(self) -> int:
        shape = self.kernel.shape.as_list()
        return int(np.prod(shape)) // shape[self._out_axis]

    def _kernel_norm_reciprocal(self):
        raise NotImplementedError

    def _data_dependent_init(self, unscaled):
        """Sets gain and bias so the output has mean 0, std init_scale per channel."""
        t = unscaled * self._kernel_norm_reciprocal()
        axes = list(range(t.shape.rank - 1))
        mean, variance = tf.nn.moments(t, axes=axes)
        gain = self.init_scale / tf.sqrt(variance + _INIT_EPSILON)
        self.gain.assign(gain)
        if self.bias is not None:
            self.bias.assign(-mean * gain)
        elif self.init_scale > 0:
            raise ValueError(
                f"Layer {self.name!r} has no bias, so data-dependent init cannot centre it; "
                "use use_bias=True or init_scale=0."
            )

    def _unscaled(self, inputs):
        """The stock layer's output, without bias or activation: layer(x, kernel)."""
        return super().call(inputs)

    def _scaled(self, inputs, scale, channels=None):
        """(layer(x, kernel) * scale)[..., channels]; `scale` is already [channels]."""
        return _take(self._unscaled(inputs), channels) * scale

    def call(self, inputs, output_channels=None):
        """y = act(g * c * layer(x) + b); `output_channels`, a slice, returns
        y[..., output_channels] (the 2D convs then compute only those channels)."""
        inputs = self._check_inputs(inputs)
        if in_init_scope():
            self._maybe_data_dependent_init(self._unscaled(inputs))
        scale = _take(self.gain * self._kernel_norm_reciprocal(), output_channels)
        outputs = self._scaled(inputs, scale, output_channels)
        if self.bias is not None:
            outputs = tf.nn.bias_add(outputs, _take(self.bias, output_channels))
        return self.wn_activation(outputs)

    def get_config(self):
        return {
            **super().get_config(),
            "init_scale": self.init_scale,
            "use_bias": self.wn_use_bias,
            "activation": tf.keras.activations.serialize(self.wn_activation),
        }


class _WeightNorm(_WeightNormBase):
    """c = 1 / ||v|| over every kernel axis but the output channel's."""

    def _kernel_norm_reciprocal(self):
        axes = [a for a in range(self.kernel.shape.rank) if a != self._out_axis % self.kernel.shape.rank]
        squared = tf.reduce_sum(tf.square(self.kernel), axis=axes)
        return tf.math.rsqrt(tf.maximum(squared, 1e-12))


class _BinaryWeightNorm(_WeightNormBase):
    """c = 1 / sqrt(n): the norm of a sign kernel, known without computing it."""

    def __init__(self, *args, kernel_quantizer="ste_sign", kernel_constraint="weight_clip", **kwargs):
        super().__init__(
            *args,
            kernel_quantizer=kernel_quantizer,
            kernel_constraint=kernel_constraint,
            **kwargs,
        )
        if getattr(self.kernel_quantizer, "precision", None) != 1:
            raise ValueError(
                f"{type(self).__name__} needs a 1-bit kernel quantizer (e.g. 'ste_sign'), "
                f"got {kernel_quantizer!r}; use the WN layers for real-valued weights."
            )

    def _kernel_norm_reciprocal(self):
        return tf.constant(1.0 / np.sqrt(self._fan_in()), dtype=self.compute_dtype)


class _FoldedConv2D:
    """Mixin for the 2D convs: conv(x, K * scale), the per-channel scale folded into the kernel.

    Subclasses give the operands in `_conv_operands(inputs)`: (x, K) with the stock layer's
    unscaled output equal to conv(x, K). Where both operands are signs (`_exact_conv`), the
    scale multiplies the output instead: conv(sign x, sign v) is a sum of +-1 terms, exact in
    float32 on every backend (oneDNN, XLA, GPUs), and stays so; folded, its rounding would
    differ between backends and flip downstream sign activations.
    """

    _exact_conv = False

    def __init__(self, *args, causal=None, **kwargs):
        if causal not in CAUSAL_PADDINGS:
            raise ValueError(
                f"causal must be one of {', '.join(map(repr, CAUSAL_PADDINGS))}, got {causal!r}."
            )
        self.causal = causal
        super().__init__(*args, **kwargs)
        if self.causal is not None and (
            self.padding != "valid" or max(self.strides) != 1 or max(self.dilation_rate) != 1
        ):
            raise ValueError(
                f"causal={causal!r} pads the input itself and needs padding='valid', strides 1 "
                f"and dilation 1, got padding={self.padding!r}, strides {self.strides}, "
                f"dilation {self.dilation_rate}; drop those arguments."
            )

    def _causal_padding(self):
        """[[0, 0], [top, 0], [left, right], [0, 0]] of the causal padding (module docstring)."""
        kh, kw = self.kernel_size
        left = kw - 1 if self.causal == "down_right" else (kw - 1) // 2
        return [[0, 0], [kh - 1, 0], [left, kw - 1 - left], [0, 0]]

    def get_config(self):
        return {**super().get_config(), "causal": self.causal}

    def compute_output_shape(self, input_shape):
        if self.causal is None:
            return super().compute_output_shape(input_shape)
        return tf.TensorShape(input_shape)[:-1].concatenate([self.filters])

    def _conv_operands(self, inputs):
        return inputs, self.kernel

    def _convolve(self, x, kernel):
        if self.causal is not None:
            x = tf.pad(x, self._causal_padding())
        if self.groups > 1:  # as the stock layer: grouped convs need XLA on CPUs
            return self._jit_compiled_convolution_op(x, tf.convert_to_tensor(kernel))
        return self.convolution_op(x, kernel)

    def _unscaled(self, inputs):
        return self._convolve(*self._conv_operands(inputs))

    def _scaled(self, inputs, scale, channels=None):
        x, kernel = self._conv_operands(inputs)
        if self._exact_conv:
            return self._convolve(x, _take(kernel, channels)) * scale
        return self._convolve(x, _take(kernel, channels) * scale)


@_serializable
class WNConv2D(_FoldedConv2D, _WeightNorm, tf.keras.layers.Conv2D):
    """`tf.keras.layers.Conv2D` with weight normalization: w = gain * v / ||v||.

    Takes every argument of `tf.keras.layers.Conv2D`, plus `init_scale` and `causal`
    (None, "down" or "down_right"; see the module docstring)."""

    _expected_rank = 4


@_serializable
class WNConv2DTranspose(_WeightNorm, tf.keras.layers.Conv2DTranspose):
    """`tf.keras.layers.Conv2DTranspose` with weight normalization (kernel [kh, kw, out, in])."""

    _out_axis = -2
    _expected_rank = 4


@_serializable
class WNDense(_WeightNorm, tf.keras.layers.Dense):
    """`tf.keras.layers.Dense` with weight normalization: w = gain * v / ||v||."""


@_serializable
class BWNConv2D(_FoldedConv2D, _BinaryWeightNorm, lq.layers.QuantConv2D):
    """Binary weight-normalized conv: y = (gain / sqrt(kh*kw*c_in)) * conv(x, sign(v)) + b.

    Takes every argument of `larq.layers.QuantConv2D`, plus `init_scale`, `causal` (None,
    "down" or "down_right"; see the module docstring) and `negated_pair_input`.
    `input_quantizer="ste_sign"` gives binary activations (W1A1).

    `negated_pair_input=True` (with a sign input quantizer) makes the layer take x of C
    channels and act as if given the 2C-channel concatenation [x, -x], as Flow++'s concat
    activation produces. Since sign(-x) = -sign(x) (x != 0),

        conv([sign x, sign(-x)], [K1; K2]) = conv(sign x, K1 - K2)

    which halves the convolution's work; the kernel keeps its [kh, kw, 2C, out] shape (and
    checkpoints), and gradients are the same. Outputs differ only where x is exactly 0.
    """

    _expected_rank = 4

    def __init__(self, *args, negated_pair_input=False, **kwargs):
        self.negated_pair_input = bool(negated_pair_input)
        super().__init__(*args, **kwargs)
        # sign inputs and sign weights: the conv is exact, and the scale is applied after it
        self._exact_conv = getattr(self.input_quantizer, "precision", None) == 1
        if self.negated_pair_input and not self._exact_conv:
            raise ValueError(
                "negated_pair_input=True relies on sign(-x) = -sign(x): it needs a 1-bit "
                "input_quantizer such as 'ste_sign'."
            )

    def build(self, input_shape):
        if not self.negated_pair_input:
            return super().build(input_shape)
        input_shape = tf.TensorShape(input_shape)
        super().build(input_shape[:-1].concatenate([2 * input_shape[-1]]))
        self.input_spec = tf.keras.layers.InputSpec(ndim=4, axes={-1: input_shape[-1]})
        return None

    def _conv_operands(self, inputs):
        """(quantized x, sign(v)), or (sign x, K1 - K2) with `negated_pair_input`."""
        if self.input_quantizer:
            inputs = self.input_quantizer(inputs)
        with lq.context.quantized_scope(True):
            kernel = tf.convert_to_tensor(self.kernel)  # sign(v), straight-through to v
        if self.negated_pair_input:
            positive, negative = tf.split(kernel, 2, axis=2)  # (a split's gradient is one concat)
            kernel = positive - negative
        return inputs, kernel

    def _convolve(self, x, kernel):
        if self._is_native_padding:
            return super()._convolve(x, kernel)
        # larq's padding with `pad_values` (e.g. 1.0, so that padded sign inputs are +1)
        x = tf.pad(x, self._get_padding_same(x), constant_values=self.pad_values)
        with lq.utils.patch_object(self, "padding", "valid"):
            return super()._convolve(x, kernel)

    def get_config(self):
        return {**super().get_config(), "negated_pair_input": self.negated_pair_input}


@_serializable
class BWNConv2DTranspose(_BinaryWeightNorm, lq.layers.QuantConv2DTranspose):
    """Binary weight-normalized transposed conv: y = (gain / sqrt(kh*kw*c_in)) * convT(x, sign(v)) + b."""

    _out_axis = -2
    _expected_rank = 4


@_serializable
class BWNDense(_BinaryWeightNorm, lq.layers.QuantDense):
    """Binary weight-normalized dense layer: y = (gain / sqrt(n_in)) * x @ sign(v) + b."""


def conv2d_for_precision(filters, kernel_size, precision, negated_pair_input=False, **kwargs):
    """The conv of a residual layer in `precision`: WNConv2D at w32, BWNConv2D at w1.

    At a1 the BWN conv also binarizes its input (`input_quantizer="ste_sign"`) and, with
    `negated_pair_input=True`, takes x for the pair [x, -x] (see `BWNConv2D`). The padding
    is "same" unless given, or "valid" with `causal` (which pads itself).

    Example:
        conv = conv2d_for_precision(64, 3, "w1a1", padding="same", init_scale=0.0)
        causal = conv2d_for_precision(64, (2, 3), "w1a1", causal="down")
    """
    p = parse_precision(precision)
    kwargs.setdefault("padding", "valid" if kwargs.get("causal") else "same")
    if not p.binary_weights:
        return WNConv2D(filters, kernel_size, **kwargs)
    if p.binary_activations:
        kwargs.setdefault("input_quantizer", "ste_sign")
        kwargs["negated_pair_input"] = negated_pair_input
    return BWNConv2D(filters, kernel_size, **kwargs)
