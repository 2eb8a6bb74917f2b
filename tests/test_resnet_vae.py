"""Tests of keras_bdgm.models.ResNetVAE: training, bounds, free bits, reconstructions, sizes,
configs.

What every model must do (shapes, seeds, the bound, round trips, bad images) is tested for
both models by the battery in test_models.py; the tiny configuration is tests/tiny.py's.
"""

import math

import keras_bdgm
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm import memory
from keras_bdgm.models import ResNetVAE
from keras_bdgm.precision import PRECISIONS

import tiny

SHAPE = tiny.SHAPE
TINY = tiny.overrides("resnet_vae")
TRAIN_STEPS = 128


def _tiny_images():
    """8 structured 8x8 images: gradients and stripes with a little noise."""
    return tiny.pattern_images(8)


def _tiny_model(precision, **changes):
    return tiny.tiny_model("resnet_vae", precision, **changes)


@pytest.fixture(scope="module", params=PRECISIONS)
def trained(request):
    """A tiny model per precision, initialized and trained for TRAIN_STEPS steps."""
    tf.keras.utils.set_random_seed(0)
    x = _tiny_images()
    model = _tiny_model(request.param)
    keras_bdgm.initialize(model, x)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    before = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    steps_per_epoch = TRAIN_STEPS // 4
    history = model.fit(np.tile(x, (steps_per_epoch, 1, 1, 1)), batch_size=8, epochs=4, verbose=0)
    after = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    return model, x, before, history.history, after


def test_training_lowers_bits_per_dim(trained):
    model, _, before, history, after = trained
    for name in (*model.loss_names, "grad_norm"):
        assert np.all(np.isfinite(history[name])), name
    assert history["skipped_steps"][-1] == 0
    # evaluation bits/dim is -ELBO / (D ln 2) = kl + distortion.
    np.testing.assert_allclose(after["bits_per_dim"], after["kl"] + after["distortion"], rtol=1e-5)
    assert after["bits_per_dim"] < before["bits_per_dim"] - 1.0, (before, after)


@pytest.mark.parametrize("trained", ["w32a32"], indirect=True)
def test_iwae_bound_grows_with_samples(trained):
    model, x, *_ = trained
    n = len(x)

    def mean_bound(k, repeats):
        values = model.log_prob(np.tile(x, (repeats, 1, 1, 1)), num_samples=k, seed=7)
        return float(np.mean(values))  # over repeats and images

    elbo, iwae10, iwae100 = mean_bound(1, 100), mean_bound(10, 10), mean_bound(100, 1)
    assert iwae10 >= elbo - 0.05 and iwae100 >= iwae10 - 0.05, (elbo, iwae10, iwae100)
    assert iwae100 > elbo + 0.1, (elbo, iwae100)
    # chunking only changes which noise is drawn, not the bound's value (up to noise, which
    # the mean over 10 repeats of the images keeps small).
    tiled = np.tile(x, (10, 1, 1, 1))
    chunked = model.log_prob(tiled, num_samples=100, seed=8, samples_per_chunk=7)
    whole = model.log_prob(tiled, num_samples=100, seed=9, samples_per_chunk=100)
    assert abs(float(np.mean(chunked)) - float(np.mean(whole))) < 0.3
    # K = 1 is the ELBO: log p(x|z) - KL, in bits/dim the evaluation objective.
    bpd = -elbo / (math.prod(SHAPE) * math.log(2.0))
    repeated = np.tile(x, (100, 1, 1, 1))
    evaluated = model.evaluate(repeated, batch_size=len(repeated), verbose=0, return_dict=True)
    np.testing.assert_allclose(bpd, evaluated["bits_per_dim"], rtol=0.02)
    assert model.log_prob(x, seed=3).shape == (n,)


def test_pixel_samples_and_reconstructions(trained):
    model, x, *_ = trained
    drawn = model.sample(3, temperature=0.5, seed=2, sample_pixels=True)
    assert drawn.dtype == tf.uint8 and drawn.shape == (3, *SHAPE)
    np.testing.assert_array_equal(drawn, model.sample(3, temperature=0.5, seed=2, sample_pixels=True))
    # the mode and a draw from the likelihood: the same latents, other pixels.
    assert not np.array_equal(drawn, model.sample(3, temperature=0.5, seed=2))
    reconstructions = model.reconstruct(x, seed=3)
    assert reconstructions.dtype == tf.uint8 and reconstructions.shape == x.shape
    # reconstructions are the likelihood's mode: the means rounded to pixels, clipped.
    _, _, means = model._forward(x / 127.5 - 1.0, seed=tf.constant([3, 0]))  # seed=3's stream
    expected = np.clip(np.round((means.numpy() + 1.0) * 127.5), 0, 255)
    np.testing.assert_array_equal(model.reconstruct(x, seed=3).numpy(), expected)


