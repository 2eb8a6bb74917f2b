"""Residual blocks whose convolutions are full-precision or binary.

Only the residual layers of a model are binarized (Bird et al., 2021); these blocks are
those layers. Each takes `precision` in {"w32a32", "w1a32", "w1a1"}:

* weights: WN convs at w32, BWN convs (sign weights, gain/sqrt(n)) at w1;
* activations: ELU at a32, sign (larq `ste_sign`, applied by the conv) at a1;
* dropout (rate `dropout`, default 0 in both blocks) only at w32a32.

The last conv of every block has `init_scale=0`, so after `keras_bdgm.initialize` each
block is exactly the identity.

#### Examples

    h = ResidualBlock(64, kernel_size=3, precision="w1a1")(h)
    h = GatedResidualBlock(96, precision="w1a32")(h, context=c)
"""

import larq as lq
import numpy as np
import tensorflow as tf

from keras_bdgm.init import init_scales
from keras_bdgm.layers import WNDense, conv2d_for_precision
from keras_bdgm.models.noise import generator_keep
from keras_bdgm.precision import parse as parse_precision

_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")


def activation_for_precision(precision):
    """ELU at a32; identity at a1 (the binary conv applies sign to its input)."""
    if parse_precision(precision).binary_activations:
        return tf.identity
    return tf.nn.elu


def _check_channels(layer, input_shape, filters):
    channels = input_shape[-1]
    if input_shape.rank != 4:
        raise ValueError(
            f"{layer.name!r} expects inputs [batch, height, width, {filters}], got shape "
            f"{input_shape}."
        )
    if channels != filters:
        raise ValueError(
            f"{layer.name!r} adds its input to a {filters}-channel branch, but the input "
            f"has {channels} channels; project it to {filters} channels first."
        )


class _PrecisionBlock(tf.keras.layers.Layer):
    """Shared constructor and config for the blocks."""

    def __init__(self, filters, precision="w32a32", dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        if self.filters <= 0:
            raise ValueError(f"filters must be a positive integer, got {filters!r}.")
        self.precision = parse_precision(precision).name
        self.dropout = float(dropout)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        self._act = activation_for_precision(self.precision)
        use_dropout = self.precision == "w32a32" and self.dropout > 0
        # Dropout masks come from this block's own tf.random.Generator, which checkpoints
        # save with the model (Keras's Dropout keeps no state there), so a resumed run
        # draws the masks an uninterrupted one would. Seeded from numpy, which
        # tf.keras.utils.set_random_seed seeds.
        self._dropout_rng = (
            tf.random.Generator.from_seed(int(np.random.randint(2**31 - 1))) if use_dropout else None
        )

    def _conv(self, filters, kernel_size, init_scale, name, negated_pair_input=False, causal=None):
        return conv2d_for_precision(
            filters, kernel_size, self.precision, init_scale=init_scale, name=name,
            negated_pair_input=negated_pair_input, causal=causal,
        )

    def _maybe_dropout(self, h, training):
        """Inverted dropout at w32a32 when training: zero with probability `dropout`."""
        if self._dropout_rng is None or not training:
            return h
        # `generator.uniform(shape) >= dropout`, the same under XLA (whose own kernel makes
        # other floats), compared as integers; one multiply by the kept units' 1 / (1 - dropout)
        # (forward and gradient), where a select and a divide each took their own pass.
        keep = generator_keep(self._dropout_rng, tf.shape(h), self.dropout)
        return h * (tf.cast(keep, h.dtype) * (1.0 / (1.0 - self.dropout)))

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "precision": self.precision,
            "dropout": self.dropout,
        }


@_serializable
class ResidualBlock(_PrecisionBlock):
    """act -> conv(k x k) -> act -> [dropout] -> conv(k x k, init_scale 0) -> + input.

    The ResNet VAE's residual block (Kingma et al. 2016; Bird et al. 2021; see
    docs/ARCHITECTURE.md).

    Args:
      filters: channels of the input and output.
      kernel_size: spatial size of both convs.
      precision: "w32a32", "w1a32" or "w1a1".
      dropout: rate, used at w32a32 only (default 0, as `GatedResidualBlock`).
    """

    def __init__(self, filters, kernel_size=3, precision="w32a32", dropout=0.0, **kwargs):
        super().__init__(filters, precision=precision, dropout=dropout, **kwargs)
        self.kernel_size = int(kernel_size)
        self.conv1 = self._conv(self.filters, self.kernel_size, 1.0, "conv1")
        self.conv2 = self._conv(self.filters, self.kernel_size, 0.0, "conv2")

    def build(self, input_shape):
        _check_channels(self, tf.TensorShape(input_shape), self.filters)
        super().build(input_shape)

    def call(self, inputs, training=None):
        h = self.conv1(self._act(inputs))
        h = self._maybe_dropout(self._act(h), training)
        return inputs + self.conv2(h)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}


