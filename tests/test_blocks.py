"""Residual blocks against numpy compositions of the oracle conv, per precision."""

import numpy as np
import pytest
import tensorflow as tf

import keras_bdgm
from keras_bdgm import blocks

import oracles

PRECISIONS = ("w32a32", "w1a32", "w1a1")


def _effective_kernel(conv):
    """The float64 kernel the conv applies, computed in numpy from its variables."""
    v = getattr(conv.kernel, "latent_variable", conv.kernel).numpy().astype(np.float64)
    gain = conv.gain.numpy().astype(np.float64)
    if hasattr(conv.kernel, "latent_variable"):
        return oracles.sign(v) * gain / np.sqrt(np.prod(v.shape[:3]))
    return v * gain / np.sqrt((v ** 2).sum(axis=(0, 1, 2)))


def _np_conv(conv, x, binary_input):
    x = oracles.sign(x) if binary_input else x
    return oracles.conv2d(x, _effective_kernel(conv), 1, "same") + conv.bias.numpy()


def _randomize(block, rng):
    for w in block.weights:
        target = getattr(w, "latent_variable", w)
        target.assign(rng.uniform(-1, 1, size=w.shape).astype("float32"))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_residual_block_matches_oracle(precision):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 5, 4)).astype("float32")
    block = blocks.ResidualBlock(4, kernel_size=3, precision=precision)
    block(x)
    _randomize(block, rng)
    a1 = precision == "w1a1"
    act = (lambda t: t) if a1 else oracles.elu
    h = _np_conv(block.conv1, act(x), a1)
    expected = x + _np_conv(block.conv2, act(h), a1)
    np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("context,gate_kernel_size", [(False, 1), (True, 1), (False, 3)])
