"""WN and BWN layers against numpy oracles and the stock Keras layers."""

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import keras_bdgm
from keras_bdgm import layers

import oracles

CONV_CASES = [
    (kernel, stride, padding)
    for kernel in (1, 3, 5)
    for stride in (1, 2)
    for padding in ("same", "valid")
]


def _kernel_with_zeros(shape, rng):
    v = rng.uniform(-1, 1, size=shape).astype("float32")
    v.reshape(-1)[:: 3] = 0.0  # exact zeros must binarize to +1
    return v


def _set(layer, kernel, gain, bias):
    getattr(layer.kernel, "latent_variable", layer.kernel).assign(kernel)
    layer.gain.assign(gain)
    layer.bias.assign(bias)


@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES)
@pytest.mark.parametrize("binary_input", [False, True])
def test_bwn_conv2d_matches_numpy_oracle(kernel, stride, padding, binary_input):
    rng = np.random.default_rng(kernel * 10 + stride)
    x = rng.normal(size=(2, 7, 6, 3)).astype("float32")
    x[0, 0, 0, 0] = 0.0
    layer = layers.BWNConv2D(
        4, kernel, strides=stride, padding=padding,
        input_quantizer="ste_sign" if binary_input else None,
    )
    layer(x)
    v = _kernel_with_zeros((kernel, kernel, 3, 4), rng)
    gain, bias = rng.normal(size=4).astype("float32"), rng.normal(size=4).astype("float32")
    _set(layer, v, gain, bias)
    x_in = oracles.sign(x) if binary_input else x
    n = kernel * kernel * 3
    expected = gain / np.sqrt(n) * oracles.conv2d(x_in, oracles.sign(v), stride, padding) + bias
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES)
def test_wn_conv2d_matches_numpy_oracle(kernel, stride, padding):
    rng = np.random.default_rng(kernel * 10 + stride + 1)
    x = rng.normal(size=(2, 7, 6, 3)).astype("float32")
    layer = layers.WNConv2D(4, kernel, strides=stride, padding=padding)
    layer(x)
    v = rng.normal(size=(kernel, kernel, 3, 4)).astype("float32")
    gain, bias = rng.normal(size=4).astype("float32"), rng.normal(size=4).astype("float32")
    _set(layer, v, gain, bias)
    w = gain * v / np.sqrt((v.astype(np.float64) ** 2).sum(axis=(0, 1, 2)))
    expected = oracles.conv2d(x, w, stride, padding) + bias
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls,binary", [(layers.WNDense, False), (layers.BWNDense, True)])
def test_dense_matches_numpy_oracle(cls, binary):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 6)).astype("float32")
    layer = cls(3)
    layer(x)
    v = _kernel_with_zeros((6, 3), rng) if binary else rng.normal(size=(6, 3)).astype("float32")
    gain, bias = rng.normal(size=3).astype("float32"), rng.normal(size=3).astype("float32")
    _set(layer, v, gain, bias)
    if binary:
        w = gain * oracles.sign(v) / np.sqrt(6)
    else:
        w = gain * v / np.linalg.norm(v.astype(np.float64), axis=0)
    np.testing.assert_allclose(layer(x).numpy(), x.astype(np.float64) @ w + bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls,binary", [(layers.WNConv2DTranspose, False), (layers.BWNConv2DTranspose, True)])
@pytest.mark.parametrize("stride,padding", [(1, "same"), (2, "same"), (2, "valid")])
def test_conv2d_transpose_matches_stock_layer(cls, binary, stride, padding):
    """The stock Conv2DTranspose given the explicitly normalized kernel is the oracle."""
    rng = np.random.default_rng(stride)
    x = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    layer = cls(6, 3, strides=stride, padding=padding)
    layer(x)
    v = _kernel_with_zeros((3, 3, 6, 3), rng)  # [kh, kw, out, in]
    gain, bias = rng.normal(size=6).astype("float32"), rng.normal(size=6).astype("float32")
    _set(layer, v, gain, bias)
    if binary:
        w = oracles.sign(v) * (gain / np.sqrt(3 * 3 * 3))[None, None, :, None]
    else:
        norm = np.sqrt((v.astype(np.float64) ** 2).sum(axis=(0, 1, 3)))
        w = v * (gain / norm)[None, None, :, None]
    stock = tf.keras.layers.Conv2DTranspose(6, 3, strides=stride, padding=padding)
    stock(x)
    stock.set_weights([w.astype("float32"), bias])
    np.testing.assert_allclose(layer(x).numpy(), stock(x).numpy(), rtol=1e-5, atol=1e-5)


def test_grouped_wn_conv2d_matches_numpy_oracle_per_group():
    """groups=2 (the stock layer's grouped conv, run by XLA on CPUs): each half of the output
    channels sees its half of the inputs, with the folded scale."""
    rng = np.random.default_rng(15)
    x = rng.normal(size=(2, 5, 6, 4)).astype("float32")
    layer = layers.WNConv2D(6, 3, padding="same", groups=2)
    layer(x)
    v = rng.normal(size=(3, 3, 2, 6)).astype("float32")
    gain, bias = rng.normal(size=6).astype("float32"), rng.normal(size=6).astype("float32")
    _set(layer, v, gain, bias)
    w = gain * v / np.sqrt((v.astype(np.float64) ** 2).sum(axis=(0, 1, 2)))
    expected = np.concatenate([oracles.conv2d(x[..., 2 * g:2 * g + 2], w[..., 3 * g:3 * g + 3], 1, "same")
                               for g in range(2)], -1) + bias
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tf.function(layer)(x).numpy(), expected, rtol=1e-5, atol=1e-5)  # in a graph