@_serializable
class GatedResidualBlock(_PrecisionBlock):
    """Flow++'s gated residual block.

        a(x) = act([x, -x])                         (concat activation)
        h = conv3x3(a(x)) [+ conv1x1(a(context))]   (2C -> C)
        h = conv_gate(dropout(a(h)))                (2C -> 2C, k x k, k = gate_kernel_size)
        out = x + h[..., :C] * sigmoid(h[..., C:])  (gated linear unit)

    The two convs on the main path are the binary ones at w1; dropout only at w32a32.
    At w1a1 the convs take x itself for [x, -x] (`BWNConv2D(negated_pair_input=True)`),
    half the convolution work for the same result; `fuse_negation=False` turns that off.

    `causal="down"` or `"down_right"` makes it a block of PixelCNN++'s streams: conv3x3
    becomes the causal 2x3 ("down": output (i, j) reads rows i-1, i and columns j-1..j+1)
    or 2x2 ("down_right": rows i-1, i and columns j-1, j) conv of `keras_bdgm.layers`, with
    the 1x1 context and gate convs, so output (i, j) depends on no input below row i (nor,
    for "down_right", right of column j in row i).

    Args:
      filters: C, channels of the input and output.
      precision: "w32a32", "w1a32" or "w1a1".
      context: whether `call` takes a `context` tensor (same height and width).
      dropout: rate, used at w32a32 only (default 0, as `ResidualBlock`; Flow++'s paper
        preset passes 0.2).
      fuse_negation: at w1a1, fold the concat activation into the convs (default True).
      gate_kernel_size: k of the gate conv: 1 in Flow++'s coupling networks, 3 in its
        dequantizer's context network.
      init_scheme: "identity" (conv_in init_scale 1, gate 0: the block starts as the
        identity) or "reference" (0.1 for both, as in the paper's public code); see
        `keras_bdgm.init.INIT_SCHEMES`.
      causal: None (conv3x3, "same" padding), "down" or "down_right" (above); a causal
        block's gate conv is 1x1.
    """

    # conv_in's kernel per `causal` option
    _CONV_IN_KERNELS = {None: (3, 3), "down": (2, 3), "down_right": (2, 2)}

    def __init__(self, filters, precision="w32a32", context=False, dropout=0.0,
                 fuse_negation=True, gate_kernel_size=1, init_scheme="identity", causal=None, **kwargs):
        super().__init__(filters, precision=precision, dropout=dropout, **kwargs)
        self.context = bool(context)
        self.fuse_negation = bool(fuse_negation)
        self.gate_kernel_size = int(gate_kernel_size)
        if self.gate_kernel_size < 1:
            raise ValueError(f"gate_kernel_size must be >= 1, got {gate_kernel_size!r}.")
        if causal not in self._CONV_IN_KERNELS:
            raise ValueError(f"causal must be None, 'down' or 'down_right', got {causal!r}.")
        if causal is not None and self.gate_kernel_size != 1:
            raise ValueError(
                f"A causal block's gate conv is 1x1 (a larger one would read pixels below); "
                f"got gate_kernel_size={gate_kernel_size!r}: drop it."
            )
        self.causal = causal
        self.init_scheme = init_scheme
        scales = init_scales(init_scheme)
        self._fused = self.fuse_negation and parse_precision(self.precision).binary_activations
        self.conv_in = self._conv(self.filters, self._CONV_IN_KERNELS[causal], scales["entry"], "conv_in",
                                  self._fused, causal=causal)
        self.conv_context = (
            self._conv(self.filters, 1, 1.0, "conv_context", self._fused) if self.context else None
        )
        self.conv_gate = self._conv(2 * self.filters, self.gate_kernel_size, scales["gate"], "conv_gate",
                                    self._fused)

    def _concat_act(self, x):
        if self._fused:  # the conv reads x as [x, -x]
            return x
        return self._act(tf.concat([x, -x], axis=-1))

    def build(self, input_shape):
        _check_channels(self, tf.TensorShape(input_shape), self.filters)
        super().build(input_shape)

    def call(self, inputs, context=None, training=None):
        if self.context and context is None:
            raise ValueError(f"{self.name!r} was built with context=True; pass context=.")
        if not self.context and context is not None:
            raise ValueError(f"{self.name!r} was built with context=False; drop context=.")
        h = self.conv_in(self._concat_act(inputs))
        if self.conv_context is not None:
            h = h + self.conv_context(self._concat_act(context))
        h = self._maybe_dropout(self._concat_act(h), training)
        h = self.conv_gate(h)
        value, gate = tf.split(h, 2, axis=-1)
        return inputs + value * tf.sigmoid(gate)

    def last_row(self, rows, context=None):
        """A causal block's output on the last of `rows`, from conv_in's input rows alone.

        For decoding row by row: `rows` [n, 2, W, C] are rows i-1 and i of the block's
        input (all that conv_in reads for row i), `context` [n, 1, W, C] the context on row
        i. conv_in runs without its top padding (one output row instead of two), keeping
        the column padding. Equals the full call's row i up to float rounding.

            out = block.last_row(x[:, i - 1:i + 1], context=c[:, i:i + 1])   # [n, 1, W, C]
        """
        return self._at_last_row(rows, context, pad_columns=True)

    def last_position(self, window, context=None):
        """A causal block's output at one position, from conv_in's input window there.

        For decoding pixel by pixel: `window` [n, kh, kw, C] is exactly what the causal
        conv_in reads for the window's last row (rows i-1, i; columns j-1, j for
        "down_right", j-1..j+1 for "down"), `context` [n, 1, 1, C] the context at (i, j).
        conv_in runs unpadded on the window (one output instead of kh * kw), the 1x1 convs
        on that one position. Equals the full call's output at (i, j) up to float rounding.

            window = x[:, i - 1:i + 1, j - 1:j + 1]          # "down_right", i, j >= 1
            out = block.last_position(window, context=c[:, i:i + 1, j:j + 1])  # [n, 1, 1, C]
        """
        if self.causal is not None:  # (a block that is not causal is refused below)
            kh, kw = self._CONV_IN_KERNELS[self.causal]
            if window.shape[2] not in (kw, None):  # None: unknown while tracing
                raise ValueError(f"{self.name!r} needs a {kh}x{kw} window, got shape {tuple(window.shape)}.")
        return self._at_last_row(window, context, pad_columns=False)

    def _at_last_row(self, rows, context, pad_columns):
        """The output on the last input row ([n, 1, W', C]); W' = W with the column padding,
        W - kw + 1 without."""
        if self.causal is None:
            raise ValueError(f"{self.name!r} is not causal; last_row and last_position are for causal blocks.")
        kh, _ = self._CONV_IN_KERNELS[self.causal]
        if rows.shape[1] not in (kh, None):
            raise ValueError(f"{self.name!r} needs {kh} input rows, got shape {tuple(rows.shape)}.")
        # pylint: disable=protected-access
        padding = self.conv_in._causal_padding()
        left = padding[2][0]
        padding[1] = [0, 0]  # no rows above: the window holds them
        if not pad_columns:
            padding[2] = [0, 0]
        with lq.utils.patch_object(self.conv_in, "_causal_padding", lambda: padding):
            h = self.conv_in(self._concat_act(rows))
        if self.conv_context is not None:
            h = h + self.conv_context(self._concat_act(context))
        value, gate = tf.split(self.conv_gate(self._concat_act(h)), 2, axis=-1)
        here = rows[:, -1:] if pad_columns else rows[:, -1:, left:left + int(h.shape[2])]
        return here + value * tf.sigmoid(gate)

    def get_config(self):
        return {**super().get_config(), "context": self.context, "fuse_negation": self.fuse_negation,
                "gate_kernel_size": self.gate_kernel_size, "init_scheme": self.init_scheme,
                "causal": self.causal}