def test_gated_residual_block_matches_oracle(precision, context, gate_kernel_size):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    c = rng.normal(size=(2, 5, 5, 2)).astype("float32") if context else None
    block = blocks.GatedResidualBlock(3, precision=precision, context=context, gate_kernel_size=gate_kernel_size)
    block(x, context=c)
    assert tuple(block.conv_gate.kernel.shape) == (gate_kernel_size, gate_kernel_size, 6, 6)
    _randomize(block, rng)
    a1 = precision == "w1a1"

    def concat_act(t):
        t = np.concatenate([t, -t], axis=-1)
        return t if a1 else oracles.elu(t)

    h = _np_conv(block.conv_in, concat_act(x), a1)
    if context:
        h = h + _np_conv(block.conv_context, concat_act(c), a1)
    h = _np_conv(block.conv_gate, concat_act(h), a1)
    expected = x + h[..., :3] * oracles.sigmoid(h[..., 3:])
    out = block(x, context=c, training=False)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_blocks_are_identity_after_initialize(precision):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 6, 6, 4)).astype("float32")
    c = rng.normal(size=(8, 6, 6, 2)).astype("float32")
    xin, cin = tf.keras.Input((6, 6, 4)), tf.keras.Input((6, 6, 2))
    h = blocks.ResidualBlock(4, 3, precision=precision)(xin)
    h = blocks.GatedResidualBlock(4, precision=precision)(h)
    h = blocks.GatedResidualBlock(4, precision=precision, context=True)(h, context=cin)
    model = tf.keras.Model([xin, cin], h)
    done = keras_bdgm.initialize(model, [x, c])
    assert len(done) == 2 + 2 + 3
    np.testing.assert_array_equal(model([x, c]).numpy(), x)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_reference_init_scheme_scales_conv_in_and_gate_to_a_tenth(precision):
    """init_scheme="reference": conv_in and the gate conv output mean 0, std 0.1 per channel
    on the init batch (the oracle recomputes both convs in numpy from the set weights)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 6, 6, 4)).astype("float32")
    block = blocks.GatedResidualBlock(4, precision=precision, gate_kernel_size=3, init_scheme="reference")
    keras_bdgm.initialize(block, x)
    a1 = precision == "w1a1"

    def concat_act(t):
        t = np.concatenate([t, -t], axis=-1)
        return t if a1 else oracles.elu(t)

    h = _np_conv(block.conv_in, concat_act(x), a1)
    gate = _np_conv(block.conv_gate, concat_act(h), a1)
    for out in (h, gate):
        np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
        np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 0.1, rtol=1e-3)
    with pytest.raises(ValueError, match="Unknown init scheme 'paper'; expected one of: identity, reference"):
        blocks.GatedResidualBlock(4, init_scheme="paper")


def test_dropout_only_in_full_precision():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 5, 5, 3)).astype("float32")
    outs = {}
    for precision in PRECISIONS:
        block = blocks.GatedResidualBlock(3, precision=precision, dropout=0.5)
        block(x)
        _randomize(block, rng)
        outs[precision] = [block(x, training=True).numpy() for _ in range(2)]
    assert not np.allclose(*outs["w32a32"])
    np.testing.assert_array_equal(*outs["w1a32"])
    np.testing.assert_array_equal(*outs["w1a1"])


@pytest.mark.parametrize("jit", [False, True])
def test_dropout_is_inverted_dropout_of_the_generators_uniform_draw(jit):
    """Oracle: numpy's where(u >= rate, h / (1 - rate), 0), u the block generator's next
    `uniform` draw (read from a copy of its state)."""
    rate = 0.3
    block = blocks.ResidualBlock(3, 3, precision="w32a32", dropout=rate)
    h = np.random.default_rng(5).normal(size=(4, 6, 6, 3)).astype("float32")
    copy = tf.random.Generator.from_state(block._dropout_rng.state.numpy(), block._dropout_rng.algorithm)
    u = copy.uniform(h.shape).numpy()
    got = tf.function(lambda t: block._maybe_dropout(t, training=True), jit_compile=jit)(tf.constant(h)).numpy()
    np.testing.assert_allclose(got, np.where(u >= np.float32(rate), h / (1 - rate), 0.0), rtol=1e-6, atol=0)
    assert 0.6 < (got != 0).mean() < 0.8
    np.testing.assert_array_equal(block._maybe_dropout(tf.constant(h), training=False), h)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_blocks_keras_file_round_trip(precision, tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    c = rng.normal(size=(2, 5, 5, 2)).astype("float32")
    xin, cin = tf.keras.Input((5, 5, 3)), tf.keras.Input((5, 5, 2))
    h = blocks.ResidualBlock(3, 5, precision=precision, dropout=0.1)(xin)
    h = blocks.GatedResidualBlock(3, precision=precision, context=True)(h, context=cin)
    model = tf.keras.Model([xin, cin], h)
    for layer in model.layers[2:]:
        _randomize(layer, rng)
    path = str(tmp_path / "blocks.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    np.testing.assert_array_equal(loaded([x, c]).numpy(), model([x, c]).numpy())
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]


def test_bad_block_arguments():
    with pytest.raises(ValueError, match="w32a32, w1a32, w1a1"):
        blocks.ResidualBlock(4, precision="w8a8")
    with pytest.raises(ValueError, match="project it to 4 channels"):
        blocks.ResidualBlock(4)(np.zeros((1, 3, 3, 2), "float32"))
    with pytest.raises(ValueError, match="rank|height, width"):
        blocks.ResidualBlock(4)(np.zeros((1, 3, 4), "float32"))
    with pytest.raises(ValueError, match="context=True"):
        blocks.GatedResidualBlock(4, context=True)(np.zeros((1, 3, 3, 4), "float32"))


def test_both_blocks_default_to_no_dropout():
    plain, gated = blocks.ResidualBlock(4), blocks.GatedResidualBlock(4)
    assert plain.dropout == gated.dropout == 0.0
    assert plain.get_config()["dropout"] == gated.get_config()["dropout"] == 0.0
    assert plain._dropout_rng is None and gated._dropout_rng is None  # no masks drawn at all
    x = np.random.default_rng(8).normal(size=(2, 5, 5, 4)).astype("float32")
    for block in (plain, gated):
        block(x)
        _randomize(block, np.random.default_rng(9))
        np.testing.assert_array_equal(block(x, training=True).numpy(), block(x, training=False).numpy())
    # A rate given explicitly is kept (and round-trips through the config).
    explicit = blocks.GatedResidualBlock(4, dropout=0.2)
    assert blocks.GatedResidualBlock.from_config(explicit.get_config()).dropout == 0.2


def test_dropout_zeroes_at_its_rate_and_rescales():
    block = blocks.ResidualBlock(4, precision="w32a32", dropout=0.25)
    h = tf.ones((64, 8, 8, 4))
    out = block._maybe_dropout(h, training=True).numpy()
    assert abs((out == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(out[out != 0], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(block._maybe_dropout(h, training=False).numpy(), h.numpy())


def test_fused_negation_matches_explicit_concat_at_w1a1():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    c = rng.normal(size=(2, 5, 5, 2)).astype("float32")
    fused = blocks.GatedResidualBlock(3, precision="w1a1", context=True)
    plain = blocks.GatedResidualBlock(3, precision="w1a1", context=True, fuse_negation=False)
    fused(x, context=c), plain(x, context=c)
    _randomize(fused, rng)
    plain.set_weights(fused.get_weights())
    np.testing.assert_allclose(fused(x, context=c).numpy(), plain(x, context=c).numpy(), rtol=1e-5, atol=1e-5)
    assert fused.conv_in.negated_pair_input and not plain.conv_in.negated_pair_input


def test_gated_attention_matches_numpy_oracle_and_starts_as_identity():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 4, 4)).astype("float32")
    block = blocks.GatedAttention(4, heads=2)
    keras_bdgm.initialize(tf.keras.Sequential([tf.keras.Input((3, 4, 4)), block]), x)
    np.testing.assert_array_equal(block(x).numpy(), x)  # gate gain 0 after init
    _randomize(block, rng)
    mha = block.attention
    seq = x.reshape(2, 12, 4).astype(np.float64)
    heads = []
    for h in range(2):
        q = seq @ mha._query_dense.kernel.numpy()[:, h] + mha._query_dense.bias.numpy()[h]
        k = seq @ mha._key_dense.kernel.numpy()[:, h] + mha._key_dense.bias.numpy()[h]
        v = seq @ mha._value_dense.kernel.numpy()[:, h] + mha._value_dense.bias.numpy()[h]
        logits = q @ k.transpose(0, 2, 1) / np.sqrt(2.0)
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        heads.append((weights / weights.sum(-1, keepdims=True)) @ v)
    att = np.einsum("bshd,hdc->bsc", np.stack(heads, 2), mha._output_dense.kernel.numpy()) + mha._output_dense.bias.numpy()
    g = block.gate
    w = g.kernel.numpy() * g.gain.numpy() / np.linalg.norm(g.kernel.numpy().astype(np.float64), axis=0)
    h = att @ w + g.bias.numpy()
    expected = x + (h[..., :4] * oracles.sigmoid(h[..., 4:])).reshape(x.shape)
    np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="divisible"):
        blocks.GatedAttention(5, heads=2)
