"""The model battery: every model at every precision keeps GenerativeModel's contract
(keras_bdgm/models/base.py): output shapes and dtypes, finite losses, the bound in nats and
bits/dim, seeds read one way, the importance-weighted bound, `.keras` and packed round
trips, and bad images rejected with errors that name the problem.

Each test runs on every (model, precision) of `CASES`, on the shared tiny configurations
(tests/tiny.py). A model is built and initialized once per case (the `built` fixture) and its
weights are then moved away from their initial values, so a round trip that missed a weight
would show. Tests that draw from a model's noise generator save and restore its state or only
compare draws within the test. A model without latents (`num_latent_layers == 0`, the
PixelCNN) has an exact bound: its log-weights are log p(x) whatever the seed, and the tests
check that instead of fresh noise. Model-specific behaviour stays in test_flowpp.py,
test_resnet_vae.py and test_pixelcnn.py.
"""

import math
import re

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow; lets load_model find the models)
import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm import memory
from keras_bdgm.models.base import importance_chunks, stateless_seed

import tiny

CASES = [pytest.param(name, precision, id=f"{name}-{precision}")
         for name in tiny.MODELS for precision in tiny.PRECISIONS]
N = 4
X = tiny.tiny_images(N, seed=11)
D = math.prod(tiny.SHAPE)


def _build(name, precision):
    model = tiny.tiny_model(name, precision, images=tiny.tiny_images(8), seed=0)
    rng = np.random.default_rng(1)
    for v in model.trainable_variables:  # away from init, so a weight a round trip misses shows
        v.assign_add(0.01 * rng.standard_normal(v.shape.as_list()).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def built():
    """built(name, precision): the case's initialized tiny model, built once per module."""
    cache = {}

    def get(name, precision):
        if (name, precision) not in cache:
            cache[name, precision] = _build(name, precision)
        return cache[name, precision]

    yield get
    cache.clear()


def _exact(model):
    """A model without latents: every importance weight is log p(x), whatever the seed."""
    return model.num_latent_layers == 0


def _numpy_bound(log_w):
    """logsumexp over axis 0 minus log K, in float64: the K-sample bound of [K, N] log-weights."""
    log_w = np.asarray(log_w, np.float64)
    top = log_w.max(axis=0)
    return top + np.log(np.exp(log_w - top).sum(axis=0)) - math.log(len(log_w))


def _assert_float32(values, shape):
    assert values.dtype == tf.float32 and tuple(values.shape) == shape, (values.dtype, values.shape)
    assert np.all(np.isfinite(values.numpy()))


# ---------------------------------------------------------------- the contract's attributes


@pytest.mark.parametrize("name, precision", CASES)
def test_built_at_construction_with_its_config(name, precision):
    model = tiny.tiny_model(name, precision, seed=5)  # not initialized, never called
    assert model.built and len(model.trainable_variables) > 0
    assert model.count_params() == memory.footprint(model).parameters > 0  # metric state not counted
    assert (memory.footprint(model).binary_weights > 0) == (precision != "w32a32")
    assert model.precision == precision and model.image_shape == tiny.SHAPE and model.num_dims == D
    assert all(model.config[k] == v for k, v in tiny.overrides(name).items())
    assert model.hparams is model.config
    assert isinstance(model.num_latent_layers, int) and model.num_latent_layers >= 0
    if _exact(model):
        assert model.latent_shape == ()
    else:
        assert len(model.latent_shape) == 3 and all(isinstance(d, int) and d > 0 for d in model.latent_shape)
    assert model.loss_names[0] == "bits_per_dim"
    # The same seed builds the same weights; another seed other weights.
    same, other = tiny.tiny_model(name, precision, seed=5), tiny.tiny_model(name, precision, seed=6)
    assert len(same.weights) == len(model.weights)
    for a, b in zip(model.weights, same.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model.weights, other.weights))


# ---------------------------------------------------------------- losses, bounds and bits/dim


