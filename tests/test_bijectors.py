"""Flow++ bijectors: one battery for every bijector, and the mixture-logistic math.

Oracles: round trips with the TFP cache broken (tf.identity), a float64 autodiff Jacobian
(log|det| by numpy's slogdet), and direct numpy formulas for the mixture.
"""

import keras_bdgm
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm import bijectors as kb
from keras_bdgm.bijectors import mixture_logistic as mixlog

tfb = tfp.bijectors


@pytest.fixture
def floatx():
    """Runs a test with Keras layers in the given float dtype."""
    old = tf.keras.backend.floatx()

    def set_dtype(dtype):
        tf.keras.backend.set_floatx(dtype)

    yield set_dtype
    tf.keras.backend.set_floatx(old)


def _normal(shape, dtype, scale=1.0):
    return tf.constant(np.random.normal(size=shape) * scale, dtype)


def _randomize(layer, scale=0.3):
    """Moves a layer's variables away from their (often trivial) initial values."""
    for v in layer.trainable_variables:
        v.assign(v + scale * tf.random.normal(v.shape, dtype=v.dtype))


def _normalize(dtype):
    b = kb.Normalize(event_shape=(2, 2, 2))
    _randomize(b.params)
    return b, _normal((3, 2, 2, 2), dtype)


def _normalize_initialized(dtype):
    b = kb.Normalize(event_shape=(2, 2, 2))
    x = _normal((5, 2, 2, 2), dtype, 3.0) + 2.0
    keras_bdgm.initialize(b.params, x)
    return b, x


def _inv_conv(dtype):
    b = kb.InvertibleConv1x1(channels=4, groups=2)
    _randomize(b.params)
    return b, _normal((3, 2, 2, 4), dtype)


def _coupling(dtype, context=False):
    net = kb.CouplingNetwork(2, width=4, num_blocks=1, num_components=3, context=context)
    x = _normal((3, 2, 2, 4), dtype)
    ctx = _normal((3, 2, 2, 3), dtype) if context else None
    net(x[..., :2], context=ctx)
    keras_bdgm.initialize(net, x[..., :2], context=ctx)
    net.conv_out.gain.assign(tf.ones_like(net.conv_out.gain))  # wide, non-trivial parameters
    _randomize(net, 0.1)
    return kb.MixLogisticCoupling(net, context=ctx), x


def _steps(dtype):
    steps = kb.CouplingSteps((2, 2, 4), num_steps=2, width=4, num_blocks=1, num_components=3)
    x = _normal((3, 2, 2, 4), dtype)
    b = kb.chain(steps.bijectors())
    b.forward(x)
    _randomize(steps, 0.05)
    return b, x


def _dequantizer(dtype):
    deq = kb.Dequantizer((2, 4, 1), num_steps=2, width=4, num_blocks=1, num_components=3,
                         context_width=4, context_blocks=1)
    pixels = tf.constant(np.random.randint(0, 256, (3, 2, 4, 1)), dtype)
    b = deq.bijector(pixels)
    eps = _normal((3, 2, 4, 1), dtype)
    b.forward(eps)
    _randomize(deq, 0.05)
    return deq.bijector(pixels), eps


def _preprocess(dtype):
    return kb.logit_preprocess(dtype=dtype), tf.constant(np.random.uniform(0, 256, (3, 2, 2, 1)), dtype)


BIJECTORS = {
    "normalize": _normalize,
    "normalize_initialized": _normalize_initialized,
    "invertible_conv_1x1": _inv_conv,
    "stripe_split": lambda d: (kb.stripe_split((2, 4, 2)), _normal((3, 2, 4, 2), d)),
    "squeeze": lambda d: (kb.squeeze((2, 4, 2)), _normal((3, 2, 4, 2), d)),
    "swap_halves": lambda d: (kb.swap_halves(4), _normal((3, 2, 2, 4), d)),
    "channel_split": lambda d: (kb.channel_split(), _normal((3, 2, 2, 4), d)),
    "mix_logistic_coupling": _coupling,
    "mix_logistic_coupling_context": lambda d: _coupling(d, context=True),
    "coupling_steps": _steps,
    "dequantization_flow": _dequantizer,
    "logit_preprocess": _preprocess,
}


