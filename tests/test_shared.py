"""`keras_bdgm.bijectors.shared.shared_in_graphs`: one trace for every call in graphs, the
same values and gradients as the function run inline, eager calls untouched."""

import numpy as np
import tensorflow as tf

from keras_bdgm.bijectors import mixture_logistic as mixlog
from keras_bdgm.bijectors.shared import shared_in_graphs


def _softplus_sum(x, w):
    return tf.reduce_sum(tf.nn.softplus(x * w), axis=-1)


def _numpy_softplus_sum(x, w):
    return np.log1p(np.exp(x * w)).sum(-1)


def test_graphs_trace_the_shared_function_at_most_twice_and_get_its_values_and_gradients():
    calls = []

    def counted(x, w):
        calls.append(tuple(x.shape))
        return _softplus_sum(x, w)

    shared = shared_in_graphs(counted)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=shape) for shape in [(2, 3), (2, 3), (4, 3), (5, 3), (1, 3), (4, 3)]]
    w = tf.constant(rng.normal(size=3))

    @tf.function(autograph=False)
    def values_and_gradients(*xs):
        with tf.GradientTape() as tape:
            tape.watch(xs)
            ys = [shared(x, w) for x in xs]
            total = tf.add_n([tf.reduce_sum(y * (i + 1)) for i, y in enumerate(ys)])
        return ys, tape.gradient(total, xs)

    ys, grads = values_and_gradients(*[tf.constant(x) for x in xs])
    assert len(calls) <= 2, calls  # the first shape, then one relaxed trace for all shapes
    for i, (x, y, g) in enumerate(zip(xs, ys, grads)):
        np.testing.assert_allclose(y.numpy(), _numpy_softplus_sum(x, w.numpy()), rtol=1e-12)
        sigmoid = 1 / (1 + np.exp(-x * w.numpy()))
        np.testing.assert_allclose(g.numpy(), (i + 1) * sigmoid * w.numpy(), rtol=1e-12)


def test_eager_calls_run_the_function_itself():
    calls = []

    def counted(x):
        calls.append(tf.executing_eagerly())
        return x + 1

    shared = shared_in_graphs(counted)
    assert float(shared(tf.constant(1.0))) == 2.0
    assert calls == [True] and shared.traced.experimental_get_tracing_count() == 0


def test_the_root_finder_is_traced_once_or_twice_for_many_couplings_in_a_graph():
    """Flow++'s sampling inverts one coupling after another: the search is shared."""
    rng = np.random.default_rng(1)
    before = mixlog._inverse_logit_cdf.traced.experimental_get_tracing_count()  # pylint: disable=protected-access
    params = [[tf.constant(rng.normal(size=(n, 3, 4)).astype(np.float32)) for _ in range(3)]
              for n in (2, 2, 5, 7, 7)]
    targets = [tf.constant(rng.normal(size=(p[0].shape[0], 3)).astype(np.float32)) for p in params]

    @tf.function(autograph=False)
    def invert_all():
        return [mixlog.inverse_logit_cdf(y, *p) for y, p in zip(targets, params)]

    for (x, converged), y, p in zip(invert_all(), targets, params):
        assert bool(tf.reduce_all(converged))
        np.testing.assert_allclose(mixlog.logit_cdf(x, *p).numpy(), y.numpy(), atol=2e-4)
    assert mixlog._inverse_logit_cdf.traced.experimental_get_tracing_count() - before <= 2  # pylint: disable=protected-access


def test_inlined_traces_the_function_into_the_graph_on_this_thread_only_while_inside():
    from keras_bdgm.bijectors import shared as shared_module

    calls = []
    fn = shared_in_graphs(lambda x: calls.append(1) or x * 2)

    @tf.function(autograph=False)
    def twice(x):
        with shared_module.inlined(True):
            a, b = fn(x), fn(x + 1)
        return a + b + fn(x + 2)

    assert float(twice(tf.constant(1.0))) == 2 + 4 + 6
    assert len(calls) == 3 and fn.traced.experimental_get_tracing_count() == 1  # two inline, one shared
    with shared_module.inlined(False):
        assert not getattr(shared_module._INLINE, "on", False)  # pylint: disable=protected-access