@pytest.mark.parametrize("name, precision", CASES)
def test_compute_losses_are_finite_float32_scalars_of_the_single_sample_bound(built, name, precision):
    model = built(name, precision)
    x = model.check_images(X)
    state = model.rng.state.numpy()
    losses = {}
    for key, training in (("eval", False), ("train", True)):
        model.rng.state.assign(state)  # the same noise for both
        losses[key] = model.compute_losses(x, training=training)
    for values in losses.values():
        assert set(values) == set(model.loss_names)
        for key, value in values.items():
            assert value.dtype == tf.float32 and value.shape == (), key
            assert np.isfinite(value.numpy()), key
    # The evaluation objective is the batch mean of -model(x) / (D ln 2) for the same noise.
    model.rng.state.assign(state)
    nats = model(X).numpy().astype(np.float64)
    np.testing.assert_allclose(losses["eval"]["bits_per_dim"], np.mean(-nats) / (D * math.log(2.0)), rtol=1e-6)
    # Training may only add to it (the VAE's free bits raise small KLs to kl_min; no dropout here).
    assert losses["train"]["bits_per_dim"] >= losses["eval"]["bits_per_dim"] * (1 - 1e-6)


@pytest.mark.parametrize("name, precision", CASES)
def test_log_prob_and_bits_per_dim(built, name, precision):
    model = built(name, precision)
    log_prob = model.log_prob(X, seed=3)
    _assert_float32(log_prob, (N,))
    # A lower bound on log P(x) <= 0; unseen uniform-random pixels (8 bits of entropy each) cost
    # these models far more than 1 bit per dimension.
    assert np.all(log_prob.numpy() < -D * math.log(2.0)), log_prob
    for kwargs in (dict(seed=3), dict(num_samples=3, seed=(5, 6), samples_per_chunk=2)):
        bpd = model.bits_per_dim(X, **kwargs)
        _assert_float32(bpd, (N,))
        nats = model.log_prob(X, **kwargs).numpy().astype(np.float64)
        np.testing.assert_allclose(bpd.numpy(), -nats / (D * math.log(2.0)), rtol=1e-6)


@pytest.mark.parametrize("name, precision", CASES)
def test_log_prob_seeds(built, name, precision):
    model = built(name, precision)
    first = model.log_prob(X, num_samples=2, seed=4).numpy()
    np.testing.assert_array_equal(model.log_prob(X, num_samples=2, seed=4).numpy(), first)
    if _exact(model):  # no noise: every seed (and none) gives log p(x)
        for seed in (5, (0, 4), None):
            np.testing.assert_array_equal(model.log_prob(X, num_samples=2, seed=seed).numpy(), first)
        return
    assert not np.array_equal(model.log_prob(X, num_samples=2, seed=5).numpy(), first)
    # An int seed s is the pair (s, 0), however it is given; (0, s) is another seed.
    for seed in ((4, 0), np.int64(4), tf.constant(4), np.array([4, 0]), tf.constant([4, 0], tf.int64)):
        np.testing.assert_array_equal(model.log_prob(X, num_samples=2, seed=seed).numpy(), first)
    assert not np.array_equal(model.log_prob(X, num_samples=2, seed=(0, 4)).numpy(), first)
    # No seed: fresh noise from the model's generator each call.
    assert not np.array_equal(model.log_prob(X).numpy(), model.log_prob(X).numpy())


def _call_then_log_prob(model):
    """(model(X), log_prob(X) with the seed model(X) drew from the model's generator)."""
    state = model.rng.state.numpy()
    nats = model(X)
    after = model.rng.state.numpy()
    model.rng.state.assign(state)
    seed = model.rng.uniform_full_int([2], tf.int32)  # one draw: the seed model(X) used
    np.testing.assert_array_equal(model.rng.state.numpy(), after)
    return nats, model.log_prob(X, seed=seed)


@pytest.mark.parametrize("name, precision", [case for case in CASES if case.values[0] == "flowpp"])
def test_call_is_log_prob_for_the_seed_it_drew(built, name, precision):
    """Flow++'s model(x) is log_prob(x) for the seed it drew. (The VAE's draws its latents
    with that seed directly, log_prob with the first of the seeds split from it for the
    chunks: the same estimator, other noise; the next test covers both.)"""
    model = built(name, precision)
    nats, log_prob = _call_then_log_prob(model)
    _assert_float32(nats, (N,))
    np.testing.assert_array_equal(nats.numpy(), log_prob.numpy())


@pytest.mark.parametrize("name, precision", [case for case in CASES if case.values[0] == "pixelcnn"])
def test_call_of_an_exact_model_is_log_prob_and_draws_no_noise(built, name, precision):
    model = built(name, precision)
    state = model.rng.state.numpy()
    nats = model(X)
    _assert_float32(nats, (N,))
    np.testing.assert_array_equal(model.rng.state.numpy(), state)
    np.testing.assert_allclose(nats.numpy(), model.log_prob(X, seed=9).numpy(), rtol=1e-6)


