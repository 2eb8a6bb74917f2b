"""Tests of keras_bdgm.models.ResNetVAE: bounds, training, saving, sizes, bad input."""

import math

import keras_bdgm
import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm import memory
from keras_bdgm.models import ResNetVAE
from keras_bdgm.precision import PRECISIONS

SHAPE = (8, 8, 1)
TINY = dict(width=16, latent_layers=2, z_channels=2, processing_blocks=1)
TRAIN_STEPS = 128


def _tiny_images():
    """8 structured 8x8 images: gradients and stripes with a little noise."""
    rng = np.random.RandomState(1)
    ramp = np.linspace(0, 255, 8)
    patterns = [np.tile(ramp, (8, 1)), np.tile(ramp[:, None], (1, 8)),
                np.tile([0, 255] * 4, (8, 1)), np.full((8, 8), 128.0)]
    images = [np.clip(p + rng.randint(-8, 9, p.shape), 0, 255) for p in patterns for _ in range(2)]
    return np.stack(images)[..., None].astype(np.uint8)


def _tiny_model(precision):
    return ResNetVAE(SHAPE, precision=precision, **TINY)


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


def test_keras_file_round_trip(trained, tmp_path):
    model, x, *_ = trained
    path = str(tmp_path / "vae.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    assert isinstance(loaded, ResNetVAE) and loaded.precision == model.precision
    # equal up to float32 rounding (oneDNN may pick another conv algorithm)
    np.testing.assert_allclose(loaded.log_prob(x, 3, seed=5), model.log_prob(x, 3, seed=5), rtol=1e-6)
    np.testing.assert_array_equal(loaded.sample(2, seed=4), model.sample(2, seed=4))


def test_packed_round_trip(trained, tmp_path):
    model, x, *_ = trained
    path = str(tmp_path / "vae.bdgm")
    memory.save_packed(model, path)
    fresh = _tiny_model(model.precision)
    fresh.build((None, *SHAPE))
    memory.load_packed(fresh, path)
    np.testing.assert_allclose(fresh.log_prob(x, 3, seed=5), model.log_prob(x, 3, seed=5), rtol=1e-6)
    if model.precision != "w32a32":
        assert memory.footprint(model).binary_weights > 0
        assert set(np.unique(np.concatenate(
            [w.numpy().ravel() for w in fresh.weights if memory.is_binary(w)]))) == {-1.0, 1.0}


def test_samples_and_reconstructions(trained):
    model, x, *_ = trained
    for images in (model.sample(5, seed=1), model.sample(3, temperature=0.5, seed=2, sample_pixels=True),
                   model.reconstruct(x, seed=3)):
        assert images.dtype == tf.uint8 and images.shape[1:] == SHAPE
    assert model.sample(5, seed=1).shape[0] == 5
    # a fixed seed gives the same images.
    np.testing.assert_array_equal(model.sample(4, seed=9), model.sample(4, seed=9))
    # reconstructions are the likelihood's mode: the means rounded to pixels, clipped.
    _, _, means = model._forward(x / 127.5 - 1.0, seed=tf.constant([0, 3]))  # seed=3's stream
    expected = np.clip(np.round((means.numpy() + 1.0) * 127.5), 0, 255)
    np.testing.assert_array_equal(model.reconstruct(x, seed=3).numpy(), expected)


def test_kl_per_layer_and_free_bits():
    tf.keras.utils.set_random_seed(0)
    x = _tiny_images()
    model = ResNetVAE(SHAPE, kl_min=1e4, **TINY)  # every channel below the floor
    keras_bdgm.initialize(model, x)
    per_layer = model.kl_per_layer(x, seed=1)
    assert per_layer.shape == (TINY["latent_layers"],) and np.all(np.isfinite(per_layer))
    train = model.compute_losses(model.check_images(x), training=True)
    floor = TINY["latent_layers"] * TINY["z_channels"] * 1e4 / (math.prod(SHAPE) * math.log(2.0))
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

    model = ResNetVAE((8, 8, 1), precision="w1a1", preset="small", width=8, latent_layers=2)
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
    keras_bdgm.initialize(model, x)
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(x[:, :4])
    with pytest.raises(ValueError, match="0..255"):
        model.log_prob(x.astype(np.float32) * 2)
    nan = x.astype(np.float32)
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.reconstruct(nan)
    with pytest.raises(ValueError, match="num_samples"):
        model.log_prob(x, num_samples=0)
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
    tf.keras.utils.set_random_seed(3)
    model = ResNetVAE((8, 8, 1), precision="w32a32", preset="small", width=8, latent_layers=2,
                      processing_blocks=1)
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