def test_kl_per_layer_and_free_bits():
    tf.keras.utils.set_random_seed(0)
    x = _tiny_images()
    model = _tiny_model("w32a32", kl_min=1e4)  # every channel below the floor
    keras_bdgm.initialize(model, x)
    per_layer = model.kl_per_layer(x, seed=1)
    assert per_layer.shape == (TINY["latent_layers"],) and np.all(np.isfinite(per_layer))
    train = model.compute_losses(model.check_images(x), training=True)
    floor = TINY["latent_layers"] * model.config["z_channels"] * 1e4 / (math.prod(SHAPE) * math.log(2.0))
    np.testing.assert_allclose(train["bits_per_dim"], train["distortion"] + floor, rtol=1e-6)
    test = model.compute_losses(model.check_images(x), training=False)
    np.testing.assert_allclose(test["bits_per_dim"], test["kl"] + test["distortion"], rtol=1e-6)


def test_small_preset_shapes():
    x = np.random.RandomState(0).randint(0, 256, (4, 28, 28, 1)).astype(np.uint8)
    model = ResNetVAE((28, 28, 1), precision="w1a1", preset="small")
    keras_bdgm.initialize(model, x)
    assert model.latent_shape[:2] == (14, 14)
    assert model.sample(2, seed=0).shape == (2, 28, 28, 1)
    lp = model.log_prob(x, num_samples=4, seed=0)
    assert lp.shape == (4,) and np.all(np.isfinite(lp))


def _hand_count(width, layers=12, z=8, proc=4, channels=3):
    """Binary and real parameters of the paper architecture, counted by hand."""
    blocks_5x5, blocks_3x3 = 2 * proc, 2 * layers
    binary = 2 * (blocks_5x5 * 25 + blocks_3x3 * 9) * width * width
    block_gains = 2 * (blocks_5x5 + blocks_3x3) * 2 * width
    convs = (25 * channels * width + 2 * width) + (25 * width * channels + 2 * channels)
    up, down, z_in = 9 * width * 2 * z + 4 * z, 9 * width * 4 * z + 8 * z, 9 * z * width + 2 * width
    latent = layers * (up + down + z_in)
    return binary, block_gains + convs + latent + 1  # + the likelihood's log-scale


def _size(layers, kernels=None):
    """Parameters of `layers`: all, or only (kernels=True) / all but (False) the kernels."""
    return sum(
        int(np.prod(w.shape)) for layer in layers for w in layer.trainable_weights
        if kernels is None or ("kernel" in w.name) == kernels
    )


def _component_counts(model):
    up = [b for blocks in model.up_blocks for b in blocks]
    down = [b for blocks in model.down_blocks for b in blocks]
    return {
        "input conv": _size([model.in_conv]),
        "input blocks kernels": _size(model.in_blocks, True),
        "input blocks gains/biases": _size(model.in_blocks, False),
        "bottom-up latent convs": _size(model.up_convs),
        "bottom-up blocks kernels": _size(up, True),
        "bottom-up blocks gains/biases": _size(up, False),
        "top-down latent convs": _size(model.down_convs),
        "top-down blocks kernels": _size(down, True),
        "top-down blocks gains/biases": _size(down, False),
        "z convs": _size(model.z_convs),
        "output blocks kernels": _size(model.out_blocks, True),
        "output blocks gains/biases": _size(model.out_blocks, False),
        "output transposed conv": _size([model.out_conv]),
        "likelihood log-scale": int(np.prod(model.log_scale.shape)),
    }


PAPER_COUNTS = {  # Bird et al. (2021), 32x32x3, width 256
    "input conv": 19_712, "input blocks kernels": 13_107_200, "input blocks gains/biases": 4_096,
    "bottom-up latent convs": 442_752, "bottom-up blocks kernels": 14_155_776,
    "bottom-up blocks gains/biases": 12_288, "top-down latent convs": 885_504,
    "top-down blocks kernels": 14_155_776, "top-down blocks gains/biases": 12_288,
    "z convs": 227_328, "output blocks kernels": 13_107_200, "output blocks gains/biases": 4_096,
    "output transposed conv": 19_206, "likelihood log-scale": 1,
}


