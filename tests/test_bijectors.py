"""Flow++ bijectors: one battery for every bijector, and the mixture-logistic math.

Oracles: round trips with the TFP cache broken (tf.identity), a float64 autodiff Jacobian
(log|det| by numpy's slogdet), and direct numpy formulas for the mixture.
"""

import dataclasses
import json

import keras_bdgm
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm import bijectors as kb
from keras_bdgm.bijectors import mixture_logistic as mixlog
from keras_bdgm.blocks import GatedResidualBlock
from keras_bdgm.models import FlowPlusPlus
from keras_bdgm.models.flowpp import MainFlow

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
    _randomize(b.layer)
    return b, _normal((3, 2, 2, 2), dtype)


def _normalize_initialized(dtype):
    b = kb.Normalize(event_shape=(2, 2, 2))
    x = _normal((5, 2, 2, 2), dtype, 3.0) + 2.0
    keras_bdgm.initialize(b.layer, x)
    return b, x


def _inv_conv(dtype):
    b = kb.InvertibleConv1x1(channels=4, groups=2)
    _randomize(b.layer)
    return b, _normal((3, 2, 2, 4), dtype)


def _coupling(dtype, context=False):
    net = kb.MixLogisticCouplingLayer(2, kb.CouplingConfig(width=4, num_blocks=1, num_components=3),
                                      context=context)
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
    keras_bdgm.initialize(b.layer, x)
    y = b.forward(x).numpy()
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(0), 1.0, atol=1e-3)


def test_invertible_conv_starts_near_identity():
    kernel = kb.InvertibleConv1x1(channels=6, groups=2).layer.kernel.numpy()
    assert kernel.shape == (2, 3, 3)
    np.testing.assert_allclose(kernel, np.broadcast_to(np.eye(3), (2, 3, 3)), atol=0.006)
    assert np.abs(kernel - np.eye(3)).max() > 0  # the noise is there

