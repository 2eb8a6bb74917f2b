"""keras_bdgm.models.evaluation: the compiled, batched bits/dim gives the eager loop's figures,
traces once per batch shape, shows progress and rejects bad arguments."""

import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm.models import evaluation

import tiny

SHAPE = tiny.SHAPE


def _images(n=20, seed=0):
    return tiny.tiny_images(n, seed)


def _eager_loop(model, dataset, num_samples=1, seed=0, samples_per_chunk=None):
    """The former evaluation loop: eager `bits_per_dim` per batch, batch i seeded (seed, i),
    the mean over images in float64."""
    total, count = 0.0, 0
    for i, batch in enumerate(dataset):
        images = batch["image"] if isinstance(batch, dict) else batch
        bpd = model.bits_per_dim(images, num_samples=num_samples, seed=(seed, i),
                                 samples_per_chunk=samples_per_chunk)
        bpd = np.asarray(bpd, np.float64)
        total += bpd.sum()
        count += bpd.size
    return total / count


@pytest.mark.parametrize("name", ["vae", "flow"])
@pytest.mark.parametrize("num_samples, per_chunk", [(1, None), (5, 2)])
def test_same_figure_as_the_eager_loop(name, num_samples, per_chunk, request):
    model = request.getfixturevalue(name)
    ds = tf.data.Dataset.from_tensor_slices(_images(20)).batch(8)  # batches of 8, 8, 4
    want = _eager_loop(model, ds, num_samples, seed=3, samples_per_chunk=per_chunk)
    got = evaluation.evaluate_bits_per_dim(model, ds, num_samples=num_samples, seed=3,
                                           samples_per_chunk=per_chunk, verbose=0)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-6, abs=0)  # graph vs eager: float32 rounding only
    other_seed = evaluation.evaluate_bits_per_dim(model, ds, num_samples=num_samples, seed=4,
                                                  samples_per_chunk=per_chunk, verbose=0)
    assert other_seed != got


@pytest.mark.parametrize("name", ["vae", "flow"])
def test_evaluator_gives_log_prob(name, request):
    model = request.getfixturevalue(name)
    x = _images(6)
    evaluator = evaluation.evaluator_for(model)
    assert evaluation.evaluator_for(model) is evaluator
    chunks = []
    got = evaluator.log_prob(x, num_samples=7, seed=(2, 5), samples_per_chunk=3,
                             on_chunk=lambda done, total: chunks.append((done, total)))
    want = model.log_prob(x, num_samples=7, seed=(2, 5), samples_per_chunk=3)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    assert chunks == [(1, 3), (2, 3), (3, 3)]


def test_traced_once_per_batch_shape(vae):
    evaluator = evaluation.evaluator_for(vae)
    ds = tf.data.Dataset.from_tensor_slices(_images(28)).batch(8)  # 8, 8, 8, 4
    evaluation.evaluate_bits_per_dim(vae, ds, seed=0, verbose=0)
    context, chunk = evaluator.context_fn, evaluator.chunk_fn
    counts = context.experimental_get_tracing_count(), chunk.experimental_get_tracing_count()
    assert evaluator.tracing_count == sum(counts)
    evaluation.evaluate_bits_per_dim(vae, ds, seed=1, verbose=0)
    evaluation.evaluate_bits_per_dim(vae, ds.take(3), seed=2, verbose=0)
    assert (context.experimental_get_tracing_count(), chunk.experimental_get_tracing_count()) == counts
    # A new batch shape traces each graph once more, then no more.
    evaluation.evaluate_bits_per_dim(vae, ds, seed=0, batch_size=5, verbose=0)
    evaluation.evaluate_bits_per_dim(vae, ds, seed=9, batch_size=5, verbose=0)
    assert context.experimental_get_tracing_count() == counts[0] + 2  # batches of 5 and the last, 3
    assert chunk.experimental_get_tracing_count() == counts[1] + 2


def test_fresh_evaluator_traces_once_per_shape_and_chunk_size(vae):
    evaluator = evaluation.BoundEvaluator(vae)
    for i in range(3):
        evaluator.log_prob(_images(8, seed=i), num_samples=5, seed=(0, i), samples_per_chunk=2)  # sizes 2, 2, 1
    assert evaluator.context_fn.experimental_get_tracing_count() == 1
    assert evaluator.chunk_fn.experimental_get_tracing_count() == 2


