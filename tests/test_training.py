"""The shared model contract: train step (clipping, skipping, metrics, distribution), image
checks, seeds and the importance-weighted bound."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm.models.evaluation import evaluate_bits_per_dim
from keras_bdgm.models.pixelcnn_raster import RasterDecoder
from keras_bdgm.images import check_images
import tiny
from tiny import LinearLoss
from keras_bdgm.models.base import (
    GenerativeModel, ImportanceChunk, importance_bound, importance_chunks, stateless_seed,
)


def _data(n=8, batch=2):
    return tf.data.Dataset.from_tensor_slices(np.zeros((n, 2, 2, 1), np.uint8)).batch(batch)


def test_update_is_clipped_to_global_norm():
    c = np.array([3.0, 4.0], np.float32)  # norm 5
    model = LinearLoss(c, clip_norm=0.5, skip_threshold=100.0)
    model.compile(tf.keras.optimizers.SGD(1.0))
    history = model.fit(_data(2), epochs=1, verbose=0)
    np.testing.assert_allclose(model.theta.numpy(), -c * 0.5 / 5.0, rtol=1e-6)
    assert history.history["skipped_steps"] == [0.0]
    assert history.history["grad_norm"][0] == pytest.approx(5.0)


def test_update_above_threshold_is_skipped():
    c = np.array([300.0, 400.0], np.float32)
    model = LinearLoss(c, skip_threshold=100.0)
    model.compile(tf.keras.optimizers.Adam(0.1))
    history = model.fit(_data(8), epochs=1, verbose=0)
    np.testing.assert_array_equal(model.theta.numpy(), 0.0)
    assert history.history["skipped_steps"] == [4.0]
    assert int(model.optimizer.iterations.numpy()) == 4


def test_non_finite_gradient_is_skipped_and_weights_stay_finite():
    model = LinearLoss(np.array([np.nan, 1.0], np.float32))
    model.compile(tf.keras.optimizers.legacy.Adam(0.1))
    history = model.fit(_data(4), epochs=1, verbose=0)
    np.testing.assert_array_equal(model.theta.numpy(), 0.0)
    assert history.history["skipped_steps"] == [2.0]


class _BatchScaledLinear(GenerativeModel):
    """objective = <theta, c> * mean(x): its gradient is c * mean(x), one per batch."""

    def __init__(self, c, **kwargs):
        super().__init__((2, 2, 1), **kwargs)
        self.c = tf.constant(c, tf.float32)
        self.theta = tf.Variable(tf.ones_like(self.c), name="theta")

    def compute_losses(self, x, training=False):
        return {"bits_per_dim": tf.reduce_sum(self.theta * self.c) * tf.reduce_mean(x)}


def _numpy_adam_with_clip_and_skip(c, batch_means, lr, clip_norm, skip_threshold,
                                   beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Adam by its formulas, float64: theta, m, v after each batch (skipped: unchanged)."""
    theta, m, v, states = np.ones_like(c), np.zeros_like(c), np.zeros_like(c), []
    for t, mean in enumerate(batch_means, start=1):
        g = c * mean
        norm = np.linalg.norm(g)
        if norm <= skip_threshold:
            g = g * clip_norm * min(1.0 / norm, 1.0 / clip_norm)
            m = beta_1 * m + (1 - beta_1) * g
            v = beta_2 * v + (1 - beta_2) * g ** 2
            theta = theta - lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t) * m / (np.sqrt(v) + epsilon)
        states.append((theta, m, v))
    return states