@pytest.mark.parametrize("groups, c", [(1, 3), (2, 2), (3, 4)])
def test_invertible_conv_multiplies_each_group_by_its_matrix(groups, c):
    # numpy oracle: pixel p's group g becomes x[p, g] @ W_g; the kernel gradient of
    # sum(y * r) is sum_p x[p, g]^T r[p, g], and the inverse multiplies by W_g^-1.
    rng = np.random.default_rng(groups)
    bijector = kb.InvertibleConv1x1(channels=groups * c, groups=groups)
    kernel = rng.normal(size=(groups, c, c)).astype(np.float32) + 2 * np.eye(c, dtype=np.float32)
    bijector.layer.kernel.assign(kernel)
    x = rng.normal(size=(2, 3, 5, groups * c)).astype(np.float32)
    r = rng.normal(size=x.shape).astype(np.float32)
    grouped = x.reshape(2, 3, 5, groups, c)
    expected = np.einsum("nhwgi,gij->nhwgj", grouped, kernel).reshape(x.shape)
    with tf.GradientTape() as tape:
        y = bijector.forward(tf.constant(x))
        loss = tf.reduce_sum(y * r)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    grad = tape.gradient(loss, bijector.layer.kernel).numpy()
    expected_grad = np.einsum("nhwgi,nhwgj->gij", grouped, r.reshape(2, 3, 5, groups, c))
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-4)
    inverse = np.einsum("nhwgi,gij->nhwgj", grouped, np.linalg.inv(kernel)).reshape(x.shape)
    np.testing.assert_allclose(bijector.inverse(tf.constant(x)).numpy(), inverse, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(kb.invertible_conv.block_diagonal(tf.constant(kernel)).numpy(),
                                  _block_diag_oracle(kernel))


def _block_diag_oracle(blocks):
    out = np.zeros((len(blocks) * blocks.shape[1],) * 2, blocks.dtype)
    for g, block in enumerate(blocks):
        out[g * len(block):(g + 1) * len(block), g * len(block):(g + 1) * len(block)] = block
    return out


def test_stripe_split_and_squeeze_layouts():
    x = np.arange(2 * 4 * 3).reshape(1, 2, 4, 3).astype(np.float32)
    y = kb.stripe_split((2, 4, 3)).forward(x).numpy()
    np.testing.assert_array_equal(y[..., :3], x[:, :, 0::2])  # even columns: first half
    np.testing.assert_array_equal(y[..., 3:], x[:, :, 1::2])
    np.testing.assert_array_equal(kb.squeeze((2, 4, 3)).forward(x).numpy(),
                                  tf.nn.space_to_depth(x, 2).numpy())


def test_coupling_layer_shapes_and_channel_check():
    net = kb.MixLogisticCouplingLayer(3, width=8, num_blocks=2, num_components=5)
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
    # The three at once (the coupling's forward pass) are the same functions.
    together = mixlog.log_pdf_cdf_survival(x, logits, means, log_scales)
    for got, expected in zip(together, (log_pdf, log_cdf, log_sf)):
        np.testing.assert_allclose(got, expected, rtol=1e-10)
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
    coupling = kb.MixLogisticCoupling(coupling.layer, max_iterations=1)
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


# ---- CouplingConfig: one object from the preset to every coupling network ---------------


def test_coupling_config_round_trips_and_validates():
    config = kb.CouplingConfig(width=8, num_blocks=3, num_components=5, precision="W1A1", dropout=0.1,
                               attention_heads=2, gate_kernel_size=3, fuse_negation=False,
                               init_scheme="reference")
    assert config.precision == "w1a1"  # stored by its canonical name
    assert kb.CouplingConfig.from_config(config.get_config()) == config
    assert kb.CouplingConfig.from_config(json.loads(json.dumps(config.get_config()))) == config
    assert list(config.get_config()) == list(kb.CouplingConfig.field_names())
    assert kb.CouplingConfig.resolve(config) is config  # no fields: the same object travels on
    assert kb.CouplingConfig.resolve(config.get_config()) == config
    assert kb.CouplingConfig.resolve(None) == kb.CouplingConfig()
    assert kb.CouplingConfig.resolve(config, {"width": 16}) == config.replace(width=16) != config
    assert config.block_kwargs() == dict(precision="w1a1", dropout=0.1, fuse_negation=False,
                                         gate_kernel_size=3, init_scheme="reference")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.width = 4
    for bad in (dict(width=0), dict(num_blocks=-1), dict(dropout=1.0), dict(gate_kernel_size=0),
                dict(attention_heads=-1), dict(num_components=0)):
        with pytest.raises(ValueError, match="CouplingConfig"):
            kb.CouplingConfig(**bad)
    with pytest.raises(ValueError, match="w32a32, w1a32, w1a1"):
        kb.CouplingConfig(precision="w8a8")
    with pytest.raises(ValueError, match="Unknown init scheme"):
        kb.CouplingConfig(init_scheme="paper")
    with pytest.raises(ValueError, match="no field"):
        kb.CouplingConfig.from_config({"widht": 8})
    with pytest.raises(TypeError, match="CouplingConfig"):
        kb.CouplingSteps((2, 2, 4), 1, 32)  # the old positional width


def _built_twin(layer, run):
    """`layer` rebuilt from its get_config, both run once, the twin given layer's weights."""
    twin = type(layer).from_config(layer.get_config())
    expected = run(layer)
    run(twin)
    assert [w.name for w in twin.weights] == [w.name for w in layer.weights]
    twin.set_weights(layer.get_weights())
    return twin, expected


def _tiny_config(**changes):
    return kb.CouplingConfig(width=4, num_blocks=1, num_components=3, **changes)


@pytest.mark.parametrize("precision", ["w32a32", "w1a1"])
def test_layers_rebuild_from_config_with_same_weights_and_outputs(precision):
    config = _tiny_config(precision=precision, attention_heads=2, init_scheme="reference")
    x = _normal((3, 2, 4, 4), tf.float32)
    ctx = _normal((3, 2, 4, 3), tf.float32)
    pixels = tf.constant(np.random.randint(0, 256, (3, 2, 8, 1)), tf.float32)
    eps = _normal((3, 2, 8, 1), tf.float32)

    def run_steps(steps):
        return kb.forward_and_log_det(steps.bijectors(context=ctx if steps.context else None), x)

    cases = {
        "coupling": (kb.MixLogisticCouplingLayer(2, config, context=True, name="c"),
                     lambda layer: (layer(x[..., :2], context=ctx),)),
        "steps": (kb.CouplingSteps((2, 4, 4), 2, config, name="s"), run_steps),
        "context_steps": (kb.CouplingSteps((2, 4, 4), 1, config, context=True, name="cs"), run_steps),
        "context_network": (kb.ContextNetwork((2, 8, 1), kb.context_network_config(config, 4, 2), name="n"),
                            lambda layer: (layer(pixels),)),
        "dequantizer": (kb.Dequantizer((2, 8, 1), 2, config, context_width=4, context_blocks=1, name="d"),
                        lambda layer: layer.sample(pixels, eps)),
    }
    for name, (layer, run) in cases.items():
        twin, expected = _built_twin(layer, run)
        assert twin.get_config() == layer.get_config(), name
        assert twin.config == layer.config, name
        for got, want in zip(run(twin), expected):
            np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=name)