@pytest.mark.parametrize("name", sorted(BIJECTORS))
def test_round_trips_and_log_dets(name, floatx):
    floatx("float32")
    bijector, x = BIJECTORS[name](tf.float32)
    y = bijector.forward(x)
    x_back = bijector.inverse(tf.identity(y))
    assert np.all(np.isfinite(y.numpy())) and np.all(np.isfinite(x_back.numpy()))
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), rtol=1e-5, atol=1e-5)
    # The other round trip, from a point in the forward's range.
    y0 = tf.identity(bijector.forward(tf.identity(x) * 0.9))
    y_back = bijector.forward(tf.identity(bijector.inverse(y0)))
    np.testing.assert_allclose(y_back.numpy(), y0.numpy(), rtol=1e-5, atol=1e-5)
    fldj = bijector.forward_log_det_jacobian(x, event_ndims=3).numpy()
    ildj = bijector.inverse_log_det_jacobian(tf.identity(y), event_ndims=3).numpy()
    assert fldj.shape in ((x.shape[0],), ()) and np.all(np.isfinite(fldj))
    np.testing.assert_allclose(fldj, -ildj, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", sorted(BIJECTORS))
def test_log_det_matches_float64_jacobian(name, floatx):
    floatx("float64")
    bijector, x = BIJECTORS[name](tf.float64)
    n = x.shape[0]
    fldj = np.broadcast_to(bijector.forward_log_det_jacobian(x, event_ndims=3).numpy(), (n,))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = bijector.forward(x)
    jac = tape.jacobian(y, x, experimental_use_pfor=False).numpy()
    d = int(np.prod(x.shape[1:]))
    jac = jac.reshape(n, d, n, d)
    for i in range(n):
        sign, logdet = np.linalg.slogdet(jac[i, :, i, :])
        assert sign != 0
        np.testing.assert_allclose(fldj[i], logdet, rtol=1e-8, atol=1e-8)
        others = np.delete(jac[i], i, axis=1)  # images do not interact
        assert np.all(others == 0)


def test_normalize_data_dependent_init_standardizes():
    b = kb.Normalize(event_shape=(2, 3, 1))
    x = tf.random.normal((64, 2, 3, 1)) * tf.constant([[[1.0], [5.0], [0.1]]]) + 3.0
    keras_bdgm.initialize(b.params, x)
    y = b.forward(x).numpy()
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(0), 1.0, atol=1e-3)


def test_invertible_conv_starts_near_identity():
    kernel = kb.InvertibleConv1x1(channels=6, groups=2).params.kernel.numpy()
    assert kernel.shape == (2, 3, 3)
    np.testing.assert_allclose(kernel, np.broadcast_to(np.eye(3), (2, 3, 3)), atol=0.006)
    assert np.abs(kernel - np.eye(3)).max() > 0  # the noise is there


def test_stripe_split_and_squeeze_layouts():
    x = np.arange(2 * 4 * 3).reshape(1, 2, 4, 3).astype(np.float32)
    y = kb.stripe_split((2, 4, 3)).forward(x).numpy()
    np.testing.assert_array_equal(y[..., :3], x[:, :, 0::2])  # even columns: first half
    np.testing.assert_array_equal(y[..., 3:], x[:, :, 1::2])
    np.testing.assert_array_equal(kb.squeeze((2, 4, 3)).forward(x).numpy(),
                                  tf.nn.space_to_depth(x, 2).numpy())


def test_coupling_network_shapes_and_channel_check():
    net = kb.CouplingNetwork(3, width=8, num_blocks=2, num_components=5)
    out = net(tf.zeros((2, 4, 4, 3)))
    assert out.shape == (2, 4, 4, 3 * (2 + 3 * 5))
    with pytest.raises(ValueError, match="6 channels"):
        kb.MixLogisticCoupling(net).forward(tf.zeros((2, 4, 4, 4)))


# ---- mixture of logistics -------------------------------------------------------------


def _mixture(rng, shape, k, log_scale_range=(-2.0, 1.0), dtype=np.float64):
    logits = rng.normal(size=shape + (k,))
    means = rng.uniform(-3, 3, shape + (k,))
    log_scales = rng.uniform(*log_scale_range, shape + (k,))
    return logits.astype(dtype), means.astype(dtype), log_scales.astype(dtype)


def _numpy_mixture(x, logits, means, log_scales):
    """Direct formulas: pdf = sum pi s^-1 e^-z / (1 + e^-z)^2, cdf = sum pi / (1 + e^-z)."""
    pi = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    s = np.exp(log_scales)
    z = (x[..., None] - means) / s
    pdf = (pi * np.exp(-z) / (s * (1 + np.exp(-z)) ** 2)).sum(-1)
    cdf = (pi / (1 + np.exp(-z))).sum(-1)
    return np.log(pdf), np.log(cdf), np.log1p(-cdf)


