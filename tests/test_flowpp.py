"""FlowPlusPlus: invertibility, likelihood sanity, training, sizes, options, the bound's noise.

What every model must do (shapes, seeds, the bound, round trips, bad images) is tested for
both models by the battery in test_models.py; the tiny configuration is tests/tiny.py's.
"""

import math

import keras_bdgm
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm import bijectors as kb
from keras_bdgm.memory import footprint
from keras_bdgm.models import FlowPlusPlus
from keras_bdgm.models.noise import stateless_normal

import tiny

tfd = tfp.distributions
PRECISIONS = tiny.PRECISIONS
TINY = tiny.overrides("flowpp")
SHAPE = tiny.SHAPE


def _tiny(precision, **kw):
    return tiny.tiny_model("flowpp", precision, **kw)


def _images(n=8, seed=0):
    return tiny.tiny_images(n, seed)


def _structured_images():
    """8 fixed images with strong structure (a learnable, low-entropy data set)."""
    base = np.zeros((8, *SHAPE), np.uint8)
    for i in range(8):
        base[i, :, : 2 + (i % 4) * 2] = 200
        base[i, i % 8] = 60
    return base


@pytest.mark.parametrize("precision", PRECISIONS)
def test_image_to_latent_to_image(precision):
    model = _tiny(precision)
    x = _images()
    keras_bdgm.initialize(model, x)
    xf = tf.cast(x, tf.float32)
    u, _ = model.dequantizer.sample(xf, tf.random.normal(xf.shape))
    y = xf + u
    assert np.all((u.numpy() > 0) & (u.numpy() < 1))
    flow = model.flow
    z = flow.inverse(y)
    assert z.shape == (8, *model.latent_shape)
    y_back = flow.forward(tf.identity(z))
    np.testing.assert_allclose(y_back.numpy(), y.numpy(), atol=1e-4 * 256, rtol=1e-4)
    assert np.abs(y_back.numpy() - y.numpy()).max() < 2e-3
    # The continuous density of TFP's TransformedDistribution is the main-flow part of log_prob.
    density = tfd.TransformedDistribution(model.prior, flow).log_prob(y)
    z2, ldj = kb.forward_and_log_det(model.main.bijectors(), y)
    np.testing.assert_allclose(density.numpy(), (kb.standard_normal_log_prob(z2) + ldj).numpy(), rtol=1e-5)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_about_8_bits_per_dim_on_uniform_pixels_at_init(precision):
    """Initialized on uniform pixels, the flow is close to the uniform distribution's 8 bits."""
    model = _tiny(precision)
    x = _images(16)
    keras_bdgm.initialize(model, x)
    assert abs(model.bits_per_dim(x, seed=0).numpy().mean() - 8.0) < 0.5
    assert abs(model.bits_per_dim(x, num_samples=4, seed=7).numpy().mean() - 8.0) < 0.5


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fit_lowers_bits_per_dim(precision):
    model = _tiny(precision)
    x = _structured_images()
    keras_bdgm.initialize(model, x)
    before = model.bits_per_dim(x, num_samples=1).numpy().mean()
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3))
    history = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(8).repeat(), steps_per_epoch=150,
                        epochs=1, verbose=0)
    after = model.bits_per_dim(x).numpy().mean()
    assert set(history.history) >= {"bits_per_dim", "skipped_steps", "grad_norm"}
    print(f"bits/dim {before:.2f} -> {after:.2f}")
    assert np.isfinite(after) and after < before - 1.5, (before, after)


def _hand_count_variables(cfg, precision):
    """Trainable variables by hand: WN/BWN conv 3 (kernel, gain, bias), LayerNorm 2."""
    def network(blocks, context):
        block = 3 + 3 + (3 if context else 0)
        return 3 + blocks * (block + 2) + 3

    step_main = 2 + 1 + network(cfg["num_blocks"], False)
    step_deq = 2 + 1 + network(cfg["dequant_blocks"], True)
    context = 3 + cfg["context_blocks"] * 6
    return sum(cfg["couplings"]) * step_main + cfg["dequant_couplings"] * step_deq + context


@pytest.mark.parametrize("precision", PRECISIONS)
def test_all_bijector_variables_are_trained(precision):
    model = _tiny(precision, couplings=(2, 1, 1), num_blocks=2)
    x = _images()
    keras_bdgm.initialize(model, x)
    model_vars = {id(v) for v in model.trainable_variables}
    assert len(model_vars) == _hand_count_variables(model.config, precision)
    flow_vars = {id(v) for v in model.flow.trainable_variables}
    deq = model.dequantizer
    deq_vars = {id(v) for v in deq.bijector(tf.cast(x, tf.float32)).trainable_variables}
    context_vars = {id(v) for v in deq.context_network.trainable_variables}
    assert flow_vars | deq_vars | context_vars == model_vars
    with tf.GradientTape() as tape:
        loss = model.compute_losses(tf.cast(x, tf.float32), training=True)["bits_per_dim"]
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)