def test_layers_read_configs_saved_before_coupling_config():
    """Layer configs of the old, flat format (hyperparameters beside the layer's own)."""
    flat = dict(width=4, num_blocks=1, num_components=3, precision="w1a1", dropout=0.0,
                attention_heads=0, init_scheme="reference")
    config = kb.CouplingConfig(**flat)
    net = kb.MixLogisticCouplingLayer.from_config({"name": "coupling_0", "channels": 2, "context": True, **flat})
    assert net.config == config and net.context and net.channels == 2 and net.name == "coupling_0"
    steps = kb.CouplingSteps.from_config({"pair_shape": [2, 2, 4], "num_steps": 1, "context": False, **flat})
    assert steps.config == config and steps.networks[0].config is steps.config
    ctx = kb.ContextNetwork.from_config({"image_shape": [2, 4, 1], "width": 4, "num_blocks": 2,
                                         "precision": "w1a1", "dropout": 0.0, "init_scheme": "reference"})
    # (num_components, which the context network does not use, keeps its default there)
    assert ctx.config == kb.context_network_config(config, 4, 2).replace(num_components=4)
    assert ctx.config.gate_kernel_size == 3
    deq = kb.Dequantizer.from_config({"image_shape": [2, 4, 1], "num_steps": 1, "context_width": 4,
                                      "context_blocks": 2, **flat})
    assert deq.config == config and deq.context_network.config == kb.context_network_config(config, 4, 2)
    main = MainFlow.from_config({"image_shape": [4, 4, 1], "couplings": [1, 1, 1], **flat})
    assert main.config == config


def test_old_layer_names_still_import_and_deserialize():
    for old, new in (("NormalizeParams", kb.NormalizeLayer), ("InvConvParams", kb.InvertibleConv1x1Layer),
                     ("CouplingNetwork", kb.MixLogisticCouplingLayer)):
        with pytest.warns(DeprecationWarning, match=new.__name__):
            legacy = getattr(kb, old)
        assert issubclass(legacy, new) and legacy is not new
        assert tf.keras.utils.get_registered_object(f"keras_bdgm>{old}") is legacy
        assert tf.keras.utils.get_registered_name(legacy) == f"keras_bdgm>{old}"
        assert tf.keras.utils.get_registered_name(new) == f"keras_bdgm>{new.__name__}"
    layer = tf.keras.layers.deserialize({
        "class_name": "keras_bdgm>NormalizeParams", "module": "keras_bdgm.bijectors.normalize",
        "registered_name": "keras_bdgm>NormalizeParams", "config": {"event_shape": [2, 2, 1], "name": "n"},
    })
    assert isinstance(layer, kb.NormalizeLayer) and layer.event_shape == (2, 2, 1)


def _rename_groups(h5_group, renames):
    """Renames, at every depth, the h5 groups named like a key of `renames` (+ _i suffix)."""
    for name in list(h5_group):
        child = h5_group[name]
        if not hasattr(child, "keys"):
            continue
        _rename_groups(child, renames)
        base, _, suffix = name.rpartition("_")
        for new, old in renames.items():
            if name == new or (base == new and suffix.isdigit()):
                h5_group.move(name, old + name[len(new):])