def test_legacy_adam_clips_like_numpy_adam_and_a_skipped_step_changes_nothing(monkeypatch):
    """Runs train with Keras' legacy Adam, whose skip is its own update made the identity
    (`updates` module docstring): numpy's Adam gives the same weights and moments, a skipped
    step leaves them bit for bit, and the conditional update gives the same bits."""
    from keras_bdgm.models import updates

    c = np.array([0.3, -0.4, 0.5], np.float32)
    batch_means = [1.0, 4.0, 255.0, 2.0, 255.0, 1.0]   # norms 0.71, 2.8 (clipped), 180 (skipped), ...
    images = np.concatenate([np.full((1, 2, 2, 1), mean, np.uint8) for mean in batch_means])

    def train(conditional):
        if conditional:
            monkeypatch.setattr(updates, "_skips_by_coefficients", lambda *args: False)
        model = _BatchScaledLinear(c, clip_norm=1.0, skip_threshold=100.0)
        model.compile(tf.keras.optimizers.legacy.Adam(0.01))
        states = []
        for i in range(len(batch_means)):
            model.fit(images[i:i + 1], epochs=1, batch_size=1, verbose=0)
            m, v = (model.optimizer.get_slot(model.theta, name).numpy() for name in ("m", "v"))
            states.append((model.theta.numpy(), m, v))
        monkeypatch.undo()
        return states, int(model.optimizer.iterations.numpy())

    masked, iterations = train(conditional=False)
    expected = _numpy_adam_with_clip_and_skip(c.astype(np.float64), batch_means, 0.01, 1.0, 100.0)
    for got, want in zip(masked, expected):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)
    for skipped in (2, 4):
        for a, b in zip(masked[skipped], masked[skipped - 1]):
            np.testing.assert_array_equal(a, b)
    assert iterations == len(batch_means)
    conditional, _ = train(conditional=True)
    for got, want in zip(masked, conditional):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


class _PoisonedBatch(_BatchScaledLinear):
    """_BatchScaledLinear whose objective (and so its gradient) is NaN on a batch of mean 3."""

    def compute_losses(self, x, training=False):
        mean = tf.reduce_mean(x)
        poison = tf.where(tf.equal(mean, 3.0), float("nan"), 1.0)
        return {"bits_per_dim": tf.reduce_sum(self.theta * self.c) * mean * poison}