@pytest.mark.parametrize("name, precision", CASES)
def test_call_and_log_prob_estimate_the_same_bound(built, name, precision):
    """model(x) and log_prob(x) (K = 1) draw from the same distribution: over R noise draws
    per image their means agree within 5 standard errors."""
    model = built(name, precision)
    repeats = 32
    tiled = np.tile(X, (repeats, 1, 1, 1))  # row r * N + i is image i
    nats = model(tiled)
    _assert_float32(nats, (repeats * N,))
    a = nats.numpy().astype(np.float64).reshape(repeats, N)
    b = model.log_prob(tiled, seed=(8, 1)).numpy().astype(np.float64).reshape(repeats, N)
    error = np.sqrt((a.var(axis=0, ddof=1) + b.var(axis=0, ddof=1)) / repeats)
    assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) <= 5 * error + 1e-3), (a.mean(0), b.mean(0), error)


@pytest.mark.parametrize("name, precision", CASES)
def test_importance_bound_is_logmeanexp_of_the_single_sample_log_weights(built, name, precision):
    """For a seed and a chunking, log_prob(x, K) is logsumexp_k(log w_k) - log K over the
    model's single-sample log-weights (`log_weights`, one row per sample) in numpy, and at
    least their mean, the ELBO over the same K samples (Jensen, per image)."""
    model = built(name, precision)
    k, seed = 5, (2, 9)
    context = model.importance_context(model.check_images(X))
    for per_chunk in (None, 1, 2):
        chunks = importance_chunks(k, N, per_chunk)
        log_w = np.concatenate([model.log_weights(context, stateless_seed(seed), c).numpy() for c in chunks])
        assert log_w.shape == (k, N) and log_w.dtype == np.float32 and np.all(np.isfinite(log_w))
        # K different samples; without latents K times log p(x)
        assert len({tuple(row) for row in log_w}) == (1 if _exact(model) else k)
        got = model.log_prob(X, num_samples=k, seed=seed, samples_per_chunk=per_chunk)
        _assert_float32(got, (N,))
        np.testing.assert_allclose(got.numpy(), _numpy_bound(log_w), rtol=1e-6)
        elbo = log_w.astype(np.float64).mean(axis=0)
        assert np.all(got.numpy() >= elbo - 1e-3), (got, elbo)
        assert got.numpy().mean() > elbo.mean() or _exact(model)  # equal when exact
    # K = 1: the bound is the one log-weight.
    one = model.log_weights(context, stateless_seed(seed), importance_chunks(1, N)[0]).numpy()
    np.testing.assert_array_equal(model.log_prob(X, seed=seed).numpy(), one[0])


# ---------------------------------------------------------------- samples


@pytest.mark.parametrize("name, precision", CASES)
def test_samples_shape_dtype_and_seeds(built, name, precision):
    model = built(name, precision)
    images = model.sample(3, seed=7)
    assert images.dtype == tf.uint8 and tuple(images.shape) == (3, *tiny.SHAPE)
    images = images.numpy()
    assert images.std() > 0
    np.testing.assert_array_equal(model.sample(3, seed=7).numpy(), images)
    assert not np.array_equal(model.sample(3, seed=8).numpy(), images)
    for seed in ((7, 0), np.int64(7), tf.constant(7), np.array([7, 0]), tf.constant([7, 0], tf.int64)):
        np.testing.assert_array_equal(model.sample(3, seed=seed).numpy(), images)
    assert not np.array_equal(model.sample(3, seed=(0, 7)).numpy(), images)
    assert not np.array_equal(model.sample(3).numpy(), model.sample(3).numpy())
    cold = model.sample(2, temperature=0.5, seed=7)
    assert cold.dtype == tf.uint8 and tuple(cold.shape) == (2, *tiny.SHAPE)


# ---------------------------------------------------------------- saving


def _outputs(model):
    return {
        "log_prob": model.log_prob(X, seed=3).numpy(),
        "iwae": model.log_prob(X, num_samples=3, seed=(1, 2)).numpy(),
        "samples": model.sample(3, seed=4).numpy(),
    }


