"""keras_bdgm.models.noise against TensorFlow's and TFP's own draws (`tf.random.stateless_normal`,
`stateless_uniform`, `Generator.uniform`, `tfp.random.split_seed`, `tfd.Logistic.sample`), run
eagerly (the reference: TensorFlow's kernels), eagerly, in a graph and under XLA."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
from keras_bdgm.models.noise import (
    generator_keep,
    generator_uniform,
    philox_key_counter,
    split_seed,
    stateless_logistic,
    stateless_normal,
    stateless_uniform,
)

# Seeds with a negative half are the ones XLA's own key derivation gets wrong.
SEEDS = [(3, 4), (1394558998, -2103696179), (-5, 7), (-2**31, -1), (0, 0)]
MODES = {"eager": lambda f: f, "graph": tf.function, "XLA": lambda f: tf.function(f, jit_compile=True)}


@pytest.mark.parametrize("seed", SEEDS)
def test_key_and_counter_are_tensorflows(seed):
    expected = tf.raw_ops.StatelessRandomGetKeyCounter(seed=tf.constant(seed, tf.int32))
    for mode in ("eager", "XLA"):
        key, counter = MODES[mode](philox_key_counter)(tf.constant(seed, tf.int32))
        np.testing.assert_array_equal(key.numpy(), expected[0].numpy(), err_msg=mode)
        np.testing.assert_array_equal(counter.numpy(), expected[1].numpy(), err_msg=mode)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", list(MODES))
def test_values_are_tf_stateless_normal(seed, mode):
    seed = tf.constant(seed, tf.int32)
    stream = tf.random.stateless_normal([3 * 5 * 7 + 8], seed).numpy()
    draw = MODES[mode](lambda s: (stateless_normal([3, 5, 7], s), stateless_normal([3, 5, 7], s, 8)))
    first, skipped = draw(seed)  # an odd size: the last Box-Muller pair is half used
    assert first.dtype == tf.float32 and first.shape == (3, 5, 7)
    np.testing.assert_allclose(first.numpy().ravel(), stream[:105], rtol=0, atol=2e-6)
    np.testing.assert_allclose(skipped.numpy().ravel(), stream[8:], rtol=0, atol=2e-6)


@pytest.mark.parametrize("offset", [0, 4, 64, 1000, 64 * 37])
def test_offset_skips_into_the_stream(offset):
    seed = tf.constant([3, 9], tf.int32)
    stream = tf.random.stateless_normal([offset + 5 * 64], seed=seed)
    expected = tf.reshape(stream[offset:], [5, 8, 8, 1]).numpy()
    np.testing.assert_allclose(stateless_normal([5, 8, 8, 1], seed, offset).numpy(), expected, atol=2e-6)
    for mode in ("graph", "XLA"):  # a tensor offset: one trace for every chunk
        draw = MODES[mode](lambda o: stateless_normal([5, 8, 8, 1], seed, o))
        np.testing.assert_allclose(draw(tf.constant(offset)).numpy(), expected, atol=2e-6, err_msg=mode)


def test_large_draws_are_standard_normal():
    values = stateless_normal([200_000], [11, 12]).numpy().astype(np.float64)
    assert abs(values.mean()) < 0.01 and abs(values.std() - 1.0) < 0.01
    assert np.isfinite(values).all() and np.abs(values).max() < 6.0  # u >= 1e-7: |z| <= 5.68


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", list(MODES))
def test_uniform_and_split_seeds_are_tensorflows(seed, mode):
    seed = tf.constant(seed, tf.int32)
    expected_uniform = tf.random.stateless_uniform([3, 5, 7], seed, minval=-2.0, maxval=0.5).numpy()
    expected_seeds = tf.stack(tfp.random.split_seed(seed, n=3)).numpy()
    uniform, seeds = MODES[mode](lambda s: (stateless_uniform([3, 5, 7], s, -2.0, 0.5), tf.stack(split_seed(s, 3))))(seed)
    # The same bits: only the scaling's rounding may differ (XLA fuses it into one FMA).
    np.testing.assert_allclose(uniform.numpy(), expected_uniform, rtol=0, atol=4e-7)
    np.testing.assert_array_equal(seeds.numpy(), expected_seeds)  # integers: exactly


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", list(MODES))
def test_logistic_draws_are_tfps_and_reparameterized(seed, mode):
    seed = tf.constant(seed, tf.int32)
    loc = tf.constant(np.linspace(-3.0, 3.0, 6, dtype=np.float32))
    scale = tf.constant([[0.05], [2.0]], tf.float32)  # broadcasts to [2, 6]
    expected = tfp.distributions.Logistic(loc, scale).sample(seed=seed).numpy()

    def draw(s):
        with tf.GradientTape() as tape:
            tape.watch([loc, scale])
            z = stateless_logistic(loc, scale, s)
            total = tf.reduce_sum(z)
        return z, tape.gradient(total, scale)

    z, dscale = MODES[mode](draw)(seed)
    np.testing.assert_allclose(z.numpy(), expected, rtol=1e-6, atol=1e-6)
    # z = loc + scale * logit(u): dz/dscale = (z - loc) / scale, summed over the broadcast row.
    np.testing.assert_allclose(dscale.numpy()[:, 0], ((expected - loc.numpy()) / scale.numpy()).sum(1), rtol=1e-5)


@pytest.mark.parametrize("mode", list(MODES))
def test_a_zero_uniform_draw_stays_finite_under_graph_optimization(mode):
    """Seed (48, 7) gives Philox bits whose 23 mantissa bits are 0 at index 17,889 of 65,536:
    TFP's u is then float32's smallest normal, not 0, and z = logit(u) is finite. Grappler's
    constant folding once rewrote (f - 1) * (1 - tiny) + tiny into f * 1 - 1, which is 0
    there, and z was -inf in a tf.function (the ResNet VAE's KL went NaN about once in 20
    steps)."""
    seed = tf.constant([48, 7], tf.int32)
    loc, scale = tf.zeros([1 << 16]), tf.ones([1 << 16])
    expected = tfp.distributions.Logistic(loc, scale).sample(seed=seed).numpy()
    z = MODES[mode](lambda s: stateless_logistic(loc, scale, s))(seed).numpy()
    tiny = np.finfo(np.float32).tiny
    assert expected[17889] == pytest.approx(np.log(tiny))  # the oracle's draw there: u = tiny
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z, expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("mode", list(MODES))
def test_generator_uniform_is_the_generators_own_draw(mode):
    ours, theirs = tf.random.Generator.from_seed(7), tf.random.Generator.from_seed(7)
    draws = MODES[mode](lambda: tf.stack([generator_uniform(ours, [3, 5]), generator_uniform(ours, [3, 5])]))()
    expected = np.stack([theirs.uniform([3, 5]).numpy(), theirs.uniform([3, 5]).numpy()])
    np.testing.assert_array_equal(draws.numpy(), expected)
    np.testing.assert_array_equal(ours.state.numpy(), theirs.state.numpy())  # advanced alike


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("rate", [0.2, 0.25, 0.5, 0.9])  # 0.25, 0.5: u can equal the rate exactly (kept)
def test_generator_keep_is_the_generators_uniform_compared_with_the_rate(mode, rate):
    ours, theirs = tf.random.Generator.from_seed(11), tf.random.Generator.from_seed(11)
    shape = [64, 257]
    masks = MODES[mode](lambda: tf.stack([generator_keep(ours, shape, rate), generator_keep(ours, shape, rate)]))()
    expected = np.stack([theirs.uniform(shape).numpy() >= np.float32(rate) for _ in range(2)])
    np.testing.assert_array_equal(masks.numpy(), expected)
    np.testing.assert_array_equal(ours.state.numpy(), theirs.state.numpy())  # advanced alike
