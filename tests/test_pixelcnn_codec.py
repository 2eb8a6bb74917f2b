"""The PixelCNN's raster-order evaluation and the direct ANS codec built on it.

Oracles: the model's parallel pass (`pixel_params`) for the raster path; the model's exact
log p(x) for the rate; a float64 numpy discretized-logistic mixture for the probability
tables; the images themselves for every round trip.
"""

import os
import subprocess
import sys
import textwrap

import keras_bdgm
import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm import compression
from keras_bdgm.compression import container
from keras_bdgm.compression.pixels import PIXEL_CODER, mixture_params
from keras_bdgm.models import PixelCNN
from keras_bdgm.models.pixelcnn_raster import RasterDecoder
from keras_bdgm.precision import PRECISIONS

import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (7, 6, 1)


def _images(n, seed=0):
    """Smooth ramps with noise: images a model can learn something about."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(20, 230, SHAPE[1])[None, :] + np.linspace(0, 20, SHAPE[0])[:, None]
    return np.clip(ramp[None, :, :, None] + rng.integers(-12, 13, (n, *SHAPE)), 0, 255).astype(np.uint8)


def _model(precision, seed=0):
    """A tiny initialized PixelCNN, its weights moved off their init (so every layer acts)."""
    tf.keras.utils.set_random_seed(seed)
    model = PixelCNN(SHAPE, precision=precision, preset="tiny")
    keras_bdgm.initialize(model, _images(16, seed=seed + 1))
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign_add(0.05 * rng.standard_normal(v.shape.as_list()).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def models():
    return {precision: _model(precision) for precision in PRECISIONS}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_raster_path_gives_the_parallel_pass_parameters(models, precision):
    model = models[precision]
    images = _images(5, seed=2)
    full = [t.numpy() for t in model.pixel_params(images)]
    raster = RasterDecoder(model, 5).run(images)
    for name, a, b in zip(("logits", "means", "log_scales"), full, raster):
        np.testing.assert_allclose(b, a, atol=2e-5, err_msg=name)


def test_raster_decoder_uses_only_the_pixels_sent_before(models):
    """The generator's parameters for (i, j) are computed before (i, j)'s value is sent:
    sending other values for later pixels changes nothing before them."""
    model = models["w1a32"]
    images = _images(2, seed=3)
    other = images.copy()
    other[:, 4:, 2:] = 255 - other[:, 4:, 2:]
    first, second = (RasterDecoder(model, 2).run(x) for x in (images, other))
    cut = 4 * SHAPE[1] + 2  # raster index of (4, 2)
    for a, b in zip(first, second):
        a, b = a.reshape(2, -1, a.shape[-1]), b.reshape(2, -1, b.shape[-1])
        np.testing.assert_array_equal(a[:, :cut + 1], b[:, :cut + 1])
        assert not np.allclose(a[:, cut + 1:], b[:, cut + 1:])


def test_mixture_tables_against_a_numpy_oracle():
    rng = np.random.default_rng(0)
    logits, means, log_scales = rng.normal(size=(3, 40, 4))
    log_scales = np.maximum(log_scales - 2.0, -7.0)
    a, b, weights = mixture_params(logits, means, log_scales)
    table = PIXEL_CODER.masses(a, b, weights=weights)
    # oracle: sum_k softmax_k [sigmoid((x + 1/255 - mu)/s) - sigmoid((x - 1/255 - mu)/s)], tails in the edge bins
    x = np.arange(256) / 127.5 - 1.0
    upper = np.where(np.arange(256) == 255, np.inf, x + 1 / 255)
    lower = np.where(np.arange(256) == 0, -np.inf, x - 1 / 255)
    s = np.exp(log_scales)[:, :, None]
    cdf = lambda t: 1.0 / (1.0 + np.exp(-(t - means[:, :, None]) / s))  # noqa: E731
    w = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.einsum("nk,nkv->nv", w, cdf(upper[None, None]) - cdf(lower[None, None]))
    np.testing.assert_allclose(table, expected, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_exact_round_trip_at_the_models_rate(models, precision):
    model = models[precision]
    images = _images(7, seed=4)
    codec = compression.AutoregressiveCodec(model, batch_size=3)  # 3 batches, the last padded
    data = codec.compress(images, allow_stored=False)
    stats = codec.last_stats
    assert stats.initial_bits == 0 and not stats.stored
    nll_bits = -float(np.sum(model(images))) / np.log(2.0)
    # the coded information is the model's -log2 p(x) (up to the 24-bit table quantization)
    assert stats.information["pixels"] == pytest.approx(nll_bits, rel=2e-3)
    assert stats.payload_bits - stats.information["pixels"] < 32 + 1e-3 * nll_bits  # at most a word of overhead
    header, words = container.unpack(data)
    assert header["codec"] == "autoregressive-mixture" and header["params"]["b"] == 3
    np.testing.assert_array_equal(compression.decompress(model, data), images)
    # one image: no start-up cost, the model's -log2 p(x) plus the container
    single = codec.compress(images[:1], allow_stored=False)
    one_nll = -float(model(images[:1])[0]) / np.log(2.0)
    header_bytes = len(container.pack({**container.unpack(single)[0], "model": {"fingerprint": "0" * 16}}, []))
    assert header_bytes <= 56
    assert 8 * len(single) <= one_nll + 32 + 8 * header_bytes
    np.testing.assert_array_equal(compression.decompress(model, single), images[:1])


def test_one_file_per_image_decoded_together(models):
    model = models["w1a1"]
    images = _images(5, seed=5)
    codec = compression.AutoregressiveCodec(model, batch_size=2)
    files = codec.compress_each(images, names=[f"{i}.png" for i in range(5)], allow_stored=False)
    for i, blob in enumerate(files):
        header, _ = container.unpack(blob)
        assert header["count"] == 1 and header["params"]["names"] == [f"{i}.png"]
        np.testing.assert_array_equal(codec.decompress(blob), images[i:i + 1])  # alone
    back = codec.decompress_each(files)  # together, a batch at a time
    np.testing.assert_array_equal(np.concatenate(back), images)
    # never larger than stored pixels: noise goes in stored
    noise = np.random.default_rng(0).integers(0, 256, (2, *SHAPE), dtype=np.uint8)
    for blob, image in zip(codec.compress_each(noise), noise):
        assert len(blob) <= image.size + 24
        np.testing.assert_array_equal(codec.decompress_each([blob])[0][0], image)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_unusual_images_never_cost_more_than_their_raw_pixels(models, precision):
    """Noise, flat, checkerboard, photo crops, one image: whole file and one file per image,
    at most the raw pixels plus the 24-byte container header (plus recorded names), exact;
    each file holds whichever is smaller, the model's code or the pixels."""
    model = models[precision]
    codec = compression.AutoregressiveCodec(model, batch_size=2)
    for name, images in tiny.unusual_images(SHAPE, seed=7).items():
        data = codec.compress(images)
        model_code = codec.compress(images, allow_stored=False)
        stored = compression.stored_file(images)
        assert len(data) <= images.size + 24 and data == min(model_code, stored, key=len), name
        np.testing.assert_array_equal(compression.decompress(model, data), images, err_msg=name)
        names = [f"{i}.png" for i in range(len(images))]
        files = codec.compress_each(images, names=names)
        for blob, image, file_name in zip(files, images, names):
            assert len(blob) <= image.size + 24 + len(f'{{"names":["{file_name}"]}}'), name
        back = codec.decompress_each(files)
        np.testing.assert_array_equal(np.concatenate(back), images, err_msg=name)