def test_wn_conv2d_gradients_match_float64_explicit_weight_norm():
    """The conv folds gain/||v|| into its kernel; its gradients for v, gain, bias and x are
    those of y = conv(x, gain * v / ||v||) + b written out in float64."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 6, 5, 3)).astype("float32")
    layer = layers.WNConv2D(4, 3, padding="same")
    layer(x)
    v = rng.normal(size=(3, 3, 3, 4)).astype("float32")
    gain, bias = rng.normal(size=4).astype("float32"), rng.normal(size=4).astype("float32")
    _set(layer, v, gain, bias)
    upstream = rng.normal(size=(2, 6, 5, 4))
    x32 = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x32) * upstream.astype("float32"))
    got = tape.gradient(loss, [layer.kernel, layer.gain, layer.bias, x32])

    v64, g64, b64, x64 = (tf.Variable(a.astype(np.float64)) for a in (v, gain, bias, x))
    with tf.GradientTape() as tape:
        w = g64 * v64 / tf.sqrt(tf.reduce_sum(v64 ** 2, axis=(0, 1, 2)))
        loss64 = tf.reduce_sum((tf.nn.conv2d(x64, w, 1, "SAME") + b64) * upstream)
    expected = tape.gradient(loss64, [v64, g64, b64, x64])
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make,binary", [
    (lambda: layers.WNConv2D(6, 3, padding="same"), False),
    (lambda: layers.BWNConv2D(6, 3, padding="same", input_quantizer="ste_sign", negated_pair_input=True), True),
    (lambda: layers.WNDense(6), False),
])
def test_output_channels_gives_those_channels_of_the_oracle(make, binary):
    """`layer(x, output_channels=slice(1, 4))` is channels 1..3 of the layer's math (the convs
    compute only those; Dense slices its output)."""
    rng = np.random.default_rng(12)
    dense = make().__class__ is layers.WNDense
    x = rng.normal(size=(2, 5) if dense else (2, 5, 4, 3)).astype("float32")
    layer = make()
    layer(x)
    shape = tuple(layer.kernel.shape)
    v = _kernel_with_zeros(shape, rng) if binary else rng.normal(size=shape).astype("float32")
    gain, bias = rng.normal(size=6).astype("float32"), rng.normal(size=6).astype("float32")
    _set(layer, v, gain, bias)
    if binary:  # sign(v) / sqrt(n) on the pair [sign x, sign(-x)]
        pair = np.concatenate([oracles.sign(x), oracles.sign(-x)], -1)
        full = gain / np.sqrt(v[..., 0].size) * oracles.conv2d(pair, oracles.sign(v), 1, "same") + bias
    else:
        w = gain * v / np.sqrt((v.astype(np.float64) ** 2).sum(axis=tuple(range(v.ndim - 1))))
        full = (x.astype(np.float64) @ w if dense else oracles.conv2d(x, w, 1, "same")) + bias
    got = layer(x, output_channels=slice(1, 4))
    assert got.shape[-1] == 3
    np.testing.assert_allclose(got.numpy(), full[..., 1:4], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_w1a1_conv_is_an_exact_integer_conv_scaled_once(jit):
    """With sign inputs and sign weights the conv is a sum of +-1: exact. The layer scales it
    afterwards (one float32 multiply, one add), so its output is bit for bit
    float32(count) * scale + b in float32; XLA may fuse the two into one rounding (an FMA).
    A scale folded into the kernel would round every partial sum and match neither."""
    rng = np.random.default_rng(14)
    x = rng.normal(size=(2, 6, 5, 8)).astype("float32")
    layer = layers.BWNConv2D(4, 3, padding="same", input_quantizer="ste_sign")
    layer(x)
    v = _kernel_with_zeros((3, 3, 8, 4), rng)
    gain, bias = rng.normal(size=4).astype("float32"), rng.normal(size=4).astype("float32")
    _set(layer, v, gain, bias)
    counts = oracles.conv2d(oracles.sign(x), oracles.sign(v), 1, "same").astype(np.float32)
    scale = gain * np.float32(1.0 / np.sqrt(72))
    got = tf.function(layer, jit_compile=jit)(x).numpy()
    separate = counts * scale + bias  # float32: two roundings
    if not jit:
        np.testing.assert_array_equal(got, separate)
    fused = (counts.astype(np.float64) * scale.astype(np.float64) + bias).astype(np.float32)
    assert np.all((got == separate) | (got == fused))


def test_bwn_conv2d_pads_with_pad_values():
    """larq's `pad_values=1.0` (padded sign inputs are +1, not 0) holds with the folded scale."""
    rng = np.random.default_rng(13)
    x = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    layer = layers.BWNConv2D(4, 3, padding="same", input_quantizer="ste_sign", pad_values=1.0)
    layer(x)
    v = _kernel_with_zeros((3, 3, 3, 4), rng)
    gain, bias = rng.normal(size=4).astype("float32"), rng.normal(size=4).astype("float32")
    _set(layer, v, gain, bias)
    expected = gain / np.sqrt(27) * oracles.conv2d(oracles.sign(x), oracles.sign(v), 1, "same", pad_value=1.0) + bias
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_bwn_activation_applies_after_bias():
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 2)).astype("float32")
    plain = layers.BWNConv2D(3, 3, padding="same", kernel_initializer="ones")
    act = layers.BWNConv2D(3, 3, padding="same", kernel_initializer="ones", activation="relu")
    plain(x), act(x)
    for layer in (plain, act):
        layer.bias.assign([-0.5, 0.0, 0.5])
    np.testing.assert_allclose(act(x).numpy(), np.maximum(plain(x).numpy(), 0.0), atol=1e-6)