def test_a_skipped_non_finite_step_is_left_out_of_the_epochs_means():
    """One NaN batch among finite ones: its update is skipped and the epoch's bits_per_dim
    and grad_norm are the means of the other steps (numpy SGD), not NaN."""
    c = np.array([0.3, -0.4], np.float64)
    batch_means = [1.0, 3.0, 2.0, 4.0]
    images = np.concatenate([np.full((1, 2, 2, 1), mean, np.uint8) for mean in batch_means])
    model = _PoisonedBatch(c.astype(np.float32), clip_norm=1e6, skip_threshold=1e6)
    model.compile(tf.keras.optimizers.SGD(0.1))
    history = model.fit(images, epochs=1, batch_size=1, shuffle=False, verbose=0).history
    theta, losses, norms = np.ones(2), [], []
    for mean in batch_means:
        if mean == 3.0:
            continue  # skipped: theta unchanged, loss and norm left out
        losses.append(theta @ c * mean)
        norms.append(np.linalg.norm(c * mean))
        theta = theta - 0.1 * c * mean
    assert history["skipped_steps"] == [1.0]
    np.testing.assert_allclose(history["bits_per_dim"][0], np.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(history["grad_norm"][0], np.mean(norms), rtol=1e-5)
    np.testing.assert_allclose(model.theta.numpy(), theta, rtol=1e-5)
    # evaluation still shows a NaN loss as NaN
    assert math.isnan(model.evaluate(images[1:2], batch_size=1, verbose=0))


def test_the_epochs_mean_is_nan_while_every_step_was_skipped():
    model = _PoisonedBatch(np.array([1.0, 1.0], np.float32))
    model.compile(tf.keras.optimizers.SGD(0.1))
    history = model.fit(np.full((2, 2, 2, 1), 3, np.uint8), epochs=1, batch_size=1, verbose=0).history
    assert history["skipped_steps"] == [2.0] and math.isnan(history["bits_per_dim"][0])
    np.testing.assert_array_equal(model.theta.numpy(), 1.0)


def test_test_step_reports_losses_only():
    model = LinearLoss(np.array([1.0, 1.0], np.float32))
    model.compile(tf.keras.optimizers.SGD(0.1))
    assert set(model.evaluate(_data(4), verbose=0, return_dict=True)) == {"bits_per_dim"}


def test_mirrored_strategy_agrees_with_single_device(tmp_path):
    """Two logical CPUs: same update as one device, skips counted once."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import keras_bdgm, numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from test_training import _data
        from tiny import LinearLoss
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            ok = LinearLoss(np.array([3.0, 4.0], np.float32), clip_norm=0.5)
            ok.compile(tf.keras.optimizers.SGD(1.0))
            bad = LinearLoss(np.array([300.0, 400.0], np.float32))
            bad.compile(tf.keras.optimizers.SGD(1.0))
        ok.fit(_data(4, 4), epochs=1, verbose=0)
        h = bad.fit(_data(8, 4), epochs=1, verbose=0)
        print("THETA", *ok.theta.numpy(), "SKIPPED", h.history["skipped_steps"][0], *bad.theta.numpy(),
              bad.optimizer.iterations.numpy())
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("THETA")).split()
    np.testing.assert_allclose([float(line[1]), float(line[2])], [-0.3, -0.4], rtol=1e-6)
    assert float(line[4]) == 2.0 and float(line[5]) == 0.0 and float(line[6]) == 0.0
    assert int(line[7]) == 2


def test_check_images_accepts_whole_pixel_values():
    x = np.arange(8, dtype=np.uint8).reshape(2, 2, 2, 1)
    for arr in (x, x.astype(np.int64), x.astype(np.float32), tf.constant(x)):
        out = check_images(arr, (2, 2, 1))
        assert out.dtype == tf.float32
        np.testing.assert_array_equal(out.numpy(), x.astype(np.float32))


@pytest.mark.parametrize("x,message", [
    (np.zeros((2, 2, 1), np.uint8), r"shape \[N, 2, 2, 1\].*x\[None\]"),
    (np.zeros((1, 3, 2, 1), np.uint8), r"shape \[N, 2, 2, 1\]"),
    (np.full((1, 2, 2, 1), np.nan, np.float32), "NaN"),
    (np.full((1, 2, 2, 1), 256.0), "0..255"),
    (np.full((1, 2, 2, 1), -1, np.int32), "0..255"),
    (np.full((1, 2, 2, 1), 0.5), "whole numbers"),
    (np.array([[[["a"]] * 2] * 2]), "numeric"),
])
def test_check_images_rejects_bad_input(x, message):
    with pytest.raises(ValueError, match=message):
        check_images(x, (2, 2, 1))


def test_check_images_asserts_values_inside_tf_function():
    fn = tf.function(lambda x: check_images(x, (2, 2, 1)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="<= 255"):
        fn(tf.fill([1, 2, 2, 1], 300.0))


# ---------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed, expected", [
    (7, [7, 0]), (np.int64(7), [7, 0]), (np.int32(7), [7, 0]),
    ((3, 4), [3, 4]), ([3, 4], [3, 4]), (np.array([3, 4], np.int64), [3, 4]),
    (tf.constant(5), [5, 0]), (tf.constant(5, tf.int64), [5, 0]), (tf.constant([1, 2], tf.int64), [1, 2]),
    (2**32 + 3, [3, 0]),  # cast to int32 wraps, as tf.cast does
])
def test_stateless_seed_reads_ints_and_pairs(seed, expected):
    out = stateless_seed(seed)
    assert out.dtype == tf.int32 and out.shape == (2,)
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("seed", [1.5, "a", (1, 2, 3), [[1, 2]], tf.constant([1.0, 2.0]), True, (1.0, 2.0)])
def test_stateless_seed_rejects_other_values(seed):
    with pytest.raises(ValueError, match="seed"):
        stateless_seed(seed)


def test_stateless_seed_inside_a_graph():
    fn = tf.function(stateless_seed)
    np.testing.assert_array_equal(fn(tf.constant(9)).numpy(), [9, 0])
    np.testing.assert_array_equal(fn(tf.constant([4, 5])).numpy(), [4, 5])


# ---------------------------------------------------------------- the importance-weighted bound


@pytest.mark.parametrize("num_samples, batch, per_chunk, sizes", [
    (1, 8, None, [1]), (10, 8, None, [10]), (1000, 256, None, [4] * 250), (10, 256, 4, [4, 4, 2]),
    (10, None, None, [10]), (3, 2000, None, [1, 1, 1]), (5, 8, 50, [5]), (6, 8, 3, [3, 3]),
])
def test_importance_chunks_cover_the_samples_once_in_order(num_samples, batch, per_chunk, sizes):
    chunks = importance_chunks(num_samples, batch, per_chunk)
    assert [c.size for c in chunks] == sizes
    assert [c.index for c in chunks] == list(range(len(sizes)))
    assert all(c.count == len(sizes) for c in chunks)
    assert [c.start for c in chunks] == list(np.cumsum([0] + sizes[:-1]))


@pytest.mark.parametrize("name, kwargs", [
    ("num_samples", dict(num_samples=0)), ("num_samples", dict(num_samples=-3)),
    ("num_samples", dict(num_samples=2.5)), ("num_samples", dict(num_samples=True)),
    ("num_samples", dict(num_samples="4")), ("samples_per_chunk", dict(num_samples=4, samples_per_chunk=0)),
    ("samples_per_chunk", dict(num_samples=4, samples_per_chunk=1.5)),
])
def test_importance_chunks_reject_bad_arguments(name, kwargs):
    with pytest.raises(ValueError, match=name):
        importance_chunks(batch_size=8, **kwargs)


class TableModel(GenerativeModel):
    """log w[k, i] = table[k, i] for a fixed table drawn from the seed: a model whose
    log-weights are known, to test the bound's chunking against numpy."""

    MAX_SAMPLES = 64

    def __init__(self, **kwargs):
        super().__init__((2, 2, 1), **kwargs)
        self.config = {"scale": 3.0}
        self.calls = []

    def table(self, seed, n):
        return 3.0 * tf.random.stateless_normal([self.MAX_SAMPLES, n], seed=seed)

    def importance_context(self, x):
        return tf.shape(x)[0]

    def log_weights(self, context, seed, chunk):
        self.calls.append(chunk)
        return self.table(seed, context)[chunk.start:chunk.start + chunk.size]


def _numpy_bound(log_w):
    """log (1/K) sum_k exp(log_w[k]) in float64, one sample at a time."""
    log_w = np.asarray(log_w, np.float64)
    top = log_w.max(axis=0)
    return top + np.log(np.sum([np.exp(row - top) for row in log_w], axis=0)) - math.log(len(log_w))


@pytest.mark.parametrize("num_samples, per_chunk", [(1, None), (7, None), (7, 1), (7, 3), (64, 10), (64, 64)])
def test_log_prob_is_the_bound_of_the_log_weights(num_samples, per_chunk):
    model = TableModel()
    x = np.zeros((5, 2, 2, 1), np.uint8)
    got = model.log_prob(x, num_samples=num_samples, seed=(3, 4), samples_per_chunk=per_chunk)
    table = model.table(tf.constant([3, 4]), 5).numpy()
    np.testing.assert_allclose(got.numpy(), _numpy_bound(table[:num_samples]), rtol=1e-6)
    assert sum(c.size for c in model.calls) == num_samples
    bpd = model.bits_per_dim(x, num_samples=num_samples, seed=(3, 4), samples_per_chunk=per_chunk)
    np.testing.assert_allclose(bpd.numpy(), -got.numpy() / (4 * math.log(2.0)), rtol=1e-6)


def test_one_chunk_is_logsumexp_minus_log_k_exactly():
    model = TableModel()
    x = np.zeros((5, 2, 2, 1), np.uint8)
    table = model.table(tf.constant([1, 0]), 5)[:6]
    expected = tf.reduce_logsumexp(table, axis=0) - math.log(6)
    np.testing.assert_array_equal(model.log_prob(x, num_samples=6, seed=1).numpy(), expected.numpy())
    np.testing.assert_array_equal(importance_bound([tf.reduce_logsumexp(table, axis=0)], 6).numpy(), expected.numpy())


def test_log_prob_seeds_and_checks():
    model = TableModel()
    x = np.zeros((2, 2, 2, 1), np.uint8)
    # int s -> (s, 0).
    np.testing.assert_array_equal(model.log_prob(x, 3, seed=5), model.log_prob(x, 3, seed=(5, 0)))
    # None draws one seed from the model's generator.
    state = model.rng.state.numpy()
    fresh = model.log_prob(x, 3)
    model.rng.state.assign(state)
    np.testing.assert_array_equal(fresh, model.log_prob(x, 3, seed=model.rng.uniform_full_int([2], tf.int32)))
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="num_samples"):
            model.log_prob(x, num_samples=bad)
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(np.zeros((2, 3, 3, 1), np.uint8))
    assert model.hparams is model.config  # the deprecated alias
    assert GenerativeModel.num_latent_layers == 1


