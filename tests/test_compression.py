"""Lossless compression (keras_bdgm.compression): exact round trips, rates, file errors."""

import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import zlib

import keras_bdgm
import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm import compression, memory
from keras_bdgm.compression import container, stack as ans
from keras_bdgm.compression.buckets import LATENT_MIN_SCALE, BucketGrid, LogisticParams
from keras_bdgm.compression.intervals import split_radices
from keras_bdgm.compression.logistic import interval_masses
from keras_bdgm.compression.pixels import PIXEL_CODER, PIXEL_GRID, pixel_params
from keras_bdgm.distributions import DiscretizedLogistic, logistic_from_raw
from keras_bdgm.models import ResNetVAE
from keras_bdgm.precision import PRECISIONS

import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (8, 8, 1)
TINY = dict(preset="small", width=8, latent_layers=2, processing_blocks=0)


def _images(n, seed=1):
    """n 8x8 grey images: ramps, stripes and flat patches with noise."""
    rng = np.random.RandomState(seed)
    ramp = np.linspace(0, 255, 8)
    patterns = [np.tile(ramp, (8, 1)), np.tile(ramp[:, None], (1, 8)), np.tile([0, 255] * 4, (8, 1)),
                np.full((8, 8), 128.0)]
    images = [np.clip(patterns[i % 4] + rng.randint(-20, 21, (8, 8)), 0, 255) for i in range(n)]
    return np.stack(images)[..., None].astype(np.uint8)


