"""XLA for the train step: `compile`'s default (`default_jit_compile`; an explicit jit_compile
wins) and the XLA train step against the tf.function one.

What differs under XLA is the noise, not the computation. TF 2.21 compiles its stateless
random ops differently: `StatelessRandomGetKeyCounter` reads a seed with a negative half as
unsigned (TF's kernel sign-extends it: another Philox stream for about 3 in 4 of the seeds
`noise_seed()` draws), and uint32 -> float is done with other bits (other uniforms and
normals from the same bits). The Philox bits themselves agree. `_xla_invariant_normal` draws
`flowpp._normal`'s noise from those bits with TF's own key derivation and Box-Muller
transform: equal to `tf.random.stateless_normal` up to float rounding, eagerly and under XLA.
With it, Flow++'s XLA train step gives the tf.function step's losses and weights.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

import keras_bdgm
from keras_bdgm.models import flowpp
from keras_bdgm.models.flowpp import FlowPlusPlus

import tiny

TINY = {"width": 8, "num_blocks": 1, "num_components": 2, "couplings": (1, 1, 1), "dequant_couplings": 1,
        "dequant_width": 8, "dequant_blocks": 1, "context_width": 8, "context_blocks": 1}
SHAPE = (8, 8, 1)
_PHILOX = 1  # tf.random.Algorithm.PHILOX
_MIX_KEY = 0x02461E293EC8F720  # the key TF's kernel scrambles a seed with (words 0x3ec8f720, 0x02461e29)


def _philox_key_counter(seed):
    """`tf.raw_ops.StatelessRandomGetKeyCounter(seed=seed)` for an int32[2] seed, from ops that
    XLA computes as TF does: one Philox block of the sign-extended seed under a fixed key."""
    words = tf.bitcast(tf.cast(seed, tf.int64), tf.uint64)
    mix = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=[4], key=tf.constant([_MIX_KEY], tf.uint64), counter=words, alg=_PHILOX, dtype=tf.uint32)
    mix = tf.cast(mix, tf.uint64)
    shift = tf.constant(32, tf.uint64)
    key = tf.bitwise.bitwise_or(mix[0], tf.bitwise.left_shift(mix[1], shift))
    counter = tf.bitwise.bitwise_or(mix[2], tf.bitwise.left_shift(mix[3], shift))
    return tf.reshape(key, [1]), tf.stack([tf.zeros([], tf.uint64), counter])


def _xla_invariant_normal(shape, seed, offset=0):
    """`flowpp._normal(shape, seed, offset)` from Philox's uint32 bits and TF's Box-Muller
    transform (u = mantissa bits / 2^23, u1 >= 1e-7): the same values eagerly and under XLA."""
    key, counter = _philox_key_counter(seed)
    low = counter[0] + tf.cast(tf.cast(offset, tf.int64) // 4, tf.uint64)
    counter = tf.stack([low, counter[1] + tf.cast(low < counter[0], tf.uint64)])
    shape = tf.cast(shape, tf.int32)
    size = tf.reduce_prod(shape)
    pairs = (size + 1) // 2
    bits = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=[2 * pairs], key=key, counter=counter, alg=_PHILOX, dtype=tf.uint32)
    mantissa = tf.bitwise.bitwise_or(tf.bitwise.bitwise_and(bits, 0x7FFFFF), 0x3F800000)
    u = tf.reshape(tf.bitcast(mantissa, tf.float32) - 1.0, [pairs, 2])
    radius = tf.sqrt(-2.0 * tf.math.log(tf.maximum(u[:, 0], 1e-7)))
    angle = 2.0 * math.pi * u[:, 1]
    values = tf.reshape(tf.stack([radius * tf.sin(angle), radius * tf.cos(angle)], axis=1), [-1])
    return tf.reshape(values[:size], shape)


Linear = tiny.LinearLoss  # objective = <theta, c>: its gradient is c (norm 5 for c = (3, 4))


def _tiny_flow(precision="w1a1"):
    return FlowPlusPlus(SHAPE, precision=precision, preset="small", **TINY)


@pytest.mark.parametrize("default", [False, True])
def test_compile_uses_the_class_default_unless_told(monkeypatch, default):
    monkeypatch.setattr(Linear, "default_jit_compile", default)
    model = Linear([3.0, 4.0])
    model.compile(tf.keras.optimizers.SGD(0.1))
    assert model.jit_compile is default
    model.compile(tf.keras.optimizers.SGD(0.1), jit_compile=False)
    assert model.jit_compile is False
    model.compile(tf.keras.optimizers.SGD(0.1), jit_compile=True)
    assert model.jit_compile is True
    model.compile(tf.keras.optimizers.SGD(0.1), run_eagerly=True)  # no XLA for eager runs
    assert model.jit_compile is False and model.run_eagerly


def test_flowpp_compile_default_is_the_class_switch(monkeypatch):
    assert isinstance(FlowPlusPlus.default_jit_compile, bool)
    monkeypatch.setattr(FlowPlusPlus, "default_jit_compile", True)
    model = _tiny_flow()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    assert model.jit_compile is True
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), jit_compile=False)  # the user's False wins
    assert model.jit_compile is False


@pytest.mark.parametrize("given", [None, False])
def test_a_loaded_model_is_compiled_with_the_argument_as_given(tmp_path, monkeypatch, given):
    monkeypatch.setattr(FlowPlusPlus, "default_jit_compile", True)
    model = _tiny_flow()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), jit_compile=given)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    assert type(loaded.optimizer).__name__ == "Adam"  # compile_from_config still compiles
    assert loaded.jit_compile is (given is None)  # None: the default again; False stays False


@pytest.mark.parametrize("c, skipped", [([3.0, 4.0], 0.0), ([300.0, 400.0], 1.0)])
def test_xla_step_clips_and_skips_as_the_tf_function_step(c, skipped):
    data = tf.data.Dataset.from_tensor_slices(np.zeros((8, 2, 2, 1), np.uint8)).batch(2)
    results = []
    for jit in (False, True):
        model = Linear(np.array(c, np.float32), clip_norm=0.5, skip_threshold=100.0)
        model.compile(tf.keras.optimizers.Adam(0.1), jit_compile=jit)
        assert model.jit_compile is jit
        history = model.fit(data, epochs=1, verbose=0).history
        results.append((model.theta.numpy(), history, int(model.optimizer.iterations.numpy())))
    (ref, ref_history, ref_steps), (got, history, steps) = results
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert history["skipped_steps"] == ref_history["skipped_steps"] == [4 * skipped]
    assert history["grad_norm"][0] == pytest.approx(ref_history["grad_norm"][0])
    assert steps == ref_steps == 4
    if skipped:
        np.testing.assert_array_equal(got, 0.0)


@pytest.mark.parametrize("seed", [(3, 4), (1394558998, -2103696179), (-5, 7), (-2**31, -1)])
@pytest.mark.parametrize("jit", [False, True])
def test_xla_invariant_normal_is_tf_stateless_normal(seed, jit):
    seed = tf.constant(seed, tf.int32)
    expected = tf.random.stateless_normal([3 * 5 * 7 + 8], seed).numpy()  # an odd size after the offset
    draw = tf.function(lambda s: (_xla_invariant_normal([3, 5, 7], s), _xla_invariant_normal([3, 5, 7], s, 8)),
                       jit_compile=jit)
    first, skipped = draw(seed)
    np.testing.assert_allclose(first.numpy().ravel(), expected[:105], rtol=0, atol=2e-6)
    np.testing.assert_allclose(skipped.numpy().ravel(), expected[8:], rtol=0, atol=2e-6)


def _train_tiny_flow(precision, jit, steps=3):
    """(logs per step, weights) of a tiny Flow++ after `steps` train steps on one batch, from
    the same initial weights and generator state for either jit."""
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (4, *SHAPE), dtype=np.uint8)
    model = _tiny_flow(precision)
    keras_bdgm.initialize(model, images)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), jit_compile=jit)
    assert model.jit_compile is jit
    train = model.make_train_function()
    data = iter(tf.data.Dataset.from_tensors(images).repeat())
    logs = [{k: float(v) for k, v in train(data).items()} for _ in range(steps)]
    return logs, [(w.name, w.numpy()) for w in model.weights]


def _assert_same_training(got, expected):
    (logs, weights), (ref_logs, ref_weights) = got, expected
    for step, ref in zip(logs, ref_logs):
        assert step == pytest.approx(ref, rel=1e-5, abs=1e-6)
    assert [name for name, _ in weights] == [name for name, _ in ref_weights]
    for (name, value), (_, ref) in zip(weights, ref_weights):
        if ref.dtype.kind == "f":
            np.testing.assert_allclose(value, ref, rtol=1e-4, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(value, ref, err_msg=name)


@pytest.mark.parametrize("precision", ["w1a1", "w32a32"])
def test_flowpp_xla_train_step_matches_tf_function_with_the_same_noise(monkeypatch, precision):
    # larq's sign ops, the fused negation (w1a1), TFP's bijectors, the clip-or-skip cond and
    # Adam under XLA: 3 steps give the tf.function step's losses, gradient norms and weights.
    monkeypatch.setattr(flowpp, "_normal", _xla_invariant_normal)
    expected = _train_tiny_flow(precision, jit=False)
    _assert_same_training(_train_tiny_flow(precision, jit=True), expected)


def test_flowpp_xla_by_default_only_where_it_gives_the_same_numbers():
    # The guard on the switch: with XLA on by default, the stock model's XLA step must give
    # the tf.function step's numbers (no noise patched in).
    if not FlowPlusPlus.default_jit_compile:
        pytest.skip("FlowPlusPlus.default_jit_compile is off (XLA draws other noise; module docstring).")
    _assert_same_training(_train_tiny_flow("w1a1", jit=True), _train_tiny_flow("w1a1", jit=False))