def test_importance_chunk_fields():
    chunk = ImportanceChunk(index=1, count=3, start=4, size=4)
    assert chunk._asdict() == {"index": 1, "count": 3, "start": 4, "size": 4}


@pytest.mark.parametrize("optimizer", [tf.keras.optimizers.Adam, tf.keras.optimizers.legacy.Adam])
def test_the_first_train_step_traces_the_model_once(optimizer):
    # A tf.function that creates variables on its first call is traced twice; the model
    # creates its optimizer's slots before Keras traces the step, so the forward pass (and
    # its gradient) is traced once. The slots then hold what the step wrote.
    model = tiny.tiny_model("pixelcnn", "w1a1", images=tiny.tiny_images(4), seed=0)
    traces = []
    compute_losses = model.compute_losses

    def counted(x, training=False):
        traces.append(training)
        return compute_losses(x, training=training)

    model.compute_losses = counted
    model.compile(optimizer(1e-3))
    model.fit(tf.data.Dataset.from_tensors(tiny.tiny_images(4)).repeat(3), epochs=1, verbose=0)
    assert traces == [True]
    assert int(model.optimizer.iterations.numpy()) == 3
    slots = [v for v in model.optimizer.variables() if "iter" not in v.name] if callable(
        model.optimizer.variables) else [v for v in model.optimizer.variables if "iteration" not in v.name]
    assert len(slots) == 2 * len(model.trainable_variables)
    assert any(np.any(v.numpy() != 0) for v in slots)


