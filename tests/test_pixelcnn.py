"""The PixelCNN: its mixture log-probability against a float64 numpy oracle, causality at every
precision, the causal convs against stock convs on sign(w), the sampler's strip of rows, and
errors. The contract battery (shapes, seeds, saving, bad images) is tests/test_models.py's."""

import math

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm import layers, memory
from keras_bdgm.blocks import GatedResidualBlock
from keras_bdgm.distributions import discretized_logistic_mixture, discretized_logistic_mixture_log_prob
from keras_bdgm.models import PixelCNN

import oracles
import tiny

N = 3
X = tiny.tiny_images(N, seed=21)
ALL_PIXELS = np.arange(256)


def _model(precision, seed=0):
    """The tiny PixelCNN, initialized, its weights moved well away from init (every gate open)."""
    model = tiny.tiny_model("pixelcnn", precision, images=tiny.pattern_images(8), seed=seed)
    rng = np.random.default_rng(seed + 1)
    for v in model.trainable_variables:
        v.assign_add(0.2 * rng.standard_normal(v.shape.as_list()).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(precision):
        if precision not in cache:
            cache[precision] = _model(precision)
        return cache[precision]

    return get


def numpy_mixture_log_prob(pixels, logits, means, log_scales):
    """log P(pixel) of the discretized logistic mixture in float64: pixels 0..255 [...],
    parameters [..., K] on the [-1, 1] scale; edge bins take the tails."""
    x = (np.asarray(pixels, np.float64) / 127.5 - 1.0)[..., None]
    logits, means = np.asarray(logits, np.float64), np.asarray(means, np.float64)
    inv_scale = np.exp(-np.asarray(log_scales, np.float64))
    cdf_plus = oracles.sigmoid(inv_scale * (x - means + 1 / 255))
    cdf_minus = oracles.sigmoid(inv_scale * (x - means - 1 / 255))
    pixels = np.asarray(pixels)[..., None]
    mass = np.where(pixels == 0, cdf_plus, np.where(pixels == 255, 1.0 - cdf_minus, cdf_plus - cdf_minus))
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.log((weights * mass).sum(axis=-1))


# ---------------------------------------------------------------- the mixture, a pure function


def _random_params(shape, k, rng):
    return (rng.normal(size=(*shape, k)), rng.uniform(-1.2, 1.2, size=(*shape, k)),
            rng.uniform(-4.0, 0.5, size=(*shape, k)))


def test_mixture_log_prob_matches_numpy_oracle_and_sums_to_one():
    rng = np.random.default_rng(0)
    params = _random_params((256,), 4, rng)
    pixels = ALL_PIXELS  # every value, the two edge bins included
    got = discretized_logistic_mixture_log_prob(
        tf.constant(pixels / 127.5 - 1.0, tf.float32), *(tf.constant(p, tf.float32) for p in params))
    np.testing.assert_allclose(got.numpy(), numpy_mixture_log_prob(pixels, *params), rtol=1e-4, atol=1e-4)
    # One distribution per position: its 256 probabilities sum to 1.
    one = [tf.constant(np.repeat(p[:1], 256, axis=0), tf.float32) for p in params]
    total = np.exp(discretized_logistic_mixture_log_prob(tf.constant(pixels / 127.5 - 1.0, tf.float32), *one)
                   .numpy().astype(np.float64)).sum()
    assert abs(total - 1.0) < 1e-4, total


def test_mixture_log_prob_is_finite_for_extreme_parameters():
    """Far tails and tiny scales stay finite (the components' mass is computed in log space)."""
    centre = 200 / 127.5 - 1.0  # pixel 200
    x = tf.constant([-1.0, 1.0, 0.0, centre], tf.float32)
    logits = tf.zeros([4, 2])
    means = tf.constant([[5.0, 6.0], [-5.0, -6.0], [0.9, -0.9], [centre, centre]])
    log_scales = tf.constant([[-7.0, -7.0], [-7.0, -7.0], [-7.0, -7.0], [-7.0, 3.0]])
    log_p = discretized_logistic_mixture_log_prob(x, logits, means, log_scales).numpy()
    assert np.all(np.isfinite(log_p)) and np.all(log_p <= 0), log_p
    # half the weight on a sharp component centred on x's bin: 2 sigma(e^7 / 255) - 1 = 0.973 of it
    np.testing.assert_allclose(log_p[3], math.log(0.5 * (2 * oracles.sigmoid(math.exp(7) / 255) - 1)), rtol=1e-3)


def test_mixture_distribution_samples_on_the_grid_and_matches_its_log_prob():
    """`discretized_logistic_mixture` is the distribution of the log-prob: its samples lie on
    the grid and their frequencies follow exp(log_prob) (Kolmogorov distance, 4000 draws)."""
    logits, means, log_scales = tf.constant([0.0, 1.0]), tf.constant([-0.5, 0.3]), tf.constant([-2.0, -3.0])
    draws = discretized_logistic_mixture(logits, means, log_scales).sample(4000, seed=(1, 2)).numpy()
    pixels = (draws + 1.0) * 127.5
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
    model_cdf = np.cumsum(np.exp(numpy_mixture_log_prob(ALL_PIXELS, *(np.broadcast_to(p.numpy(), (256, 2)) for p in (
        logits, means, log_scales)))))
    empirical_cdf = np.searchsorted(np.sort(np.round(pixels)), ALL_PIXELS, side="right") / len(pixels)
    assert np.abs(empirical_cdf - model_cdf).max() < 1.36 / math.sqrt(len(pixels)) * 1.5


# ---------------------------------------------------------------- the model's likelihood


@pytest.mark.parametrize("precision", tiny.PRECISIONS)
def test_log_prob_is_the_numpy_mixture_of_its_pixel_params(models, precision):
    model = models(precision)
    logits, means, log_scales = (t.numpy() for t in model.pixel_params(X))
    k = model.config["num_components"]
    assert logits.shape == means.shape == log_scales.shape == (N, *tiny.SHAPE[:2], k)
    assert log_scales.min() >= -7.0
    expected = numpy_mixture_log_prob(X[..., 0], logits, means, log_scales).sum(axis=(1, 2))
    np.testing.assert_allclose(model(X).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(model.log_prob(X, num_samples=3, seed=1).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(model.bits_per_dim(X).numpy(), -expected / (math.prod(tiny.SHAPE) * math.log(2)),
                               rtol=1e-5)


@pytest.mark.parametrize("precision", tiny.PRECISIONS)
def test_pixel_params_are_causal_in_raster_order(models, precision):
    """Changing pixel p changes no parameters of pixels 0..p (raster order), and some after p."""
    model = models(precision)
    h, w, _ = tiny.SHAPE
    x = X[:1]
    base = np.concatenate([t.numpy() for t in model.pixel_params(x)], axis=-1).reshape(h * w, -1)
    for p in (0, 5, w - 1, 3 * w + 4, h * w - 2, h * w - 1):
        for new_value in (0, 255, int(x.reshape(-1)[p]) ^ 0x55):
            changed = x.copy()
            changed.reshape(-1)[p] = new_value
            params = np.concatenate([t.numpy() for t in model.pixel_params(changed)], axis=-1).reshape(h * w, -1)
            np.testing.assert_array_equal(params[:p + 1], base[:p + 1], err_msg=f"pixel {p} leaked backwards")
            if p < h * w - 1 and new_value != x.reshape(-1)[p]:
                assert np.any(params[p + 1:] != base[p + 1:]), f"pixel {p} reaches no later pixel"


@pytest.mark.parametrize("precision", tiny.PRECISIONS)
def test_sampler_rows_equal_the_full_pass(models, precision):
    """The sampler's strip of `receptive_rows` + 1 rows gives row i's parameters (up to float
    rounding: the convs run on another shape)."""
    model = models(precision)
    taller = tiny.tiny_model("pixelcnn", precision, shape=(12, 5, 1), images=tiny.tiny_images(4, shape=(12, 5, 1)))
    for m, x in ((model, X), (taller, tiny.tiny_images(2, seed=3, shape=(12, 5, 1)))):
        scaled = tf.constant(x / 127.5 - 1.0, tf.float32)
        full = [t.numpy() for t in m.pixel_params(x)]
        for i in range(x.shape[1]):
            rows = m._row_params(scaled, tf.constant(i))  # pylint: disable=protected-access
            for got, want in zip(rows, full):
                np.testing.assert_allclose(got.numpy(), want[:, i], rtol=1e-5, atol=1e-5)


def test_receptive_rows_is_the_reach_of_the_network():
    """Row i depends on row i - R (R = receptive_rows) and on no row above it."""
    model = _model("w32a32")
    h, w, _ = tiny.SHAPE
    r = model.receptive_rows
    x = tf.constant(X[:1], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits, means, log_scales = model._network(x / 127.5 - 1.0)  # pylint: disable=protected-access
        out = tf.reduce_sum(means[:, h - 1] ** 2) + tf.reduce_sum(log_scales[:, h - 1])
    reach = np.abs(tape.gradient(out, x).numpy()[0, :, :, 0]).sum(axis=1)
    assert reach[h - 1 - r] > 0 and np.all(reach[:h - 1 - r] == 0), reach


def test_training_lowers_the_loss():
    model = tiny.tiny_model("pixelcnn", "w1a1", images=tiny.pattern_images(16), seed=0)
    x = tiny.pattern_images(16)
    before = float(model.compute_losses(model.check_images(x))["bits_per_dim"])
    model.compile(optimizer=tf.keras.optimizers.Adam(2e-3))
    model.fit(tf.data.Dataset.from_tensor_slices(x).batch(8).repeat(), epochs=1, steps_per_epoch=40, verbose=0)
    after = float(model.compute_losses(model.check_images(x))["bits_per_dim"])
    assert after < before - 0.2, (before, after)


# ---------------------------------------------------------------- the parts


@pytest.mark.parametrize("causal", ["down", "down_right"])
@pytest.mark.parametrize("kernel", [(2, 3), (2, 2), (1, 3), (2, 1), (3, 3)])
@pytest.mark.parametrize("precision", tiny.PRECISIONS)
def test_causal_conv_is_a_stock_conv_on_padded_input_and_sign_weights(causal, kernel, precision):
    """conv2d_for_precision(causal=...) = gain * conv(pad(x), w) + bias: w = sign(v) / sqrt(n) at
    w1 (sign(x) at a1, padded with 0 after the sign), v / ||v|| at w32; x zero-padded kh - 1 rows
    on top and, "down", (kw - 1) // 2 left and the rest right, "down_right", kw - 1 left."""
    rng = np.random.default_rng(sum(kernel) + len(causal))
    x = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    x[0, 0, 0, 0] = 0.0
    layer = layers.conv2d_for_precision(4, kernel, precision, causal=causal)
    assert layer(x).shape == (2, 5, 6, 4)
    v = rng.uniform(-1, 1, size=(*kernel, 3, 4)).astype("float32")
    v.reshape(-1)[::3] = 0.0
    gain, bias = rng.normal(size=4).astype("float32"), rng.normal(size=4).astype("float32")
    getattr(layer.kernel, "latent_variable", layer.kernel).assign(v)
    layer.gain.assign(gain)
    layer.bias.assign(bias)
    kh, kw = kernel
    left = kw - 1 if causal == "down_right" else (kw - 1) // 2
    x_in = oracles.sign(x) if precision == "w1a1" else x
    padded = np.pad(x_in, [(0, 0), (kh - 1, 0), (left, kw - 1 - left), (0, 0)])
    if precision == "w32a32":
        w = v / np.sqrt((v.astype(np.float64) ** 2).sum(axis=(0, 1, 2)))
    else:
        w = oracles.sign(v) / math.sqrt(kh * kw * 3)
    expected = gain * oracles.conv2d(padded, w) + bias
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tf.function(layer)(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    restored = type(layer).from_config(layer.get_config())
    assert restored.causal == causal and restored.padding == "valid"


def _random_causal_block(causal, precision, shape, seed):
    """A causal gated block with context, every weight random, and inputs x and context of
    `shape` (float32 tensors)."""
    block = GatedResidualBlock(4, precision=precision, causal=causal, context=True, init_scheme="reference")
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=shape), tf.float32)
    context = tf.constant(rng.normal(size=shape), tf.float32)
    block(x, context=context)
    for v in block.trainable_variables:
        v.assign(rng.normal(size=v.shape.as_list()).astype(np.float32))
    return block, x, context


@pytest.mark.parametrize("causal", ["down", "down_right"])
@pytest.mark.parametrize("precision", tiny.PRECISIONS)
def test_causal_gated_block_reads_no_later_position(causal, precision):
    """Output (i, j) of a causal block depends on no input below row i; in row i, "down_right"
    reads no column right of j ("down" reads columns j - 1 .. j + 1: its stream is shifted).
    (Gradients: at w1a1 the sign's clipped straight-through gradient can hide a real path,
    so what the block does read is checked where activations are real.)"""
    block, x, context = _random_causal_block(causal, precision, (1, 5, 5, 4), seed=5)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = block(x, context=context)[0, 2, 2]
        total = tf.reduce_sum(out * tf.range(1.0, 5.0))
    reach = np.abs(tape.gradient(total, x).numpy()[0]).sum(axis=-1)  # [5, 5]
    assert np.all(reach[3:] == 0) and (causal == "down" or np.all(reach[2, 3:] == 0))
    if precision != "w1a1":
        assert reach[1, 2] > 0 and reach[2, 2] > 0 and (causal == "down_right" or reach[2, 3] > 0)


@pytest.mark.parametrize("causal", ["down", "down_right"])
@pytest.mark.parametrize("precision", tiny.PRECISIONS)
def test_causal_block_at_one_position_or_row_from_its_window(causal, precision):
    """`last_position(window, context)` = the whole-image call's output at (i, j) (which the
    test above and the causal-conv test tie to stock convs), from the conv's window alone,
    and `last_row` its row i from rows i - 1, i; a window of the wrong size or a block that
    is not causal is refused."""
    block, x, context = _random_causal_block(causal, precision, (2, 5, 6, 4), seed=8)
    full = block(x, context=context).numpy()
    left = 1  # both kernels reach one column left of j
    width = 2 if causal == "down_right" else 3
    for i, j in [(1, 1), (3, 2), (4, 4)]:
        window = x[:, i - 1:i + 1, j - left:j - left + width]
        got = block.last_position(window, context=context[:, i:i + 1, j:j + 1]).numpy()
        assert got.shape == (2, 1, 1, 4)
        np.testing.assert_allclose(got[:, 0, 0], full[:, i, j], rtol=1e-5, atol=1e-5)
    for i in (1, 4):  # a whole row: rows i - 1, i in, row i out (columns padded as the conv pads them)
        got = block.last_row(x[:, i - 1:i + 1], context=context[:, i:i + 1]).numpy()
        np.testing.assert_allclose(got, full[:, i:i + 1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=rf"needs a 2x{width} window, got shape \(2, 2, 4, 4\)"):
        block.last_position(x[:, :2, :4], context=context[:, :1, :1])
    with pytest.raises(ValueError, match=r"needs 2 input rows, got shape \(2, 3, 6, 4\)"):
        block.last_row(x[:, :3], context=context[:, :1])
    with pytest.raises(ValueError, match="is not causal; last_row and last_position are for causal blocks"):
        GatedResidualBlock(4).last_position(x[:, :3, :3])


def test_small_preset_size():
    model = PixelCNN((28, 28, 1), precision="w1a1", preset="small")
    fp = memory.footprint(model)
    assert model.count_params() == 94_910 and fp.binary_weights == 92_160  # every gated-block conv kernel
    assert model.receptive_rows == 5


# ---------------------------------------------------------------- errors


def test_errors_name_the_problem_and_the_fix():
    with pytest.raises(ValueError, match=r"PixelCNN supports 1-channel images.*grayscale"):
        PixelCNN((8, 8, 3))
    with pytest.raises(ValueError, match=r"Unknown PixelCNN preset 'paper'; known presets: small, tiny"):
        PixelCNN((8, 8, 1), preset="paper")
    with pytest.raises(ValueError, match=r"PixelCNN has no hyperparameter 'depth'.*num_blocks"):
        PixelCNN((8, 8, 1), depth=3)
    with pytest.raises(ValueError, match=r"PixelCNN num_components must be an integer >= 1, got 0"):
        PixelCNN((8, 8, 1), preset="tiny", num_components=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        PixelCNN((8, 8, 1), preset="tiny", dropout=1.0)
    with pytest.raises(ValueError, match="Unknown precision"):
        PixelCNN((8, 8, 1), precision="w2a2")
    model = tiny.tiny_model("pixelcnn", "w1a1")
    with pytest.raises(ValueError, match=r"shape \[N, 8, 8, 1\]"):
        model.pixel_params(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        model.sample(1, temperature=0.0)
    with pytest.raises(ValueError, match="causal must be one of None, 'down', 'down_right', got 'up'"):
        layers.WNConv2D(4, 3, causal="up")
    with pytest.raises(ValueError, match=r"causal='down' pads the input itself and needs padding='valid'"):
        layers.BWNConv2D(4, (2, 3), causal="down", padding="same")
    with pytest.raises(ValueError, match="A causal block's gate conv is 1x1"):
        GatedResidualBlock(4, causal="down", gate_kernel_size=3)


def test_samples_follow_the_first_pixels_distribution():
    """Pixel (0, 0) depends on no other pixel: sampled values follow p(x_00) (Kolmogorov
    distance over 600 images); compiled and eager sampling give the same images."""
    model = _model("w1a32", seed=3)
    images = model.sample(600, seed=11).numpy()
    logits, means, log_scales = (t.numpy()[0, 0, 0] for t in model.pixel_params(images[:1]))
    model_cdf = np.cumsum(np.exp(numpy_mixture_log_prob(
        ALL_PIXELS, *(np.broadcast_to(p, (256, len(p))) for p in (logits, means, log_scales)))))
    first = np.sort(images[:, 0, 0, 0])
    empirical_cdf = np.searchsorted(first, ALL_PIXELS, side="right") / len(first)
    assert np.abs(empirical_cdf - model_cdf).max() < 1.36 / math.sqrt(len(first)) * 1.5
    np.testing.assert_array_equal(model.sample(2, seed=4, compiled=False).numpy(), model.sample(2, seed=4).numpy())