def _tiny_model(precision, seed=0):
    """A tiny initialized ResNetVAE whose residual blocks are switched on.

    (Residual blocks start as the identity: their last conv's gain is 0. Random gains make
    the precisions compute different functions, as trained models do.)"""
    tf.keras.utils.set_random_seed(seed)
    model = ResNetVAE(SHAPE, precision=precision, **TINY)
    keras_bdgm.initialize(model, _images(16, seed=seed + 7))
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "conv2/gain" in weight.name:
            weight.assign(rng.uniform(0.3, 0.8, weight.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def models():
    return {precision: _tiny_model(precision) for precision in PRECISIONS}


@pytest.fixture(scope="module")
def encoded(models):
    """Per precision: (images, compressed bytes, stats) of 12 images, batches of 4."""
    out = {}
    for precision, model in models.items():
        images = _images(12, seed=3)
        codec = compression.BitsBackCodec(model, batch_size=4)
        out[precision] = (images, codec.compress(images, allow_stored=False), codec.last_stats)
    assert len({data for _, data, _ in out.values()}) == len(PRECISIONS)  # the precisions differ
    return out


# ---------------------------------------------------------------- probability tables


def _sigmoid(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))  # another formula than the codec's


def test_interval_masses_match_a_naive_oracle_and_keep_tail_precision():
    rng = np.random.default_rng(0)
    u = np.sort(rng.normal(0, 3, (50, 9)), axis=1)
    u[:, 0], u[:, -1] = -np.inf, np.inf
    masses = interval_masses(u)
    np.testing.assert_allclose(masses, np.diff(_sigmoid(u), axis=1), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(masses.sum(axis=1), 1.0, rtol=1e-12)
    # far tails: sigma(41) - sigma(40) ~ 2.7e-18, lost entirely by 1 - 1 in float64.
    far = interval_masses(np.array([[40.0, 41.0], [-41.0, -40.0], [700.0, 701.0]]))[:, 0]
    exact = np.exp(-40.0) - np.exp(-41.0)  # to within a relative 1e-17
    np.testing.assert_allclose(far[:2], exact, rtol=1e-12)
    assert 0.0 < far[2] < 1e-300


def test_prior_buckets_have_equal_mass_and_posterior_masses_match_the_logistic_cdf():
    grid = BucketGrid(64)
    n = 20
    ones = np.ones(n)
    np.testing.assert_allclose(grid.masses(0 * ones, ones), 1.0 / 64, rtol=1e-9)  # posterior == prior
    rng = np.random.default_rng(1)
    prior = LogisticParams(rng.normal(0, 1, n), np.exp(rng.normal(0, 0.5, n)))
    post = LogisticParams(rng.normal(0, 1, n), np.exp(rng.normal(-1, 0.5, n)))
    a, b = grid.standardize(prior, post)
    with np.errstate(divide="ignore"):
        edges = prior.mean[:, None] + prior.scale[:, None] * np.log(np.arange(65) / (64 - np.arange(65)))
    oracle = np.diff(_sigmoid((edges - post.mean[:, None]) / post.scale[:, None]), axis=1)
    np.testing.assert_allclose(grid.masses(a, b), oracle, rtol=1e-8, atol=1e-15)
    # centres: the prior's median of each bucket.
    centres = grid.centres(prior, np.full(n, 10))
    np.testing.assert_allclose(_sigmoid((centres - prior.mean) / prior.scale), 10.5 / 64, rtol=1e-12)
    assert LATENT_MIN_SCALE == logistic_from_raw.__defaults__[0]  # min_scale of the model's latents


@pytest.mark.parametrize("a", [-1e6, -30.0, 0.0, 3.0, 1e6])
@pytest.mark.parametrize("b", [1e-9, 1e-3, 1.0, 1e3, 1e9])
def test_bucket_masses_at_extreme_scales_are_valid(a, b):
    grid = BucketGrid(1024)
    masses = grid.masses(np.array([a]), np.array([b]))
    assert np.all(np.isfinite(masses)) and np.all(masses >= 0) and masses.sum() > 0


def test_pixel_masses_match_the_models_discretized_logistic():
    rng = np.random.default_rng(2)
    means = rng.uniform(-1.3, 1.3, 64).astype(np.float32)
    values = np.arange(256) / 127.5 - 1.0
    for log_scale in (-5.0, -2.0, 0.0):
        a, b = pixel_params(means, np.float32(log_scale))
        masses = PIXEL_CODER.masses(a, b)
        model = np.exp(DiscretizedLogistic(means[:, None], np.exp(np.float32(log_scale)))
                       .log_prob(values[None, :].astype(np.float32)).numpy())
        big = model > 1e-5
        np.testing.assert_allclose(masses[big], model[big], rtol=2e-3)
        np.testing.assert_allclose(masses.sum(axis=1), 1.0, rtol=1e-12)
    assert PIXEL_GRID.shape == (257,) and PIXEL_CODER.radices == (16, 16)


def test_split_radices():
    assert split_radices(1024) == (16, 8, 8)
    assert split_radices(256) == (16, 16)
    assert split_radices(4) == (4,) and split_radices(2) == (2,)
    assert math.prod(split_radices(2**20)) == 2**20
    with pytest.raises(ValueError):
        split_radices(12)


def test_digits_factor_the_masses_and_push_undoes_pop():
    grid = BucketGrid(1024)
    coder = grid.coder
    rng = np.random.default_rng(3)
    n = 200
    a, b = rng.normal(0, 5, n), np.exp(rng.normal(0, 3, n))
    seed = ans.seed_words(4096)
    stack = ans.Stack(seed)
    tables = []
    k = coder.pop(stack, a, b, tables)
    # P(k) = product of the digits' normalized probabilities.
    product = np.ones(n)
    for table, digit in tables:
        product *= table[np.arange(n), digit] / table.sum(axis=1)
    full = grid.masses(a, b)
    np.testing.assert_allclose(product, full[np.arange(n), k] / full.sum(axis=1), rtol=1e-9)
    coder.push(stack, a, b, k)
    np.testing.assert_array_equal(stack.words(), seed)


def test_tables_built_in_row_chunks_are_bit_identical(monkeypatch):
    """Large tables are built on a thread pool in row chunks; the chunked mixture tables
    equal the one-piece ones bit for bit (the files cannot depend on the split), and both
    match the masses of a float64 numpy mixture-of-logistics oracle."""
    from keras_bdgm.compression import intervals  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(11)
    n, m = 1001, 3
    a, b = rng.normal(0, 3, (n, m)), np.exp(rng.normal(1, 1, (n, m)))
    weights = rng.dirichlet(np.ones(m), size=n)
    prefix = rng.integers(0, 16, n)
    whole = [PIXEL_CODER.digit_table(d, a, b, p, weights) for d, p in ((0, np.zeros(n, np.int64)), (1, prefix))]
    monkeypatch.setattr(intervals, "PARALLEL_ROWS", 7)
    monkeypatch.setattr(intervals.os, "sched_getaffinity", lambda _: set(range(3)), raising=False)
    pools, make_pool = [], intervals._pool  # pylint: disable=protected-access
    monkeypatch.setattr(intervals, "_pool", lambda threads: pools.append(threads) or make_pool(threads))
    chunked = [PIXEL_CODER.digit_table(d, a, b, p, weights) for d, p in ((0, np.zeros(n, np.int64)), (1, prefix))]
    assert pools == [3, 3]  # both tables were built in 3 chunks on the pool
    for one, many in zip(whole, chunked):
        np.testing.assert_array_equal(one, many)
    # oracle: digit 0's entry j is the mixture mass of pixel values 16j..16j+15
    inner = PIXEL_GRID[16:-1:16]  # the finite edges between the 16 digit values
    cdf = np.concatenate([np.zeros((n, m, 1)), 1.0 / (1.0 + np.exp(-(a[..., None] + b[..., None] * inner))),
                          np.ones((n, m, 1))], axis=-1)
    oracle = np.einsum("nm,nmj->nj", weights, np.diff(cdf, axis=-1))
    np.testing.assert_allclose(whole[0], oracle, rtol=1e-9, atol=1e-15)


def test_stack_guards_against_underflow():
    stack = ans.Stack(ans.seed_words(2))
    with pytest.raises(ans.StackUnderflow):
        stack.pop(np.full((100, 1024), 1.0))
    np.testing.assert_array_equal(ans.seed_words(5)[:4], ans.seed_words(9)[:4])  # a fixed stream


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("precision", PRECISIONS)
def test_exact_round_trip(models, encoded, precision):
    images, data, stats = encoded[precision]
    decoded = compression.decompress(models[precision], data)
    assert decoded.dtype == np.uint8 and decoded.shape == images.shape
    np.testing.assert_array_equal(decoded, images)
    header, words = container.unpack(data)
    assert header["count"] == 12 and header["image_shape"] == list(SHAPE)
    assert compression.fingerprint(models[precision]).startswith(header["model"]["fingerprint"])
    assert len(header["model"]["fingerprint"]) == 2 * container.FINGERPRINT_BYTES
    assert header["params"]["num_buckets"] == 1024 and header["params"]["batch_size"] == 4
    assert stats.file_bytes == len(data) and stats.payload_bits == 32 * len(words) and not stats.stored
    assert 0 < stats.initial_bits < stats.payload_bits and stats.images_per_second > 0


def test_round_trip_without_ramp_and_other_parameters(models):
    model = models["w1a1"]
    images = _images(7, seed=4)
    no_ramp = compression.BitsBackCodec(model, batch_size=3, ramp=False)
    data = no_ramp.compress(images, allow_stored=False)
    assert container.unpack(data)[0]["params"]["ramp"] == []
    np.testing.assert_array_equal(no_ramp.decompress(data), images)
    data = compression.compress(model, images, batch_size=16, num_buckets=64, allow_stored=False)
    assert container.unpack(data)[0]["params"]["num_buckets"] == 64
    # a codec configured otherwise decodes it too: the file's parameters win.
    np.testing.assert_array_equal(no_ramp.decompress(data), images)


@pytest.mark.parametrize("case", ["narrow", "narrow_far", "wide"])
def test_extreme_posterior_scales_round_trip(case):
    model = _tiny_model("w32a32", seed=5)
    z = model.latent_shape[-1]
    for conv in model.up_convs:  # outputs (q_mean, q_raw): shift the posterior's raw scale and mean
        bias = conv.bias.numpy()
        bias[z:] += {"narrow": -40.0, "narrow_far": -40.0, "wide": 40.0}[case]
        bias[:z] += {"narrow": 0.0, "narrow_far": 60.0, "wide": 0.0}[case]
        conv.bias.assign(bias)
    if case == "narrow":
        for conv in model.down_convs:  # and widen the prior: posterior inside one bucket
            bias = conv.bias.numpy()
            bias[z:2 * z] += 10.0
            conv.bias.assign(bias)
    images = _images(6, seed=6)
    codec = compression.BitsBackCodec(model, batch_size=4)
    data = codec.compress(images, allow_stored=False)
    np.testing.assert_array_equal(codec.decompress(data), images)
    assert np.isfinite(codec.last_stats.net_bits_per_dim)


def test_decoding_in_a_fresh_process_with_another_thread_count(models, encoded, tmp_path):
    for precision, model in models.items():
        model.save(str(tmp_path / f"{precision}.keras"))
        (tmp_path / f"{precision}.kbc").write_bytes(encoded[precision][1])
    memory.save_packed(models["w1a1"], str(tmp_path / "w1a1.bdgm"))
    script = textwrap.dedent(f"""
        import keras_bdgm, numpy as np, tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from keras_bdgm import compression, memory
        from keras_bdgm.models import ResNetVAE
        root = {str(tmp_path)!r}
        out = {{}}
        for precision in {list(PRECISIONS)!r}:
            model = tf.keras.models.load_model(f"{{root}}/{{precision}}.keras")
            out[precision] = compression.decompress(model, open(f"{{root}}/{{precision}}.kbc", "rb").read())
        packed = ResNetVAE({SHAPE!r}, precision="w1a1", **{TINY!r})
        memory.load_packed(packed, f"{{root}}/w1a1.bdgm")
        out["packed"] = compression.decompress(packed, open(f"{{root}}/w1a1.kbc", "rb").read())
        np.savez(f"{{root}}/decoded.npz", **out)
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    decoded = np.load(tmp_path / "decoded.npz")
    for precision in PRECISIONS:
        np.testing.assert_array_equal(decoded[precision], encoded[precision][0])
    np.testing.assert_array_equal(decoded["packed"], encoded["w1a1"][0])


# ---------------------------------------------------------------- rates


def test_bits_written_equal_the_information_of_the_coded_symbols(models):
    trace = []
    codec = compression.BitsBackCodec(models["w1a32"], batch_size=4, trace=trace)
    codec.compress(_images(20, seed=8), allow_stored=False)
    pushed, popped = ans.information_bits(trace)
    stats = codec.last_stats
    # net = payload - initial bits = 32 * (final stack words - initial stack words).
    written = stats.net_bits
    assert abs(written - (pushed - popped)) <= 1e-3 * pushed + 64, (written, pushed, popped)
    info = stats.information
    assert abs((info["pixels"] + info["latent_prior"] - info["latent_posterior"]) - (pushed - popped)) < 1e-6 * pushed


def test_net_rate_matches_the_models_elbo(models):
    model = models["w32a32"]
    images = _images(64, seed=9)
    elbo = np.mean([model.log_prob(images, seed=s).numpy() for s in range(20)])  # nats per image
    neg_elbo_bpd = -elbo / (model.num_dims * math.log(2.0))
    # Each run codes one posterior sample per image (std ~0.7% here); the order of the
    # images changes the bits popped, so four orders give four independent runs.
    codec = compression.BitsBackCodec(model, batch_size=8)
    rng = np.random.default_rng(0)
    nets = []
    for _ in range(4):
        codec.compress(images[rng.permutation(len(images))], allow_stored=False)
        nets.append(codec.last_stats.net_bits_per_dim)
        # the initial bits are about one image's posterior information (the ramp), reported apart.
        per_image_posterior = codec.last_stats.information["latent_posterior"] / len(images)
        assert codec.last_stats.initial_bits < 3 * per_image_posterior + 1024
    ratios = np.array(nets) / neg_elbo_bpd
    assert abs(ratios.mean() - 1.0) < 0.02 and np.all(abs(ratios - 1.0) < 0.04), (nets, neg_elbo_bpd)


# ---------------------------------------------------------------- bad input


def _crc_fixed(data):
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_bad_files_raise_value_errors_that_say_which(models, encoded):
    model = models["w1a1"]
    _, data, _ = encoded["w1a1"]
    cases = {
        "truncated": [data[:-7], data[:20], data[:5]],
        "corrupt": [data[:-40] + bytes([data[-40] ^ 0x10]) + data[-39:]],
        "version 7": [data[:3] + bytes([7]) + data[4:]],
        "magic": [b"PNG" + data[3:], b"", b"\x00" * 100],
    }
    for message, blobs in cases.items():
        for blob in blobs:
            with pytest.raises(ValueError, match=message):
                compression.decompress(model, blob)
    with pytest.raises(ValueError, match="trailing"):
        compression.decompress(model, data + b"\x00")
    # damage that passes the CRC is caught by the decoder's final check.
    payload_end = len(data) - 4
    forged = _crc_fixed(data[:payload_end - 8] + bytes([data[payload_end - 8] ^ 0x01]) + data[payload_end - 7:])
    with pytest.raises(ValueError, match="corrupt|initial stack"):
        compression.decompress(model, forged)


def test_failed_decoding_names_the_version_that_wrote_the_file(models, encoded):
    """A file records the keras_bdgm version that wrote it; when decoding does not end on the
    initial stack, the error names that version if it is not this one (the network arithmetic
    may have changed between versions)."""
    from keras_bdgm.compression import container

    model = models["w1a1"]
    _, data, _ = encoded["w1a1"]
    header, words = container.unpack(data)
    assert header["params"]["keras_bdgm"] == keras_bdgm.__version__
    words = words.copy()
    words[len(words) // 2] ^= 1  # decodes to other symbols (or runs dry), as other arithmetic would
    older = dict(header, params=dict(header["params"], keras_bdgm="0.1.0"))
    with pytest.raises(ValueError, match="corrupt") as failure:
        compression.decompress(model, container.pack(older, words))
    assert f"keras_bdgm 0.1.0 (this is {keras_bdgm.__version__})" in str(failure.value)


def test_decoding_with_another_model_raises(models, encoded):
    _, data, _ = encoded["w1a1"]
    other_weights = _tiny_model("w1a1", seed=11)
    with pytest.raises(ValueError, match="different model"):
        compression.decompress(other_weights, data)
    same_weights_other_precision = ResNetVAE(SHAPE, precision="w1a32", **TINY)
    same_weights_other_precision.set_weights(models["w1a1"].get_weights())
    with pytest.raises(ValueError, match="different model"):
        compression.decompress(same_weights_other_precision, data)


def test_bad_images_are_rejected_before_anything_is_coded(models):
    trace = []
    codec = compression.BitsBackCodec(models["w1a1"], trace=trace)
    good = _images(2)
    for bad, message in [(good.astype(np.float32), "uint8"), (good[0], r"\[N >= 1, 8, 8, 1\]"),
                         (np.zeros((2, 8, 8, 3), np.uint8), "8, 8, 1"), (good[:0], "N >= 1"),
                         (good.tolist(), "numpy array")]:
        with pytest.raises(ValueError, match=message):
            codec.compress(bad)
    assert trace == [] and codec.last_stats is None
    with pytest.raises(ValueError, match="uint8"):
        compression.compress(models["w1a1"], good.astype(np.int64))
    np.testing.assert_array_equal(compression.decompress(models["w1a1"], codec.compress(tf.constant(good), allow_stored=False)), good)


def test_container_and_atomic_write(tmp_path):
    words = np.array([1, 2, 3, 2**32 - 1], np.uint32)
    header = {"codec": "bits-back-resnet-vae", "image_shape": [300, 2, 3], "count": 200,
              "model": {"fingerprint": "0123456789abcdef" * 4}, "params": {"k": [1, 2]}}
    blob = container.pack(header, words)
    back_header, back = container.unpack(blob)
    np.testing.assert_array_equal(back, words)
    assert back_header == {**header, "model": {"fingerprint": "0123456789abcdef"}, "format": 2}
    # the layout of format 2, byte by byte (module docstring)
    params = b'{"k":[1,2]}'
    expected = (b"KBC\x02\x01" + struct.pack("<HHB", 300, 2, 3) + bytes([200 & 0x7F | 0x80, 200 >> 7])
                + bytes.fromhex("0123456789abcdef") + bytes([len(params)]) + params + bytes([16]) + words.tobytes())
    assert blob == expected + struct.pack("<I", zlib.crc32(expected))
    path = tmp_path / "out.kbc"
    compression.write_atomic(path, blob)
    compression.write_atomic(path, blob)  # replaces
    assert path.read_bytes() == blob and os.listdir(tmp_path) == ["out.kbc"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_codec_never_writes_more_than_the_raw_pixels_plus_a_small_header(models, precision):
    codec = compression.BitsBackCodec(models[precision], batch_size=4)
    for name, images in tiny.unusual_images(SHAPE, seed=3).items():
        data = codec.compress(images)
        raw = images.size
        assert len(data) <= raw + 24, (name, len(data), raw)
        np.testing.assert_array_equal(compression.decompress(models[precision], data), images, err_msg=name)
        np.testing.assert_array_equal(codec.decompress(data), images, err_msg=name)
        model_code = codec.compress(images, allow_stored=False)  # what the model alone would write
        assert codec.last_stats.stored is False
        stored = compression.stored_file(images)
        assert data == (model_code if len(model_code) <= len(stored) else stored), name
        if data == stored:
            header, pixels = container.unpack(data)
            assert header["codec"] == container.STORED and header["model"] == {}
            np.testing.assert_array_equal(pixels, images)


def test_stored_files_decode_without_the_model_and_keep_extra_params(models):
    images = np.random.default_rng(0).integers(0, 256, (2, *SHAPE), dtype=np.uint8)
    data = compression.stored_file(images, {"names": ["a.png", "b.png"]})
    header, pixels = container.unpack(data)
    assert header["params"] == {"names": ["a.png", "b.png"]} and header["count"] == 2
    np.testing.assert_array_equal(compression.decompress(None, data), images)
    codec = compression.BitsBackCodec(models["w1a1"])
    np.testing.assert_array_equal(codec.decompress(data), images)
    assert codec.last_stats.stored and codec.last_stats.file_bytes == len(data)


def test_a_model_that_gives_non_finite_numbers_stores_the_pixels(models):
    model = _tiny_model("w32a32", seed=2)
    for weight in model.weights:
        if "gain" in weight.name:
            weight.assign(np.full(weight.shape, np.nan, np.float32))
    images = _images(3)
    codec = compression.BitsBackCodec(model, batch_size=4)
    data = codec.compress(images)
    assert codec.last_stats.stored and container.unpack(data)[0]["codec"] == container.STORED
    with pytest.raises(ValueError, match="non-finite"):
        codec.compress(images, allow_stored=False)


def test_format_1_files_still_decode(models):
    """Files of keras_bdgm 0.1 and 0.2 (container format 1: a JSON header) still decode."""
    model = models["w1a1"]
    images = _images(5, seed=9)
    current = compression.BitsBackCodec(model, batch_size=4).compress(images, allow_stored=False)
    header, words = container.unpack(current)
    v1_header = {"codec": header["codec"], "image_shape": header["image_shape"], "count": header["count"],
                 "model": {"class": "ResNetVAE", "fingerprint": compression.fingerprint(model)},
                 "params": header["params"], "payload_words": int(words.size)}
    blob = json.dumps(v1_header, sort_keys=True, separators=(",", ":")).encode()
    body = b"KBDGMIC\x00" + struct.pack("<II", 1, len(blob)) + blob + words.astype("<u4").tobytes()
    v1 = body + struct.pack("<I", zlib.crc32(body))
    np.testing.assert_array_equal(compression.decompress(model, v1), images)
    with pytest.raises(ValueError, match="different model"):
        compression.decompress(_tiny_model("w1a1", seed=11), v1)