@pytest.mark.parametrize("name", ["pixelcnn", "flowpp", "resnet_vae"])
def test_the_train_test_sample_and_evaluation_graphs_are_traced_without_autograph(monkeypatch, name):
    # AutoGraph converting every layer's `call` on the first trace cost a fifth of Flow++'s
    # first train step; the models have no tensor-dependent Python control flow, so their
    # graphs are traced as written. Counts every function AutoGraph converts.
    from tensorflow.python.autograph.impl import api as autograph_api

    model = tiny.tiny_model(name, "w1a1", images=tiny.tiny_images(4), seed=0)
    model.compile(tf.keras.optimizers.legacy.Adam(1e-3))
    converted = []
    convert = autograph_api._convert_actual

    def counted(entity, program_ctx):
        converted.append(getattr(entity, "__qualname__", repr(entity)))
        return convert(entity, program_ctx)

    monkeypatch.setattr(autograph_api, "_convert_actual", counted)
    data = tf.data.Dataset.from_tensors(tiny.tiny_images(4)).repeat(2)
    model.fit(data, epochs=1, verbose=0)
    model.evaluate(data, verbose=0)
    model.sample(2, seed=0)
    evaluate_bits_per_dim(model, [tiny.tiny_images(4)], num_samples=2, verbose=0)  # the IWAE bound's graphs
    if name == "pixelcnn":
        RasterDecoder(model, 2).run(tiny.tiny_images(2))  # the codec's row and pixel graphs
    user_code = [q for q in converted if "train_function" not in q and "test_function" not in q]
    assert user_code == [], user_code
