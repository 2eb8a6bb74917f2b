"""Tests of keras_bdgm.distributions against numpy oracles."""

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm.distributions import (
    DiscretizedLogistic,
    free_bits_kl,
    logistic_from_raw,
    sample_with_kl,
)

GRID = np.arange(256) / 127.5 - 1.0
# (loc, scale): centred, off-centre, beyond the edges, very sharp, very wide.
CASES = [(0.0, 0.1), (0.37, 0.02), (-0.9, 0.3), (1.4, 0.05), (-2.0, 0.5), (0.2, 1e-3), (0.0, 5.0)]


def _sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


def _oracle_probs(loc, scale):
    """P(x) for the 256 grid values: sigmoid differences, tails in the edge bins (float64).

    Above loc the difference is taken between survival functions (1 - sigmoid(t) =
    sigmoid(-t)), so float64 resolves small bins on both sides without cancellation.
    """
    a = (GRID + 1 / 255 - loc) / scale
    b = (GRID - 1 / 255 - loc) / scale
    a[-1], b[0] = np.inf, -np.inf
    with np.errstate(over="ignore"):
        cdf_form = _sigmoid(a) - _sigmoid(b)
        survival_form = _sigmoid(-b) - _sigmoid(-a)
    return np.where(GRID > loc, survival_form, cdf_form)


@pytest.mark.parametrize("loc,scale", CASES)
def test_discretized_logistic_log_prob_matches_numpy(loc, scale):
    expected = _oracle_probs(loc, scale)
    got64 = DiscretizedLogistic(tf.constant(loc, tf.float64), tf.constant(scale, tf.float64)).log_prob(GRID)
    got32 = DiscretizedLogistic(loc, scale).log_prob(GRID.astype(np.float32))
    resolved = expected > 1e-250  # where float64 still resolves p
    np.testing.assert_allclose(got64.numpy()[resolved], np.log(expected[resolved]), rtol=1e-9, atol=1e-9)
    usable = expected > 1e-12
    np.testing.assert_allclose(got32.numpy()[usable], np.log(expected[usable]), rtol=1e-4, atol=2e-4)
    # far in the tails, where the differences underflow, log-probabilities stay finite.
    assert np.all(np.isfinite(got32.numpy()))


@pytest.mark.parametrize("loc,scale", CASES)
def test_discretized_logistic_sums_to_one(loc, scale):
    d = DiscretizedLogistic(tf.fill([256], loc), scale)
    total = tf.reduce_sum(tf.exp(d.log_prob(GRID.astype(np.float32))))
    np.testing.assert_allclose(total.numpy(), 1.0, atol=1e-5)


def test_discretized_logistic_gradients_finite_in_extremes():
    loc = tf.Variable([[-3.0, 3.0, 0.0, 0.999]])
    log_scale = tf.Variable([[-9.0, 4.0, -9.0, -9.0]])
    x = tf.constant([[1.0, -1.0, 0.5, 1.0]])
    with tf.GradientTape() as tape:
        lp = DiscretizedLogistic(loc, tf.exp(log_scale)).log_prob(x)
    grads = tape.gradient(lp, [loc, log_scale])
    assert np.all(np.isfinite(lp.numpy()))
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_discretized_logistic_sample_and_mode():
    loc, scale = 0.3, 0.05
    d = DiscretizedLogistic(tf.fill([20000], loc), scale)
    samples = d.sample(seed=(1, 2)).numpy()
    k = np.round((samples + 1) * 127.5)
    np.testing.assert_allclose(samples, k / 127.5 - 1, atol=1e-6)  # on the grid
    freq = np.bincount(k.astype(int), minlength=256) / samples.size
    np.testing.assert_allclose(freq, _oracle_probs(loc, scale), atol=0.01)
    mode = DiscretizedLogistic([-5.0, 0.3, 5.0], 0.1).mode().numpy()
    np.testing.assert_allclose(mode, [-1.0, np.round(1.3 * 127.5) / 127.5 - 1, 1.0], atol=1e-6)


def _logistic_logpdf(z, loc, scale):
    t = (z - loc) / scale
    return -t - np.log(scale) - 2.0 * np.logaddexp(0.0, -t)


def test_logistic_from_raw_scale():
    raw = np.array([-30.0, -1.0, 0.0, 2.5], np.float32)
    d = logistic_from_raw(np.zeros(4, np.float32), raw)
    np.testing.assert_allclose(d.scale.numpy(), 0.01 + np.log1p(np.exp(raw)), rtol=1e-6)
    d_cold = logistic_from_raw(np.zeros(4, np.float32), raw, temperature=0.5)
    np.testing.assert_allclose(d_cold.scale.numpy(), 0.5 * d.scale.numpy(), rtol=1e-6)


@pytest.mark.parametrize("q,p", [((0.3, 0.5), (-0.2, 1.3)), ((1.0, 0.2), (0.0, 0.25))])
def test_single_sample_kl_matches_numerical_integral(q, p):
    z = np.linspace(-80.0, 80.0, 2_000_001)
    log_q, log_p = _logistic_logpdf(z, *q), _logistic_logpdf(z, *p)
    expected = np.trapz(np.exp(log_q) * (log_q - log_p), z)
    n = 200_000
    posterior = logistic_from_raw(np.float32(q[0]), np.float32(np.log(np.expm1(q[1] - 0.01))))
    prior = logistic_from_raw(np.float32(p[0]), np.float32(np.log(np.expm1(p[1] - 0.01))))
    zs, kl = sample_with_kl(posterior.copy(loc=tf.fill([n], q[0])), prior, seed=(3, 4))
    kl = kl.numpy().astype(np.float64)
    stderr = kl.std() / np.sqrt(n)
    assert zs.shape == (n,)
    assert abs(kl.mean() - expected) < 4 * stderr + 1e-4, (kl.mean(), expected, stderr)


def test_free_bits_floors_each_channel():
    rng = np.random.RandomState(0)
    kl = rng.gamma(1.0, 0.01, size=(4, 3, 3, 3)).astype(np.float32)
    kl[..., 1] *= 100.0  # only channel 1 is above the floor
    kl_min = 0.5
    per_channel = kl.sum(axis=(1, 2)).mean(axis=0)
    assert per_channel[0] < kl_min < per_channel[1] and per_channel[2] < kl_min
    kl_t = tf.constant(kl)
    with tf.GradientTape() as tape:
        tape.watch(kl_t)
        value = free_bits_kl(kl_t, kl_min)
    np.testing.assert_allclose(value.numpy(), np.maximum(per_channel, kl_min).sum(), rtol=1e-6)
    grad = tape.gradient(value, kl_t).numpy()
    np.testing.assert_allclose(grad[..., 1], 1.0 / kl.shape[0])  # mean over the batch
    np.testing.assert_array_equal(grad[..., [0, 2]], 0.0)  # floored channels: no gradient
    np.testing.assert_allclose(free_bits_kl(kl_t, 0.0).numpy(), per_channel.sum(), rtol=1e-6)