def _size(layers):
    return sum(int(np.prod(w.shape)) for layer in layers for w in layer.trainable_weights)


def _kernels(blocks, conv):
    return sum(int(np.prod(getattr(b, conv).kernel.shape)) for b in blocks)


def _gains_biases(blocks):
    return sum(int(np.prod(w.shape)) for b in blocks for w in b.trainable_weights if "kernel" not in w.name)


def _component_counts(model):
    """Parameters per component of a FlowPlusPlus, read off its layers."""
    nets = [n for stage in model.main.stages for n in stage.networks]
    blocks = [b for n in nets for b in n.blocks]
    deq_nets = model.dequantizer.steps.networks
    deq_blocks = [b for n in deq_nets for b in n.blocks]
    ctx = model.dequantizer.context_network
    return {
        "main normalizations": _size([n for stage in model.main.stages for n in stage.norms]),
        "main 1x1 convs": _size([c for stage in model.main.stages for c in stage.convs]),
        "coupling input convs": _size([n.conv_in for n in nets]),
        "block 3x3 kernels": _kernels(blocks, "conv_in"),
        "block gate kernels": _kernels(blocks, "conv_gate"),
        "block gains+biases": _gains_biases(blocks),
        "layer norms": _size([norm for n in nets for norm in n.norms]),
        "coupling output convs": _size([n.conv_out for n in nets]),
        "dequantizer normalizations": _size(model.dequantizer.steps.norms),
        "dequantizer 1x1 convs": _size(model.dequantizer.steps.convs),
        "dequantizer coupling input convs": _size([n.conv_in for n in deq_nets]),
        "dequantizer coupling output convs": _size([n.conv_out for n in deq_nets]),
        "dequantizer block 3x3 kernels": _kernels(deq_blocks, "conv_in"),
        "dequantizer block gate kernels": _kernels(deq_blocks, "conv_gate"),
        "dequantizer context-projection kernels": _kernels(deq_blocks, "conv_context"),
        "dequantizer block gains+biases": _gains_biases(deq_blocks),
        "dequantizer layer norms": _size([norm for n in deq_nets for norm in n.norms]),
        "context input conv": _size([ctx.conv_in]),
        "context block 3x3 kernels": _kernels(ctx.blocks, "conv_in"),
        "context gate kernels": _kernels(ctx.blocks, "conv_gate"),
        "context gains+biases": _gains_biases(ctx.blocks),
    }


# The paper preset at 32x32x3 (Bird et al., 2021; component sizes as in the public code).
PAPER_COUNTS = {
    "main normalizations": 55_296, "main 1x1 convs": 1_080, "coupling input convs": 66_960,
    "block 3x3 kernels": 23_328_000, "block gate kernels": 5_184_000, "block gains+biases": 64_800,
    "layer norms": 21_600, "coupling output convs": 1_687_920,
    "dequantizer normalizations": 24_576, "dequantizer 1x1 convs": 72,
    "dequantizer coupling input convs": 13_920, "dequantizer coupling output convs": 337_584,
    "dequantizer block 3x3 kernels": 2_073_600, "dequantizer block gate kernels": 460_800,
    "dequantizer context-projection kernels": 61_440, "dequantizer block gains+biases": 7_680,
    "dequantizer layer norms": 1_920, "context input conv": 1_792,
    "context block 3x3 kernels": 55_296, "context gate kernels": 110_592, "context gains+biases": 576,
}


def test_paper_preset_exact_counts():
    model = FlowPlusPlus((32, 32, 3), precision="w1a32", preset="paper")
    counts = _component_counts(model)
    assert counts == PAPER_COUNTS
    fp = footprint(model)
    assert fp.parameters == sum(PAPER_COUNTS.values()) == 33_559_504
    assert model.count_params() == 33_559_504  # metric state is not counted
    binary = sum(v for k, v in PAPER_COUNTS.items() if "kernels" in k)
    assert fp.binary_weights == binary == 31_273_728
    assert round(fp.binary_share, 4) == 0.9319
    # The context network's gates are 3x3 (2C -> 2C); the couplings' gates are 1x1.
    ctx_block = model.dequantizer.context_network.blocks[0]
    assert tuple(ctx_block.conv_gate.kernel.shape) == (3, 3, 64, 64)
    assert tuple(model.main.stages[0].networks[0].blocks[0].conv_gate.kernel.shape) == (1, 1, 240, 240)
    del model
    tf.keras.backend.clear_session()
    real = FlowPlusPlus((32, 32, 3), precision="w32a32", preset="paper")
    assert footprint(real).parameters == 33_559_504 and footprint(real).binary_weights == 0


