"""XLA for the train step: `compile`'s default (`default_jit_compile`; an explicit jit_compile
wins), the XLA train step against the tf.function one, and the XLA step through the
persistent cache (`keras_bdgm.xla_cache`) in fresh processes.

Every model's noise (Flow++'s dequantization noise, the VAE's latent draws and split seeds,
dropout masks) comes from `keras_bdgm.models.noise` (the same with and without XLA;
tests/test_noise.py), so the XLA step gives the tf.function step's losses and weights up to
float rounding. No model compiles with XLA by default (its compilation costs start-up); a
training run compiles the VAE's step with XLA when the run is long enough to repay it.
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_bdgm
from keras_bdgm.models import FlowPlusPlus, ResNetVAE

import tiny

Linear = tiny.LinearLoss  # objective = <theta, c>: its gradient is c (norm 5 for c = (3, 4))


def _tiny_flow(precision="w1a1"):
    return tiny.tiny_model("flowpp", precision)


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


def test_models_compile_without_xla_by_default_and_with_it_when_told():
    # XLA's compilation costs about a minute of start-up on 2 cores (BENCHMARKS.md): no
    # model compiles with it unless told.
    assert FlowPlusPlus.default_jit_compile is False and ResNetVAE.default_jit_compile is False
    model = _tiny_flow()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    assert model.jit_compile is False
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), jit_compile=True)  # the user's True wins
    assert model.jit_compile is True


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


def _train_tiny_flow(precision, jit, steps=3, name="flowpp", **changes):
    """(logs per step, weights) of a tiny model `name` (Flow++ by default) after `steps` train
    steps on one batch, from the same initial weights and generator state for either jit."""
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (4, *tiny.SHAPE), dtype=np.uint8)
    model = tiny.tiny_model(name, precision, **changes)
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
def test_flowpp_xla_train_step_matches_tf_function(precision):
    # larq's sign ops, the fused negation (w1a1), TFP's bijectors, the noise, the clip-or-skip
    # cond and Adam under XLA: 3 steps give the tf.function step's losses, gradient norms and
    # weights.
    expected = _train_tiny_flow(precision, jit=False)
    _assert_same_training(_train_tiny_flow(precision, jit=True), expected)


@pytest.mark.parametrize("precision, dropout", [("w1a1", 0.0), ("w32a32", 0.2)])
def test_resnet_vae_xla_train_step_matches_tf_function(precision, dropout):
    # The latent draws (split seeds, logistic samples) and, at w32a32, the dropout masks are
    # XLA's and TensorFlow's alike: before they were, XLA drew other noise (weights 1.1 apart).
    expected = _train_tiny_flow(precision, jit=False, name="resnet_vae", dropout=dropout)
    _assert_same_training(_train_tiny_flow(precision, jit=True, name="resnet_vae", dropout=dropout), expected)


def test_flowpp_xla_train_step_with_dropout_matches_tf_function():
    expected = _train_tiny_flow("w32a32", jit=False, dropout=0.2)
    _assert_same_training(_train_tiny_flow("w32a32", jit=True, dropout=0.2), expected)


_CHILD = """
import pickle, sys
sys.path.insert(0, {tests!r})
import keras_bdgm
import test_xla
assert keras_bdgm.xla_cache.directory() is not None, keras_bdgm.xla_cache.note()
result = test_xla._train_tiny_flow({precision!r}, jit=True, name={name!r})
pickle.dump(result, open({out!r}, "wb"))
"""


def _train_tiny_flow_in_a_fresh_process(tmp_path, cache, precision, run, name="flowpp"):
    out = str(tmp_path / f"run{run}.pkl")
    code = _CHILD.format(tests=os.path.dirname(__file__), precision=precision, out=out, name=name)
    env = {**os.environ, "KERAS_BDGM_XLA_CACHE": str(cache)}
    env.pop("TF_XLA_FLAGS", None)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    with open(out, "rb") as f:
        return pickle.load(f)


def _cache_entries(cache):
    return {p.name: p.stat().st_mtime_ns for p in cache.rglob("*.pb")}


def test_the_cached_xla_step_gives_the_tf_function_steps_numbers_and_survives_bad_entries(tmp_path):
    # Fresh processes sharing one cache folder: the first compiles and stores the step, the
    # second loads it (no entry written or changed), a third finds the entry corrupted
    # and a fourth finds a foreign (unsigned) one there: both compile again instead of
    # failing. Every one gives the tf.function step's losses and weights.
    cache = tmp_path / "xla_cache"
    expected = _train_tiny_flow("w1a1", jit=False)
    _assert_same_training(_train_tiny_flow_in_a_fresh_process(tmp_path, cache, "w1a1", 1), expected)
    entries = _cache_entries(cache)
    signed = {p.name[: -len(".sha256")] for p in cache.rglob("*.pb.sha256")}
    assert entries and signed == set(entries)  # every entry this process wrote, signed at exit
    _assert_same_training(_train_tiny_flow_in_a_fresh_process(tmp_path, cache, "w1a1", 2), expected)
    assert _cache_entries(cache) == entries  # loaded, not compiled again

    entry = sorted(cache.rglob("*.pb"))[0]
    with open(entry, "r+b") as f:  # truncated: TensorFlow alone fails the step on this
        f.truncate(entry.stat().st_size // 2)
    _assert_same_training(_train_tiny_flow_in_a_fresh_process(tmp_path, cache, "w1a1", 3), expected)
    assert _cache_entries(cache).keys() == entries.keys()
    assert keras_bdgm.xla_cache.prune(str(entry.parent)) == []  # compiled again and signed

    data = entry.read_bytes()  # a foreign entry: another writer's bytes, unsigned
    entry.write_bytes(data[: len(data) // 3] + b"\0" * 100)
    os.remove(str(entry) + ".sha256")
    _assert_same_training(_train_tiny_flow_in_a_fresh_process(tmp_path, cache, "w1a1", 4), expected)
    assert entry.read_bytes() != data[: len(data) // 3] + b"\0" * 100  # compiled again
    assert os.path.exists(str(entry) + ".sha256") and keras_bdgm.xla_cache.prune(str(entry.parent)) == []


def _run_config(tmp_path, **fields):
    from keras_bdgm.runs import experiment
    settings = dict(model="resnet_vae", precision="w1a1", dataset="fashion_mnist", epochs=3, steps_per_epoch=2,
                    batch_size=8, eval_examples=8, model_dir=str(tmp_path / "run"),
                    overrides=tiny.overrides("resnet_vae"), verbose=0, num_samples_grid=4)
    return experiment.TrainConfig(**{**settings, **fields})


@pytest.mark.parametrize("jit_compile, done, expected", [
    (None, 0, True),    # 3 x 2 = 6 steps ahead: the break-even (6) is reached
    (None, 1, None),    # resumed after epoch 1: 4 steps ahead, the model's default
    (False, 0, False),  # the run's own choice wins either way
    (True, 2, True),
])
def test_a_run_compiles_with_xla_when_enough_steps_are_ahead(tmp_path, monkeypatch, jit_compile, done, expected):
    from keras_bdgm.runs import experiment
    monkeypatch.setattr(ResNetVAE, "xla_break_even_steps", 6)
    config = _run_config(tmp_path, jit_compile=jit_compile)
    assert experiment._jit_compile(config, tiny.tiny_model("resnet_vae"), done) is expected
    flow_config = _run_config(tmp_path, model="flowpp", overrides=tiny.overrides("flowpp"), jit_compile=jit_compile)
    assert FlowPlusPlus.xla_break_even_steps is None  # no break-even measured: never chosen for it
    assert experiment._jit_compile(flow_config, _tiny_flow(), done) is jit_compile


def test_a_long_enough_run_trains_its_vae_with_xla(tmp_path, monkeypatch, png_folder):
    from keras_bdgm.runs import experiment
    monkeypatch.setattr(ResNetVAE, "xla_break_even_steps", 4)
    seen = []

    class Record(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.model.jit_compile)

    dataset = png_folder
    report = experiment.train(_run_config(tmp_path, dataset=dataset, epochs=2), callbacks=[Record()])
    assert seen == [True]
    assert np.isfinite(report["test_bits_per_dim"]) and len(report["train_bits_per_dim"]) == 2
    report = experiment.train(_run_config(tmp_path, dataset=dataset, epochs=1, model_dir=str(tmp_path / "short")),
                              callbacks=[Record()])
    assert seen == [True, False]  # 2 steps: below the break-even, the tf.function step


def test_a_long_vae_runs_cached_xla_step_gives_the_tf_function_steps_numbers(tmp_path):
    # What a resumed long VAE run does: its XLA step compiled in one process, loaded from the
    # cache in the next; both give the tf.function step's numbers.
    cache = tmp_path / "xla_cache"
    expected = _train_tiny_flow("w1a1", jit=False, name="resnet_vae")
    _assert_same_training(_train_tiny_flow_in_a_fresh_process(tmp_path, cache, "w1a1", 1, "resnet_vae"), expected)
    entries = _cache_entries(cache)
    assert entries
    _assert_same_training(_train_tiny_flow_in_a_fresh_process(tmp_path, cache, "w1a1", 2, "resnet_vae"), expected)
    assert _cache_entries(cache) == entries  # loaded, not compiled again