def test_paper_preset_exact_counts():
    model = ResNetVAE((32, 32, 3), precision="w1a32", preset="paper")
    assert _component_counts(model) == PAPER_COUNTS
    fp = memory.footprint(model)
    assert fp.parameters == model.count_params() == sum(PAPER_COUNTS.values()) == 56_153_223
    assert fp.binary_weights == sum(v for k, v in PAPER_COUNTS.items() if "kernels" in k) == 54_525_952
    assert round(fp.binary_share, 4) == 0.9710
    binary, real = _hand_count(256)
    assert (binary, real) == (54_525_952, 56_153_223 - 54_525_952)


def test_paper_preset_width_336():
    model = ResNetVAE((32, 32, 3), precision="w1a1", preset="paper", width=336)
    fp = memory.footprint(model)
    assert fp.parameters == model.count_params() == 96_064_903
    assert fp.binary_weights == _hand_count(336)[0]
    assert round(fp.binary_share, 4) == 0.9778


def test_size_reported_right_after_construction():
    import larq as lq

    model = _tiny_model("w1a1")
    expected = memory.footprint(model).parameters
    assert model.count_params() == expected
    model.summary(print_fn=lambda *a, **k: None)
    lines = []
    lq.models.summary(model, print_fn=lines.append)
    text = "\n".join(lines)
    total_row = [line for line in text.splitlines() if line.startswith("| Total ")][0].split()
    one_bit, real = int(total_row[2]), int(total_row[3])
    assert one_bit == memory.footprint(model).binary_weights
    assert one_bit + real == expected - 1  # larq's per-layer table leaves out the model's own log-scale
    assert f"Total params                   {expected / 1000:.1f} k" in text


def test_bad_input_and_config():
    model = _tiny_model("w32a32")
    x = _tiny_images()
    nan = x.astype(np.float32)
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="contain NaN"):  # reconstruct checks its images as log_prob does
        model.reconstruct(nan)
    with pytest.raises(ValueError, match=r"shape \[N, 8, 8, 1\]"):
        model.kl_per_layer(x[:, :4])
    with pytest.raises(ValueError, match="paper, small"):
        ResNetVAE(SHAPE, preset="huge")
    with pytest.raises(ValueError, match="valid overrides"):
        ResNetVAE(SHAPE, depth=3)
    with pytest.raises(ValueError, match="even"):
        ResNetVAE((7, 8, 1))
    with pytest.raises(ValueError, match="precision"):
        ResNetVAE(SHAPE, precision="w2a2")


def test_output_path_starts_with_elu():
    """means = out_conv(ELU(out_blocks(ELU(d)))) for the final top-down state d.

    The latent layers' z convs are set to output a constant negative bias (gain 0) and
    their residual blocks are the identity (as initialized), so d = L * bias exactly; the
    output block gets random gains so that its place relative to the ELUs matters.
    """
    model = _tiny_model("w32a32", seed=3, processing_blocks=1)
    keras_bdgm.initialize(model, np.random.randint(0, 256, (16, 8, 8, 1)).astype(np.uint8))
    bias = -np.linspace(0.2, 1.5, 8).astype(np.float32)
    for conv in model.z_convs:
        conv.gain.assign(tf.zeros_like(conv.gain))
        conv.bias.assign(bias)
    block = model.out_blocks[0]
    block.conv2.gain.assign(tf.random.normal(block.conv2.gain.shape))
    block.conv2.bias.assign(tf.random.normal(block.conv2.bias.shape))
    means, _ = model._top_down(2, seed=0)
    d = tf.constant(np.broadcast_to(2 * bias, (2, 4, 4, 8)))
    expected = model.out_conv(tf.nn.elu(block(tf.nn.elu(d))))
    np.testing.assert_allclose(means, expected, rtol=1e-5, atol=1e-6)
    without_first_elu = model.out_conv(tf.nn.elu(block(d)))
    assert np.max(np.abs(without_first_elu - expected)) > 1e-2


# ---------------------------------------------------------------- the model contract