@_serializable
class GatedAttention(tf.keras.layers.Layer):
    """Flow++'s gated self-attention over the spatial positions of a feature map.

        h = MultiHeadAttention(x, x)           (positions flattened: [N, H*W, C])
        [a, g] = WNDense(2C, init_scale 0)(h)
        out = x + a * sigmoid(g)

    Always 32-bit: the paper binarizes residual convolutions only (and its presets use no
    attention). Identity after `keras_bdgm.initialize`, like the residual blocks.

    Args:
      filters: C, channels of the input and output.
      heads: attention heads (C must be divisible by heads).
      dropout: attention dropout.
    """

    def __init__(self, filters, heads=4, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.heads, self.dropout = int(filters), int(heads), float(dropout)
        if self.heads <= 0 or self.filters % self.heads:
            raise ValueError(f"filters ({filters}) must be divisible by a positive heads ({heads}).")
        self.attention = tf.keras.layers.MultiHeadAttention(
            self.heads, self.filters // self.heads, dropout=self.dropout, name="attention"
        )
        self.gate = WNDense(2 * self.filters, init_scale=0.0, name="gate")

    def build(self, input_shape):
        _check_channels(self, tf.TensorShape(input_shape), self.filters)
        super().build(input_shape)

    def call(self, inputs, training=None):
        shape = tf.shape(inputs)
        seq = tf.reshape(inputs, [shape[0], shape[1] * shape[2], self.filters])
        h = self.gate(self.attention(seq, seq, training=training))
        value, gate = tf.split(h, 2, axis=-1)
        return inputs + tf.reshape(value * tf.sigmoid(gate), shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "heads": self.heads,
                "dropout": self.dropout}