def test_keras_file_of_the_old_layout_still_loads(tmp_path):
    """A .keras file written before the renames (layers filed under their old class names)."""
    import zipfile

    import h5py

    x = np.random.default_rng(2).integers(0, 256, (3, 4, 8, 1), dtype=np.uint8)
    model = FlowPlusPlus((4, 8, 1), precision="w1a1", preset="small", **FLOWPP_TINY)
    keras_bdgm.initialize(model, x)
    for v in model.trainable_variables:
        v.assign_add(0.01 * tf.random.normal(v.shape))
    path = str(tmp_path / "new.keras")
    model.save(path)
    old_path = str(tmp_path / "old.keras")
    with zipfile.ZipFile(path) as new, zipfile.ZipFile(old_path, "w") as old:
        for item in new.namelist():
            data = new.read(item)
            if item.endswith(".h5"):
                local = tmp_path / "weights.h5"
                local.write_bytes(data)
                with h5py.File(local, "r+") as f:
                    _rename_groups(f, {"normalize_layer": "normalize_params", "invertible_conv1x1_layer":
                                       "inv_conv_params", "mix_logistic_coupling_layer": "coupling_network"})
                    assert "coupling_network_1" in f["main/stages/coupling_steps_1/networks"]
                data = local.read_bytes()
            old.writestr(item, data)
    expected = model.log_prob(x, seed=3).numpy()
    for file in (path, old_path):
        loaded = tf.keras.models.load_model(file)
        np.testing.assert_array_equal(loaded.log_prob(x, seed=3).numpy(), expected)
    assert "networks" in dir(loaded.main.stages[1])  # hidden from one walk only


def test_bijectors_hold_their_variable_layer_as_layer():
    steps = kb.CouplingSteps((2, 2, 4), num_steps=1, config=_tiny_config())
    normalize, conv, coupling, _ = steps.bijectors()
    assert isinstance(normalize, kb.Normalize) and normalize.layer is steps.norms[0]
    assert isinstance(conv, kb.InvertibleConv1x1) and conv.layer is steps.convs[0]
    assert isinstance(coupling, kb.MixLogisticCoupling) and coupling.layer is steps.networks[0]
    assert isinstance(kb.Normalize((2, 2, 1)).layer, kb.NormalizeLayer)
    assert isinstance(kb.InvertibleConv1x1(4, groups=2).layer, kb.InvertibleConv1x1Layer)


def _coupling_layers(model):
    return [m for m in model.submodules if isinstance(m, kb.MixLogisticCouplingLayer)]


def _gated_blocks(model):
    return [m for m in model.submodules if isinstance(m, GatedResidualBlock)]


FLOWPP_TINY = dict(couplings=(1, 2, 1), width=8, num_blocks=2, num_components=3, dequant_couplings=2,
                   dequant_width=4, dequant_blocks=1, context_width=6, context_blocks=2)


@pytest.mark.parametrize("preset,dropout", [("small", 0.0), ("paper", 0.2)])
def test_every_coupling_network_receives_the_presets_config(preset, dropout):
    model = FlowPlusPlus((4, 8, 1), precision="w32a32", preset=preset, **FLOWPP_TINY)
    main, deq = model.main.config, model.dequantizer.config
    cfg = model.config
    assert main == kb.CouplingConfig(
        width=8, num_blocks=2, num_components=3, precision="w32a32", dropout=dropout,
        attention_heads=cfg["attention_heads"], init_scheme=cfg["init_scheme"],
    )
    assert deq == main.replace(width=4, num_blocks=1)
    nets = _coupling_layers(model)
    assert len(nets) == 4 + 2
    assert all(n.config is main for stage in model.main.stages for n in stage.networks)
    assert all(n.config is deq for n in model.dequantizer.steps.networks)
    assert all(stage.config is main for stage in model.main.stages) and model.dequantizer.steps.config is deq
    context = model.dequantizer.context_network
    assert context.config == kb.context_network_config(deq, 6, 2)
    # ... and every gated block (coupling and context networks) gets the config's settings.
    blocks = _gated_blocks(model)
    assert len(blocks) == 4 * 2 + 2 * 1 + 2
    for block in blocks:
        assert (block.precision, block.dropout, block.init_scheme, block.fuse_negation) == (
            "w32a32", dropout, cfg["init_scheme"], True)
        assert block.gate_kernel_size == (3 if block in context.blocks else 1)
    # Dropout draws masks at w32a32 exactly where the preset asks for it (paper: 0.2).
    assert all((block._dropout_rng is not None) == (dropout > 0) for block in blocks)