def test_mixture_log_pdf_and_log_cdf_match_numpy():
    rng = np.random.default_rng(1)
    logits, means, log_scales = _mixture(rng, (500,), 6)
    x = rng.uniform(-4, 4, (500,))
    log_pdf, log_cdf, log_sf = _numpy_mixture(x, logits, means, log_scales)
    np.testing.assert_allclose(mixlog.log_pdf(x, logits, means, log_scales), log_pdf, rtol=1e-10)
    np.testing.assert_allclose(mixlog.log_cdf(x, logits, means, log_scales), log_cdf, rtol=1e-10)
    np.testing.assert_allclose(mixlog.log_survival(x, logits, means, log_scales), log_sf, rtol=1e-10)
    np.testing.assert_allclose(mixlog.logit_cdf(x, logits, means, log_scales), log_cdf - log_sf,
                               rtol=1e-10)
    # The pdf is the derivative of the CDF.
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        cdf = tf.exp(mixlog.log_cdf(xt, logits, means, log_scales))
    np.testing.assert_allclose(tape.gradient(cdf, xt).numpy(), np.exp(log_pdf), rtol=1e-8)


def test_mixture_logit_cdf_finite_in_tails():
    rng = np.random.default_rng(2)
    logits, means, log_scales = _mixture(rng, (4,), 3, dtype=np.float32)
    x = np.array([-1e4, -300.0, 300.0, 1e4], np.float32)
    y = mixlog.logit_cdf(x, logits, means, log_scales).numpy()
    assert np.all(np.isfinite(y)) and y[0] < y[1] < 0 < y[2] < y[3]


@pytest.mark.parametrize("k", [8, 32])
def test_inverse_cdf_round_trip_float32(k):
    rng = np.random.default_rng(k)
    n = 2000
    logits, means, log_scales = _mixture(rng, (n,), k, log_scale_range=(-7.0, 3.0), dtype=np.float32)
    # x drawn from the mixture's components, so every scale's region is exercised.
    comp = rng.integers(0, k, n)
    mu = np.take_along_axis(means, comp[:, None], 1)[:, 0]
    s = np.exp(np.take_along_axis(log_scales, comp[:, None], 1)[:, 0])
    u = rng.uniform(0.001, 0.999, n)
    x = (mu + s * np.log(u / (1 - u))).astype(np.float32)
    y = mixlog.logit_cdf(x, logits, means, log_scales)
    x_back, converged = mixlog.inverse_logit_cdf(y, logits, means, log_scales)
    assert x_back.dtype == tf.float32 and converged.numpy().all()
    error = np.abs(x_back.numpy() - x) / np.maximum(1.0, np.abs(x))
    assert error.max() <= 1e-5
    # F(inverse_cdf(p)) = p, in float64 (the solver's own accuracy).
    params64 = [t.astype(np.float64) for t in (logits, means, log_scales)]
    p = rng.uniform(0.01, 0.99, n)
    x_p, converged = mixlog.inverse_cdf(p, *params64)
    assert converged.numpy().all()
    np.testing.assert_allclose(np.exp(mixlog.log_cdf(x_p, *params64)), p, atol=1e-9)


def test_inverse_cdf_reports_non_convergence():
    rng = np.random.default_rng(3)
    logits, means, log_scales = _mixture(rng, (50,), 8, log_scale_range=(-7.0, 3.0), dtype=np.float32)
    y = rng.normal(size=(50,)).astype(np.float32)
    _, converged = mixlog.inverse_logit_cdf(y, logits, means, log_scales, max_iterations=2)
    assert not converged.numpy().all()
    coupling, x = _coupling(tf.float32)
    coupling = kb.MixLogisticCoupling(coupling.network, max_iterations=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="did not converge"):
        coupling.inverse(tf.identity(coupling.forward(x)))


def test_bijectors_expose_their_networks_variables():
    steps = kb.CouplingSteps((2, 2, 4), num_steps=2, width=4, num_blocks=1, num_components=3)
    flow = kb.chain(steps.bijectors())
    flow.forward(tf.zeros((1, 2, 2, 4)))  # builds the networks
    ids = {id(v) for v in flow.trainable_variables}
    assert ids == {id(v) for v in steps.trainable_variables}
    # Hand count: per step Normalize 2, conv 1, network conv_in 3 + block (3 + 3) + norm 2 + conv_out 3.
    assert len(ids) == 2 * (2 + 1 + 3 + 6 + 2 + 3)