def test_rebatching_and_element_structures(vae):
    x = _images(20)
    by_4 = evaluation.evaluate_bits_per_dim(vae, tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0)
    rebatched = [
        tf.data.Dataset.from_tensor_slices(x).batch(7),
        tf.data.Dataset.from_tensor_slices({"image": x, "label": np.arange(20)}).batch(6),
        tf.data.Dataset.from_tensor_slices((x, np.arange(20))).batch(3),
        [x[:9], x[9:]],  # any iterable of batches
    ]
    for ds in rebatched:
        assert evaluation.evaluate_bits_per_dim(vae, ds, batch_size=4, verbose=0) == by_4
    dicts = tf.data.Dataset.from_tensor_slices({"image": x}).batch(4)
    assert evaluation.evaluate_bits_per_dim(vae, dicts, verbose=0) == by_4
    # Other batches, other noise: a close but different estimate.
    by_5 = evaluation.evaluate_bits_per_dim(vae, [x], batch_size=5, verbose=0)
    assert by_5 != by_4 and by_5 == pytest.approx(by_4, abs=0.5)


def test_progress_bar_shows_batches_and_running_bits_per_dim(vae, capsys):
    ds = tf.data.Dataset.from_tensor_slices(_images(12)).batch(4)
    figure = evaluation.evaluate_bits_per_dim(vae, ds, verbose=1)
    out = capsys.readouterr().out
    assert "3/3" in out and "bits_per_dim" in out and f"{figure:.4f}" in out
    evaluation.evaluate_bits_per_dim(vae, ds, verbose=0)
    assert capsys.readouterr().out == ""
    evaluation.evaluate_bits_per_dim(vae, ds, verbose=2)
    assert "bits_per_dim" in capsys.readouterr().out


def test_progress_moves_per_chunk_of_samples(vae, monkeypatch):
    seen = []
    update = tf.keras.utils.Progbar.update
    monkeypatch.setattr(tf.keras.utils.Progbar, "update",
                        lambda self, current, *a, **k: seen.append(current) or update(self, current, *a, **k))
    ds = tf.data.Dataset.from_tensor_slices(_images(8)).batch(4)
    evaluation.evaluate_bits_per_dim(vae, ds, num_samples=4, samples_per_chunk=1, verbose=1)
    assert seen[:4] == [0.25, 0.5, 0.75, 1] and seen[4:8] == [1.25, 1.5, 1.75, 2]


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(batch_size=-2), "batch_size must be >= 1"),
    (dict(batch_size=2.5), "batch_size must be an integer"),
    (dict(num_samples=0), "num_samples must be >= 1"),
    (dict(num_samples=1.5), "num_samples must be an integer"),
    (dict(samples_per_chunk=0), "samples_per_chunk must be >= 1"),
    (dict(seed=None), "seed must be an integer"),
    (dict(verbose=3), "verbose must be 0, 1 or 2"),
])
def test_bad_arguments_raise_value_errors(vae, kwargs, message):
    ds = tf.data.Dataset.from_tensor_slices(_images(4)).batch(2)
    with pytest.raises(ValueError, match=message):
        evaluation.evaluate_bits_per_dim(vae, ds, **{"verbose": 0, **kwargs})


def test_empty_infinite_and_bad_datasets_raise_value_errors(vae):
    empty = tf.data.Dataset.from_tensor_slices(np.zeros((0, *SHAPE), np.uint8)).batch(4)
    for ds, kwargs in [(empty, {}), (empty, dict(batch_size=2)), ([], {}), ([], dict(batch_size=2)),
                       (empty.filter(lambda x: True), {})]:
        with pytest.raises(ValueError, match="empty"):
            evaluation.evaluate_bits_per_dim(vae, ds, verbose=0, **kwargs)
    with pytest.raises(ValueError, match="infinite"):
        evaluation.evaluate_bits_per_dim(vae, tf.data.Dataset.from_tensor_slices(_images(4)).batch(2).repeat())
    with pytest.raises(ValueError, match="shape"):
        evaluation.evaluate_bits_per_dim(vae, [_images(4)[:, :4]], verbose=0)
    with pytest.raises(ValueError, match="0..255"):
        evaluation.evaluate_bits_per_dim(vae, [np.full((2, *SHAPE), 300.0)], verbose=0)