def test_bad_configs_raise_value_errors():
    with pytest.raises(ValueError, match="known presets: paper, small"):
        FlowPlusPlus(SHAPE, preset="huge")
    with pytest.raises(ValueError, match="valid overrides"):
        FlowPlusPlus(SHAPE, widht=8)
    with pytest.raises(ValueError, match="divisible by 4"):
        FlowPlusPlus((8, 6, 1), **TINY)
    with pytest.raises(ValueError, match="precision"):
        FlowPlusPlus(SHAPE, precision="w2a2", **TINY)


def test_attention_option_round_trips_and_saves(tmp_path):
    model = _tiny("w1a1", attention_heads=2)
    plain = _tiny("w1a1")
    n_attention = sum(1 for layer in model.submodules if type(layer).__name__ == "GatedAttention")
    assert n_attention == 3 + 1 and len(model.trainable_variables) > len(plain.trainable_variables)
    x = _images()
    keras_bdgm.initialize(model, x)
    for v in model.trainable_variables:
        v.assign_add(0.01 * tf.random.normal(v.shape))
    y = tf.cast(x, tf.float32) + 0.5
    z = model.flow.inverse(y)
    np.testing.assert_allclose(model.flow.forward(tf.identity(z)).numpy(), y.numpy(), atol=2e-3)
    expected = model.log_prob(x, seed=3).numpy()
    assert np.isfinite(expected).all()
    model.save(str(tmp_path / "a.keras"))
    loaded = tf.keras.models.load_model(str(tmp_path / "a.keras"))
    assert loaded.config["attention_heads"] == 2
    np.testing.assert_array_equal(loaded.log_prob(x, seed=3).numpy(), expected)


# ---------------------------------------------------------------- the model contract


def _log_weights_oracle(model, x, eps):
    """log p(x + u) - log q(u | x) per image from the model's public pieces, noise eps."""
    xf = tf.cast(x, tf.float32)
    u, log_q = model.dequantizer.sample(xf, eps)
    z, ldj = kb.forward_and_log_det(model.main.bijectors(), xf + u)
    return (kb.standard_normal_log_prob(z) + ldj - log_q).numpy()


def _numpy_bound(log_w):
    log_w = np.asarray(log_w, np.float64)
    top = log_w.max(axis=0)
    return top + np.log(np.exp(log_w - top).sum(axis=0)) - math.log(len(log_w))


def test_importance_bound_is_the_same_for_every_chunking():
    """Sample k of image i has noise row k * N + i of stateless_normal([K * N, ...], seed),
    whatever the chunking: the bound equals a numpy bound over log-weights collected one
    sample at a time, and the unchunked computation (as before chunking) exactly."""
    model = _tiny("w1a1")
    x = _images(6)
    keras_bdgm.initialize(model, x)
    k, n, seed = 9, len(x), 7
    noise = tf.random.stateless_normal([k * n, *SHAPE], seed=[seed, 0])  # int seed s -> (s, 0)
    log_w = [_log_weights_oracle(model, x, noise[j * n:(j + 1) * n]) for j in range(k)]
    expected = _numpy_bound(log_w)
    for per_chunk in (None, 1, 2, 4, 9):
        got = model.log_prob(x, num_samples=k, seed=seed, samples_per_chunk=per_chunk).numpy()
        np.testing.assert_allclose(got, expected, rtol=2e-6)
    # One chunk (the default here: 9 * 6 rows < 1024) is the all-at-once computation with the
    # model's noise, bit for bit.
    tiled = np.tile(x, (k, 1, 1, 1))
    whole = tf.reshape(_log_weights_oracle(model, tiled, stateless_normal([k * n, *SHAPE], [seed, 0])), [k, n])
    before = tf.reduce_logsumexp(whole, axis=0) - math.log(k)
    np.testing.assert_array_equal(model.log_prob(x, num_samples=k, seed=seed).numpy(), before.numpy())


def test_latent_is_the_squeezed_image():
    model = _tiny("w1a1")
    assert model.num_latent_layers == 1 and model.latent_shape == (4, 4, 4)  # (H/2, W/2, 4C)
    assert math.prod(model.latent_shape) * model.num_latent_layers == model.num_dims