def test_damaged_data_raises(models):
    model = models["w32a32"]
    codec = compression.AutoregressiveCodec(model)
    data = codec.compress(_images(3, seed=6), allow_stored=False)
    header, words = container.unpack(data)
    words = words.copy()
    words[0] ^= 0x5A5A
    with pytest.raises(ValueError, match="corrupt"):
        codec.decompress(container.pack(header, words))
    with pytest.raises(ValueError, match="different model"):
        compression.decompress(_model("w32a32", seed=9), data)


def test_decoding_in_a_fresh_process_with_another_thread_count(models, tmp_path):
    images = _images(6, seed=7)
    for precision, model in models.items():
        model.save(str(tmp_path / f"{precision}.keras"))
        data = compression.AutoregressiveCodec(model, batch_size=4).compress(images, allow_stored=False)
        (tmp_path / f"{precision}.kbc").write_bytes(data)
    script = textwrap.dedent(f"""
        import keras_bdgm, numpy as np, tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from keras_bdgm import compression
        root = {str(tmp_path)!r}
        out = {{}}
        for precision in {list(PRECISIONS)!r}:
            model = tf.keras.models.load_model(f"{{root}}/{{precision}}.keras")
            out[precision] = compression.decompress(model, open(f"{{root}}/{{precision}}.kbc", "rb").read())
        np.savez(f"{{root}}/decoded.npz", **out)
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    decoded = np.load(tmp_path / "decoded.npz")
    for precision in PRECISIONS:
        np.testing.assert_array_equal(decoded[precision], images, err_msg=precision)