def test_unfused_negation_through_the_config_gives_the_same_numbers():
    x = np.random.default_rng(0).integers(0, 256, (4, 4, 8, 1), dtype=np.uint8)
    fused = FlowPlusPlus((4, 8, 1), precision="w1a1", preset="small", **FLOWPP_TINY)
    unfused = FlowPlusPlus((4, 8, 1), precision="w1a1", preset="small", fuse_negation=False, **FLOWPP_TINY)
    assert all(b._fused for b in _gated_blocks(fused))
    assert not any(b._fused or b.fuse_negation for b in _gated_blocks(unfused))
    assert [w.name for w in unfused.weights] == [w.name for w in fused.weights]
    keras_bdgm.initialize(fused, x)
    unfused.set_weights(fused.get_weights())
    # The same function; float rounding differs (x @ (K1 - K2) vs [x, -x] @ [K1; K2]), and
    # through the later sign activations an element near 0 can flip: close, not bitwise.
    np.testing.assert_allclose(unfused.log_prob(x, seed=1).numpy(), fused.log_prob(x, seed=1).numpy(),
                               rtol=1e-3)


@pytest.mark.parametrize("precision", ["w32a32", "w1a32", "w1a1"])
def test_flowpp_rebuilt_from_get_config_has_the_same_weight_names_and_outputs(precision):
    x = np.random.default_rng(1).integers(0, 256, (4, 4, 8, 1), dtype=np.uint8)
    model = FlowPlusPlus((4, 8, 1), precision=precision, preset="paper", attention_heads=2, **FLOWPP_TINY)
    keras_bdgm.initialize(model, x)
    twin = FlowPlusPlus.from_config(model.get_config())
    assert [w.name for w in twin.weights] == [w.name for w in model.weights]
    assert twin.main.get_config() == model.main.get_config()
    assert twin.dequantizer.get_config() == model.dequantizer.get_config()
    twin.set_weights(model.get_weights())
    np.testing.assert_array_equal(twin.log_prob(x, seed=2).numpy(), model.log_prob(x, seed=2).numpy())


def test_swap_halves_exchanges_the_channel_halves_and_its_gradient_swaps_back():
    x = tf.constant(np.random.default_rng(3).normal(size=(2, 3, 2, 6)))
    swap = kb.swap_halves(6)
    expected = np.concatenate([x.numpy()[..., 3:], x.numpy()[..., :3]], axis=-1)
    np.testing.assert_array_equal(swap.forward(x).numpy(), expected)
    np.testing.assert_array_equal(swap.inverse(x).numpy(), expected)
    weights = tf.constant(np.arange(6.0))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(swap.forward(x) * weights)
    np.testing.assert_array_equal(tape.gradient(loss, x).numpy()[0, 0, 0], [3, 4, 5, 0, 1, 2])
    assert float(swap.forward_log_det_jacobian(x, event_ndims=3)) == 0.0
    with pytest.raises(ValueError, match="swaps the halves of 4 channels"):
        kb.swap_halves(4).forward(x)
    with pytest.raises(ValueError, match="even channel count"):
        kb.swap_halves(5)


def test_shapes_are_static_where_known_and_computed_where_not():
    from keras_bdgm.bijectors import shapes

    x = np.zeros((2, 3, 4, 5, 6), np.float32)
    assert shapes.shape(tf.constant(x)) == [2, 3, 4, 5, 6]
    assert shapes.batch_shape(tf.constant(x), 3) == [2, 3]
    assert shapes.shape_then(tf.constant(x), 7) == [2, 3, 4, 5, 6, 7]

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4, 5, 6])])
    def unknown_batch(t):
        return (shapes.shape(t), shapes.batch_shape(t, 3), shapes.shape_then(t, 7),
                tf.shape(shapes.flatten_batch(t)))

    got = [v.numpy().tolist() for v in unknown_batch(x)]
    assert got == [[2, 3, 4, 5, 6], [2, 3], [2, 3, 4, 5, 6, 7], [6, 4, 5, 6]]
    assert shapes.flatten_batch(tf.constant(x)).shape.as_list() == [6, 4, 5, 6]