def _log_prob_before(model, x, num_samples, seed, samples_per_chunk=None):
    """The ResNetVAE's own log_prob before the bound moved into GenerativeModel, verbatim
    but for the seed reading: an int s was the pair (0, s), now (s, 0) (the shared convention)."""
    x = model._scale_pixels(model.check_images(x))
    batch = int(x.shape[0])
    if samples_per_chunk is None:
        samples_per_chunk = max(1, 1024 // batch)
    samples_per_chunk = min(int(samples_per_chunk), num_samples)
    up = model._bottom_up_fn(x)
    starts = range(0, num_samples, samples_per_chunk)
    seed = (seed, 0) if np.ndim(seed) == 0 else seed
    seeds = tfp.random.split_seed(tfp.random.sanitize_seed(seed), n=len(starts))
    chunk_bounds = []
    for start, chunk_seed in zip(starts, tf.unstack(seeds)):
        k = min(samples_per_chunk, num_samples - start)
        tiled = [tf.tile(t, [k, 1, 1, 1]) for t in [x] + up]
        log_w = model._log_weights_fn(tiled[0], tiled[1:], chunk_seed)
        chunk_bounds.append(tf.reduce_logsumexp(tf.reshape(log_w, [k, -1]), axis=0))
    return tf.reduce_logsumexp(tf.stack(chunk_bounds), axis=0) - math.log(num_samples)


def _numpy_bound(log_w):
    log_w = np.asarray(log_w, np.float64)
    top = log_w.max(axis=0)
    return top + np.log(np.exp(log_w - top).sum(axis=0)) - math.log(len(log_w))


@pytest.mark.parametrize("trained", ["w1a1"], indirect=True)
@pytest.mark.parametrize("num_samples, seed, per_chunk", [(1, 3, None), (20, 7, None), (20, (4, 5), 3),
                                                          (7, 2, 7), (300, 9, None)])
def test_importance_bound_is_unchanged(trained, num_samples, seed, per_chunk):
    """The shared bound gives the former numbers bit for bit, and equals a numpy bound over
    the log-weights collected one sample at a time (chunk c draws with split seed c)."""
    model, x, *_ = trained
    got = model.log_prob(x, num_samples=num_samples, seed=seed, samples_per_chunk=per_chunk).numpy()
    np.testing.assert_array_equal(got, _log_prob_before(model, x, num_samples, seed, per_chunk).numpy())
    n = len(x)
    chunks = keras_bdgm.models.base.importance_chunks(num_samples, n, per_chunk)
    seeds = tfp.random.split_seed(model.stateless_seed(seed), n=len(chunks))
    up = model.bottom_up(x / 127.5 - 1.0)
    log_w = []
    for chunk, chunk_seed in zip(chunks, seeds):
        rows = chunk.size * n
        tiled_x = np.tile(x / 127.5 - 1.0, (chunk.size, 1, 1, 1)).astype(np.float32)
        tiled_up = [tf.tile(tf.concat(p, -1), [chunk.size, 1, 1, 1]) for p in up]
        weights = model._log_weights(tiled_x, tiled_up, chunk_seed).numpy().reshape(chunk.size, n)
        assert weights.shape[0] * n == rows
        log_w.extend(weights)  # one sample (all images) at a time
    assert len(log_w) == num_samples
    np.testing.assert_allclose(got, _numpy_bound(log_w), rtol=1e-6)


def test_latents_and_call():
    x = _tiny_images()
    model = _tiny_model("w32a32", seed=0)
    z_channels = model.config["z_channels"]
    assert model.latent_shape == (4, 4, z_channels) and model.num_latent_layers == TINY["latent_layers"]
    keras_bdgm.initialize(model, x)
    # model(x): the single-sample ELBO in nats, with a seed drawn from the model's generator.
    state = model.rng.state.numpy()
    elbo = model(x).numpy()
    model.rng.state.assign(state)
    seed = model.rng.uniform_full_int([2], tf.int32)
    log_px, kls, _ = model._forward(model._scale_pixels(model.check_images(x)), seed=seed)
    np.testing.assert_array_equal(elbo, (log_px - model._total_kl(kls)).numpy())
    # int s is the pair (s, 0) for the VAE's own methods too (log_prob and sample: test_models.py).
    np.testing.assert_array_equal(model.reconstruct(x, seed=4), model.reconstruct(x, seed=(4, 0)))
    np.testing.assert_array_equal(model.kl_per_layer(x, seed=4), model.kl_per_layer(x, seed=(4, 0)))
    assert not np.array_equal(model.kl_per_layer(x, seed=4), model.kl_per_layer(x, seed=(0, 4)))