def _assert_same_outputs(got, want):
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.parametrize("name, precision", CASES)
def test_keras_file_round_trip_gives_identical_outputs(built, name, precision, tmp_path):
    model = built(name, precision)
    want = _outputs(model)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)  # `import keras_bdgm` is all Keras needs
    assert type(loaded) is type(model) and loaded.precision == precision
    assert loaded.get_config() == model.get_config() and loaded.config == model.config
    assert [w.name for w in loaded.weights] == [w.name for w in model.weights]
    _assert_same_outputs(_outputs(loaded), want)


@pytest.mark.parametrize("name, precision", CASES)
def test_packed_round_trip_gives_identical_outputs(built, name, precision, tmp_path):
    model = built(name, precision)
    want = _outputs(model)
    path = tmp_path / "model.bdgm"
    written = memory.save_packed(model, str(path))
    fp = memory.footprint(model)
    assert written == path.stat().st_size and fp.bytes <= written <= 1.01 * fp.bytes + 4096
    fresh = tiny.tiny_model(name, precision, seed=123)  # the same config, other weights
    assert not np.array_equal(fresh.log_prob(X, seed=3).numpy(), want["log_prob"])
    memory.load_packed(fresh, str(path))
    _assert_same_outputs(_outputs(fresh), want)
    binary = [w.latent_variable.numpy() for w in fresh.weights if memory.is_binary(w)]
    assert bool(binary) == (precision != "w32a32")
    if binary:  # only the signs are stored
        assert set(np.unique(np.concatenate([b.ravel() for b in binary]))) == {-1.0, 1.0}


# ---------------------------------------------------------------- bad input

_NAN = X.astype(np.float32)
_NAN[1, 2, 3, 0] = np.nan
_ABOVE = X.astype(np.float32) + 256.0
_BELOW = X.astype(np.int32) - 300


def _range(x):
    return re.escape(f"must lie in 0..255, got range [{x.min()}, {x.max()}]")


BAD_IMAGES = {
    "wrong image shape": (X[:, :4], r"shape \[N, 8, 8, 1\].*got shape \[4, 4, 8, 1\]"),
    "no batch axis": (X[0], r"got shape \[8, 8, 1\].*x\[None\]"),
    "empty batch": (X[:0], r"empty batch"),
    "above 255": (_ABOVE, _range(_ABOVE)),
    "negative": (_BELOW, _range(_BELOW)),
    "scaled to [0, 1]": (X / 255.0, r"whole numbers 0\.\.255"),
    "NaN": (_NAN, r"contain NaN"),
    "strings": (X.astype(str), r"must be numeric .*got dtype (<U3|string)"),  # Keras' call makes a tensor
    "bool": (X > 127, r"must be numeric .*got dtype bool"),
    "string tensor": (tf.strings.as_string(tf.constant(X)), r"must be numeric .*got dtype string"),
}
METHODS = {
    "log_prob": lambda model, x: model.log_prob(x, seed=0),
    "bits_per_dim": lambda model, x: model.bits_per_dim(x, num_samples=2, seed=0),
    "call": lambda model, x: model(x),
}


@pytest.mark.parametrize("name, precision", CASES)
def test_bad_images_raise_value_errors_naming_the_problem(built, name, precision):
    model = built(name, precision)
    for method, run in METHODS.items():
        for problem, (images, message) in BAD_IMAGES.items():
            with pytest.raises(ValueError, match=message):
                run(model, images)
                pytest.fail(f"{method} took {problem}")
    # Whole numbers of any numeric dtype are images.
    np.testing.assert_array_equal(model.log_prob(X.astype(np.float64), seed=0).numpy(),
                                  model.log_prob(X, seed=0).numpy())


@pytest.mark.parametrize("name, precision", CASES)
def test_bad_arguments_raise_value_errors(built, name, precision):
    model = built(name, precision)
    for kwargs, message in [(dict(num_samples=0), "num_samples must be >= 1"),
                            (dict(num_samples=2.0), "num_samples must be an integer"),
                            (dict(num_samples=2, samples_per_chunk=0), "samples_per_chunk must be >= 1"),
                            (dict(seed=(1, 2, 3)), "seed"),
                            (dict(seed=1.5), "seed")]:
        with pytest.raises(ValueError, match=message):
            model.log_prob(X, **kwargs)
    with pytest.raises(ValueError, match="seed"):
        model.sample(2, seed=(1, 2, 3))
