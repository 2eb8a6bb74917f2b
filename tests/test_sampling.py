"""Compiled sampling: `model.sample` runs as a tf.function graph, traced once per n, and gives
the images of the eager code it replaced.

Graph vs eager. tf.function's graph optimizer (grappler's arithmetic optimizer) regroups
float sums, e.g. a residual x + (conv * gain + bias) becomes one AddN, so values before the
final rounding can differ from eager ones in their last bits (measured on these tiny models:
Flow++ pixels y by <= 3e-5, VAE means by <= 1e-6, i.e. a few float32 ulp). A pixel changes
only where its value lies within that noise of a rounding boundary (an integer for Flow++'s
floor, k + 1/2 for the VAE's round), which a pixel hits with probability ~1e-4. So the
compiled images must equal the eager ones except at pixels whose eager value is within
`_BAND` of a boundary, each off by at most 1, and at most `_MAX_FLIPPED` of all pixels. (With
the seeds below no pixel differs at all; the allowance keeps the test valid on other CPUs.)
The eager path itself (`compiled=False`) is pinned exactly to the pre-compilation code,
composed here from the models' public pieces.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.bijectors import MixLogisticCoupling
from keras_bdgm.bijectors import mixture_logistic as mixlog
from keras_bdgm.bijectors import steps as steps_module

import tiny

SHAPE = tiny.SHAPE
_BAND = 1e-3         # pixel units: farther than this from a rounding boundary, no pixel may change
_MAX_FLIPPED = 2e-3  # fraction of pixels allowed to differ (by 1) between graph and eager
CASES = [(16, 1.0, 3), (5, 0.7, 11)]  # (n, temperature, seed)


def _images(n=16):
    return tiny.tiny_images(n)


def _flow_reference(model, n, temperature, seed):
    """The pre-compilation Flow++ sampler, eagerly: (uint8 images, pixels before the floor)."""
    z = tf.random.stateless_normal((n, *model.latent_shape), seed=[seed, 0]) * temperature
    y = model.flow.forward(z).numpy()
    return np.clip(np.floor(y), 0, 255).astype(np.uint8), y


def _vae_reference(model, n, temperature, seed):
    """The pre-compilation ResNetVAE sampler (likelihood mode), eagerly: (uint8 images, pixels
    before the rounding)."""
    latent_seed, _ = tfp.random.split_seed(tfp.random.sanitize_seed((seed, 0)), n=2)  # int s: (s, 0)
    means, _ = model._top_down(n, seed=latent_seed, temperature=float(temperature))
    images = tf.cast(tf.round((model.likelihood(means).mode() + 1.0) * 127.5), tf.uint8).numpy()
    return images, (means.numpy() + 1.0) * 127.5


def _assert_same_images(got, want, before_rounding=None, boundary_offset=0.0):
    """got == want up to graph-vs-eager float noise at rounding boundaries (module docstring)."""
    got, want = np.asarray(got).astype(int), np.asarray(want).astype(int)
    assert got.shape == want.shape
    diff = np.abs(got - want)
    assert diff.max() <= 1 and diff.astype(bool).mean() <= _MAX_FLIPPED, f"{diff.sum()} pixels differ"
    if before_rounding is not None and diff.any():
        frac = before_rounding - boundary_offset
        distance = np.abs(frac - np.round(frac))
        assert np.all(distance[diff > 0] < _BAND), "a pixel far from a rounding boundary changed"


@pytest.mark.parametrize("n, temperature, seed", CASES)
def test_flowpp_compiled_gives_the_eager_images(flow, n, temperature, seed):
    want, y = _flow_reference(flow, n, temperature, seed)
    eager = flow.sample(n, temperature=temperature, seed=seed, compiled=False).numpy()
    np.testing.assert_array_equal(eager, want)  # the eager path is the old code, bit for bit
    compiled = flow.sample(n, temperature=temperature, seed=seed)
    assert compiled.dtype == tf.uint8 and compiled.shape == (n, *SHAPE)
    _assert_same_images(compiled, want, before_rounding=y)
    assert want.std() > 0


@pytest.mark.parametrize("n, temperature, seed", CASES)
def test_resnet_vae_compiled_gives_the_eager_images(vae, n, temperature, seed):
    want, values = _vae_reference(vae, n, temperature, seed)
    eager = vae.sample(n, temperature=temperature, seed=seed, compiled=False).numpy()
    np.testing.assert_array_equal(eager, want)
    compiled = vae.sample(n, temperature=temperature, seed=seed)
    assert compiled.dtype == tf.uint8 and compiled.shape == (n, *SHAPE)
    _assert_same_images(compiled, want, before_rounding=values, boundary_offset=0.5)
    assert want.std() > 0
    # Pixels drawn from the likelihood: the same draw in both paths.
    drawn = vae.sample(n, temperature=temperature, seed=(seed, 1), sample_pixels=True)
    _assert_same_images(drawn, vae.sample(n, temperature, (seed, 1), sample_pixels=True, compiled=False))


@pytest.mark.parametrize("name", ["flow", "vae"])
def test_traced_once_per_batch_size(name, request):
    model = request.getfixturevalue(name)
    fn = model._sample_fn
    fn = fn.__wrapped__ if getattr(fn, "grappler_off", False) else fn  # Flow++ on a CPU: the tf.function inside
    model.sample(3, seed=0)
    count = fn.experimental_get_tracing_count()
    for temperature, seed in [(1.0, 0), (0.5, 1), (2, None), (0.9, (4, 5)), (tf.constant(0.3), np.int64(7))]:
        assert model.sample(3, temperature=temperature, seed=seed).shape == (3, *SHAPE)
    assert fn.experimental_get_tracing_count() == count  # new temperature and seed: no retrace
    model.sample(2, temperature=0.8, seed=1)
    model.sample(2, temperature=0.6, seed=2)
    assert fn.experimental_get_tracing_count() == count + 1  # one trace per new n


@pytest.mark.parametrize("name", ["flow", "vae"])
def test_unseeded_samples_draw_one_seed_from_the_models_generator(name, request):
    model = request.getfixturevalue(name)
    state = model.rng.state.numpy()
    first = model.sample(4).numpy()
    second = model.sample(4).numpy()
    assert not np.array_equal(first, second)
    model.rng.state.assign(state)
    seed = model.rng.uniform_full_int([2], dtype=tf.int32)  # what sample(seed=None) drew
    np.testing.assert_array_equal(model.sample(4, seed=seed).numpy(), first)


@pytest.mark.parametrize("name", ["flow", "vae"])
def test_seeds_are_read_by_the_shared_convention(name, request):
    """An int seed s is the pair (s, 0) in every model; pairs, arrays and tensors alike."""
    as_pair = lambda s: (s, 0)  # noqa: E731
    model = request.getfixturevalue(name)
    want = model.sample(3, seed=as_pair(5)).numpy()
    for seed in (5, np.int64(5), tf.constant(5), np.array(as_pair(5)), tf.constant(as_pair(5), tf.int64)):
        np.testing.assert_array_equal(model.sample(3, seed=seed).numpy(), want)
    with pytest.raises(ValueError, match="seed"):
        model.sample(3, seed=(1, 2, 3))


@pytest.mark.parametrize("name", ["flow", "vae"])
@pytest.mark.parametrize("compiled", [True, False])
def test_sample_arguments_are_checked(name, compiled, request):
    model = request.getfixturevalue(name)
    for n in (0, -2):
        with pytest.raises(ValueError, match=">= 1"):
            model.sample(n, compiled=compiled)
    for temperature in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            model.sample(2, temperature=temperature, compiled=compiled)


def test_inverse_coupling_in_a_graph_is_accurate(flow):
    """Flow++'s generative direction (root-finding inverse couplings) traced into a graph
    meets the eager round-trip tolerance of test_flowpp.test_image_to_latent_to_image."""
    x = tf.cast(_images(8), tf.float32)
    u, _ = flow.dequantizer.sample(x, tf.random.stateless_normal(x.shape, seed=[1, 2]))
    y = x + u
    z = flow.flow.inverse(y)
    y_back = tf.function(lambda z: flow.flow.forward(z))(tf.identity(z)).numpy()
    np.testing.assert_allclose(y_back, y.numpy(), atol=1e-4 * 256, rtol=1e-4)
    assert np.abs(y_back - y.numpy()).max() < 2e-3
    # The mixture inverse alone, at test_bijectors' float32 accuracy (its data: x drawn from
    # the components of mixtures with scales e^-7 .. e^3).
    rng = np.random.default_rng(1)
    n, k = 1000, 8
    logits = rng.normal(size=(n, k)).astype(np.float32)
    means = rng.uniform(-3, 3, (n, k)).astype(np.float32)
    log_scales = rng.uniform(-7.0, 3.0, (n, k)).astype(np.float32)
    comp = rng.integers(0, k, (n, 1))
    u = rng.uniform(0.001, 0.999, n)
    x2 = (np.take_along_axis(means, comp, 1)[:, 0]
          + np.exp(np.take_along_axis(log_scales, comp, 1)[:, 0]) * np.log(u / (1 - u))).astype(np.float32)
    target = mixlog.logit_cdf(x2, logits, means, log_scales)
    x_back, converged = tf.function(mixlog.inverse_logit_cdf)(target, logits, means, log_scales)
    assert converged.numpy().all()
    assert (np.abs(x_back.numpy() - x2) / np.maximum(1.0, np.abs(x2))).max() <= 1e-5


class _OneIteration(MixLogisticCoupling):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "max_iterations": 1})


def test_non_convergence_raises_inside_the_graph(flow, monkeypatch):
    monkeypatch.setattr(steps_module, "MixLogisticCoupling", _OneIteration)
    sample = tf.function(flow._sample_images, autograph=False)  # a fresh trace, as the model traces its own
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"coupling_\d.*did not converge within 1 it"):
        sample(2, tf.constant(1.0), tf.constant([0, 0]))