def test_latent_kernel_gets_straight_through_gradient():
    """dL/dv equals dL/dW of the stock conv at W = alpha * sign(v), times alpha's chain."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    layer = layers.BWNConv2D(4, 3, padding="same")
    layer(x)
    v = rng.uniform(-0.9, 0.9, size=(3, 3, 3, 4)).astype("float32")
    gain = rng.uniform(0.5, 2.0, size=4).astype("float32")
    _set(layer, v, gain, np.zeros(4, "float32"))
    upstream = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * upstream)
    grad_v = tape.gradient(loss, layer.kernel.latent_variable)

    alpha = gain / np.sqrt(27.0)
    w = tf.Variable(oracles.sign(v).astype("float32"))
    with tf.GradientTape() as tape:
        y = tf.nn.conv2d(x, w, 1, "SAME") * alpha
        loss_ref = tf.reduce_sum(y * upstream)
    np.testing.assert_allclose(grad_v.numpy(), tape.gradient(loss_ref, w).numpy(), rtol=1e-4, atol=1e-5)


def test_binary_activation_gradient_is_clipped_ste():
    rng = np.random.default_rng(2)
    x = rng.normal(scale=1.5, size=(2, 5, 5, 3)).astype("float32")
    layer = layers.BWNConv2D(4, 3, padding="same", input_quantizer="ste_sign")
    layer(x)
    x_var = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x_var) ** 2)
    grad = tape.gradient(loss, x_var).numpy()
    outside = np.abs(x) > 1
    assert outside.any() and (~outside).any()
    np.testing.assert_array_equal(grad[outside], 0.0)
    # Inside the clip region the gradient is that of the conv evaluated at sign(x).
    xs = tf.Variable(oracles.sign(x).astype("float32"))
    stock = layers.BWNConv2D(4, 3, padding="same")
    stock(x)
    stock.set_weights(layer.get_weights())
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(stock(xs) ** 2)
    ref = tape.gradient(loss, xs).numpy()
    np.testing.assert_allclose(grad[~outside], ref[~outside], rtol=1e-5, atol=1e-5)


def test_huge_learning_rate_step_keeps_latent_weights_in_unit_interval():
    model = tf.keras.Sequential([
        tf.keras.Input((6, 6, 2)),
        layers.BWNConv2D(4, 3, padding="same"),
        layers.BWNConv2D(4, 3, padding="same", input_quantizer="ste_sign"),
        tf.keras.layers.Flatten(),
        layers.BWNDense(2),
    ])
    model.compile(tf.keras.optimizers.SGD(1e6), loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 6, 6, 2)).astype("float32")
    y = np.random.default_rng(1).normal(size=(16, 2)).astype("float32") * 100
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    latents = [w.latent_variable.numpy() for w in model.weights if hasattr(w, "latent_variable")]
    assert len(latents) == 3
    for v in latents:
        assert np.abs(v).max() <= 1.0
        assert np.isclose(np.abs(v), 1.0).mean() > 0.5  # the step was huge: clipping did act


@pytest.mark.parametrize("init_scale", [1.0, 0.3, 0.0])
def test_initialize_normalizes_every_layer_output(init_scale):
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(64, 8, 8, 3)) * 3 + 1).astype("float32")
    inputs = tf.keras.Input((8, 8, 3))
    a = layers.WNConv2D(8, 3, padding="same", init_scale=init_scale)(inputs)
    b = layers.BWNConv2D(8, 3, strides=2, padding="same", init_scale=init_scale)(a)
    c = layers.BWNConv2D(8, 3, padding="same", input_quantizer="ste_sign", init_scale=init_scale)(b)
    d = layers.WNConv2DTranspose(5, 3, strides=2, padding="same", init_scale=init_scale)(c)
    e = layers.BWNDense(6, init_scale=init_scale)(tf.keras.layers.Flatten()(d))
    model = tf.keras.Model(inputs, [a, b, c, d, e])
    done = keras_bdgm.initialize(model, x)
    assert len(done) == 5
    for out in model(x):
        out = out.numpy().reshape(-1, out.shape[-1])
        np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(out.std(axis=0), init_scale, rtol=1e-3, atol=1e-4)


def test_initialize_initializes_nested_model_layers_in_forward_order():
    inner = tf.keras.Sequential([tf.keras.Input((4, 4, 2)), layers.WNConv2D(3, 1, init_scale=2.0)])
    outer = tf.keras.Sequential([tf.keras.Input((4, 4, 2)), layers.WNConv2D(2, 1), inner])
    x = np.random.default_rng(0).normal(size=(32, 4, 4, 2)).astype("float32") * 5
    done = keras_bdgm.initialize(outer, x)
    assert done == [outer.layers[0], inner.layers[0]]
    np.testing.assert_allclose(outer(x).numpy().reshape(-1, 3).std(axis=0), 2.0, rtol=1e-3)


def test_initialize_rejects_models_without_wn_layers():
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no layer with data-dependent init"):
        keras_bdgm.initialize(model, np.zeros((2, 3), "float32"))


LAYER_FACTORIES = {
    "WNConv2D": lambda: layers.WNConv2D(3, 3, padding="same", activation="elu", init_scale=0.5),
    "BWNConv2D": lambda: layers.BWNConv2D(3, 3, strides=2, padding="same", input_quantizer="ste_sign"),
    "WNConv2DTranspose": lambda: layers.WNConv2DTranspose(3, 3, strides=2, padding="same"),
    "BWNConv2D-pair": lambda: layers.BWNConv2D(3, 1, input_quantizer="ste_sign", negated_pair_input=True),
    "BWNConv2DTranspose": lambda: layers.BWNConv2DTranspose(3, 3, padding="same", use_bias=False, init_scale=0.0),
    "WNDense": lambda: layers.WNDense(3),
    "BWNDense": lambda: layers.BWNDense(3, activation="tanh"),
}


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_keras_file_round_trip(name, tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype("float32")
    layer = LAYER_FACTORIES[name]()
    model = tf.keras.Sequential([tf.keras.Input((6, 6, 2)), layer])
    model.layers[-1].gain.assign(np.random.default_rng(1).uniform(0.5, 2, size=3))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    assert type(loaded.layers[-1]) is type(layer)
    assert loaded.layers[-1].get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_bwn_layers_report_one_bit_kernels_to_larq():
    model = tf.keras.Sequential([tf.keras.Input((4, 4, 2)), layers.BWNConv2D(3, 3), layers.WNConv2D(2, 1)])
    profile = lq.models.ModelProfile(model)
    assert profile.weight_count(bitwidth=1) == 3 * 3 * 2 * 3


def test_non_float_input_is_rejected():
    layer = layers.BWNConv2D(2, 3)
    with pytest.raises(ValueError, match="floating-point"):
        layer(np.zeros((1, 4, 4, 1), "int32"))


def test_wrong_rank_is_rejected():
    with pytest.raises(ValueError, match="rank|ndim"):
        layers.WNConv2D(2, 3)(np.zeros((4, 4, 1), "float32"))


def test_bwn_requires_a_one_bit_quantizer():
    with pytest.raises(ValueError, match="1-bit kernel quantizer"):
        layers.BWNConv2D(2, 3, kernel_quantizer=None)


def test_conv_for_precision_picks_layer_and_activation_quantizer():
    assert type(layers.conv2d_for_precision(4, 3, "w32a32")) is layers.WNConv2D
    w1a32 = layers.conv2d_for_precision(4, 3, "W1A32")
    assert type(w1a32) is layers.BWNConv2D and w1a32.input_quantizer is None
    assert layers.conv2d_for_precision(4, 3, "w1a1").input_quantizer is not None
    with pytest.raises(ValueError, match="w32a32, w1a32, w1a1"):
        layers.conv2d_for_precision(4, 3, "w2a2")


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, "same"), (1, 1, "valid"), (3, 2, "valid")])
def test_negated_pair_input_equals_conv_of_concatenated_pair(kernel, stride, padding):
    """conv on x for [x, -x] == the plain BWN conv on the explicit concatenation."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 7, 7, 3)).astype("float32")
    fused = layers.BWNConv2D(4, kernel, strides=stride, padding=padding, input_quantizer="ste_sign",
                             negated_pair_input=True)
    plain = layers.BWNConv2D(4, kernel, strides=stride, padding=padding, input_quantizer="ste_sign")
    fused(x), plain(np.concatenate([x, -x], -1))
    assert fused.kernel.shape == plain.kernel.shape == (kernel, kernel, 6, 4)
    v = _kernel_with_zeros((kernel, kernel, 6, 4), rng)
    gain, bias = rng.normal(size=4).astype("float32"), rng.normal(size=4).astype("float32")
    _set(fused, v, gain, bias), _set(plain, v, gain, bias)
    x_var = tf.Variable(x)
    with tf.GradientTape(persistent=True) as tape:
        y_fused = fused(x_var)
        y_plain = plain(tf.concat([x_var, -x_var], -1))
        loss_fused, loss_plain = tf.reduce_sum(y_fused ** 2), tf.reduce_sum(y_plain ** 2)
    expected = gain / np.sqrt(kernel * kernel * 6) * oracles.conv2d(
        np.concatenate([oracles.sign(x), oracles.sign(-x)], -1), oracles.sign(v), stride, padding) + bias
    np.testing.assert_allclose(y_fused.numpy(), expected, rtol=1e-5, atol=1e-5)
    for fused_var, plain_var in ((fused.kernel.latent_variable, plain.kernel.latent_variable), (x_var, x_var)):
        np.testing.assert_allclose(tape.gradient(loss_fused, fused_var).numpy(),
                                   tape.gradient(loss_plain, plain_var).numpy(), rtol=1e-4, atol=1e-4)


def test_negated_pair_input_needs_a_sign_input_quantizer():
    with pytest.raises(ValueError, match="1-bit input_quantizer"):
        layers.BWNConv2D(2, 3, negated_pair_input=True)
