"""Run folders, training callbacks, start-up log filtering and the models' argument checks.

The end-to-end behaviour (kills, resumes, script errors) is in test_scripts.py; these are
the fast unit tests of the pieces.
"""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm import _tf_import

from keras_bdgm.runs import callbacks, errors, run_dir
from keras_bdgm.models import FlowPlusPlus, ResNetVAE

SETTINGS = {"model": "flowpp", "precision": "w1a1", "preset": "small", "overrides": {"width": 8},
            "dataset": "fashion_mnist", "train_split": "train", "batch_size": 32, "learning_rate": None,
            "seed": 0, "steps_per_epoch": 10, "epochs": 3, "model_dir": "ignored"}


# ----------------------------------------------------------------------------- run folders

def test_run_stores_settings_and_rejects_other_fixed_settings(tmp_path):
    run = run_dir.Run(tmp_path / "run")
    assert run.start(SETTINGS) == "training"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["batch_size"] == 32

    again = run_dir.Run(tmp_path / "run")
    again.check({**SETTINGS, "model_dir": "elsewhere", "epochs": 5})  # paths may move, epochs grow
    again.check({**SETTINGS, "overrides": {"width": 8}})
    with pytest.raises(errors.ConfigError) as info:
        again.check({**SETTINGS, "precision": "w32a32", "seed": 1, "overrides": {"width": 16}})
    message = str(info.value)
    assert "--precision=w1a1 there, w32a32 now" in message and "--seed=0 there, 1 now" in message
    assert '--overrides={"width":8} there, {"width":16} now' in message
    assert "--batch_size" not in message and "--overwrite" in message and "--model_dir" in message
    with pytest.raises(errors.ConfigError, match="would shorten it"):
        again.check({**SETTINGS, "epochs": 2})
    again.check({**SETTINGS, "precision": "w32a32"}, overwrite=True)


def test_run_history_covers_every_process_and_drops_epochs_trained_again(tmp_path):
    run = run_dir.Run(tmp_path)
    run.start(SETTINGS)
    for epoch in range(3):
        run.record_epoch(epoch, {"bits_per_dim": 5.0 - epoch, "skipped_steps": 0.0})
    # Killed after recording epoch 3 but before its backup: the next start trains it again.
    resumed = run_dir.Run(tmp_path)
    resumed.start(SETTINGS, completed_epochs=2)
    assert resumed.epoch_logs("bits_per_dim") == [5.0, 4.0]
    resumed.record_epoch(2, {"bits_per_dim": 3.0, "skipped_steps": 0.0})
    assert resumed.epoch_logs("bits_per_dim") == [5.0, 4.0, 3.0]
    assert [s["completed_epochs"] for s in resumed.state["starts"]] == [0, 2]
    assert resumed.state["elapsed_s"] >= run.state["elapsed_s"]


def test_more_epochs_send_a_run_back_to_training(tmp_path):
    run = run_dir.Run(tmp_path)
    run.start(SETTINGS, completed_epochs=0)
    run.set_phase("writing", test_bits_per_dim=4.0)
    run.mark_written("samples.png")
    assert run_dir.Run(tmp_path).start(SETTINGS, completed_epochs=3) == "writing"
    extended = run_dir.Run(tmp_path)
    assert extended.start({**SETTINGS, "epochs": 4}, completed_epochs=3) == "training"
    assert "test_bits_per_dim" not in extended.state and extended.state["written"] == []


def test_finished_run_and_bad_model_dir(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(errors.ConfigError, match="is a file, not a folder"):
        run_dir.Run(tmp_path / "a_file").check(SETTINGS)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "report.json").write_text("{}")
    with pytest.raises(errors.RunExistsError, match="--overwrite"):
        run_dir.Run(tmp_path / "done").check(SETTINGS)  # a report and no settings
    run_dir.Run(tmp_path / "done").start(SETTINGS, overwrite=True)
    assert not (tmp_path / "done" / "report.json").exists()
    (tmp_path / "done" / "report.json").write_text("{}")
    # The same command again (e.g. after a kill just after the report): nothing to do.
    assert run_dir.Run(tmp_path / "done").check(SETTINGS) is True
    with pytest.raises(errors.RunExistsError, match="other settings [(]--epochs=3 there, 4 now[)]"):
        run_dir.Run(tmp_path / "done").check({**SETTINGS, "epochs": 4})


def test_write_atomically_leaves_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_dir.write_atomically(str(path), broken)
    assert path.read_text() == "old"
    run_dir.write_atomically(str(path), lambda tmp: open(tmp, "w").write("new"))
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


# ----------------------------------------------------------------------------- callbacks

class _Unsampleable(tf.keras.Model):
    def sample(self, n, temperature=1.0, seed=None):
        raise tf.errors.InvalidArgumentError(None, None, "the inverse CDF did not converge\nmore")


def test_sample_grid_logs_and_skips_a_grid_it_cannot_draw(tmp_path, caplog):
    grid = callbacks.SampleGrid(str(tmp_path), num=4)
    grid.set_model(_Unsampleable())
    grid.on_epoch_end(0)  # does not raise
    assert "No sample grid after epoch 1: the inverse CDF did not converge" in caplog.text


def test_divergence_guard_stops_on_non_finite_objective_or_mostly_skipped_epoch():
    guard = callbacks.DivergenceGuard(steps_per_epoch=4)
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    guard.set_model(model)
    guard.on_epoch_begin(1)
    guard.on_train_batch_end(0, {"bits_per_dim": 5.0, "skipped_steps": 2.0})  # half: still fine
    # NaN while every step so far was skipped (the model's mean leaves those out): the count judges
    guard.on_train_batch_end(0, {"bits_per_dim": math.nan, "skipped_steps": 1.0})
    guard.on_train_batch_end(1, {"bits_per_dim": math.nan, "skipped_steps": 2.0})
    # ... unless the weights are not finite: then every later step would be skipped too
    model.layers[0].kernel.assign([[math.nan], [1.0]])
    with pytest.raises(errors.DivergedError, match="epoch 2, step 1: bits_per_dim is nan"):
        guard.on_train_batch_end(0, {"bits_per_dim": math.nan, "skipped_steps": 1.0})
    for logs, expected in [({"bits_per_dim": math.nan}, "epoch 2, step 2: bits_per_dim is nan"),
                           ({"bits_per_dim": math.inf}, "bits_per_dim is inf"),
                           ({"bits_per_dim": 6e14, "skipped_steps": 3.0}, "3 of the epoch's 4 updates were skipped")]:
        with pytest.raises(errors.DivergedError, match=expected):
            guard.on_train_batch_end(1, logs)


def test_throughput_times_train_steps_without_the_first_one(monkeypatch):
    clock = iter([0.0, 100.0, 101.0, 102.0, 103.0, 200.0, 201.0])  # starts and ends of steps
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    throughput = callbacks.Throughput(batch_size=10)
    throughput.on_train_begin()
    throughput.on_epoch_begin(0)
    for step in range(3):
        throughput.on_train_batch_begin(step)
        throughput.on_train_batch_end(step)
    throughput.on_epoch_begin(1)  # the 96 s between epochs (callbacks) are not counted either
    throughput.on_train_batch_begin(0)
    throughput.on_train_batch_end(0)
    assert throughput.epoch_images == {0: 20, 1: 10} and throughput.epoch_seconds == {0: 2.0, 1: 1.0}
    assert throughput.images_per_second == 10.0


# ----------------------------------------------------------------------------- start-up logs

def test_tensorflow_start_up_lines_obey_the_log_level():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:17.1 1 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:17.2 1 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild.\n"
        "W0000 00:00:17.3 1 some_op.cc:1] a real warning\n"
        "E0000 00:00:17.4 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
        "E0000 00:00:17.5 1 other.cc:9] a real error\n"
        "Python's own output\n"
    )
    assert _tf_import.filter_lines(text, 0, drop_cuda_probe=False) == text
    assert _tf_import.filter_lines(text, 1, drop_cuda_probe=True) == (
        "W0000 00:00:17.3 1 some_op.cc:1] a real warning\n"
        "E0000 00:00:17.5 1 other.cc:9] a real error\n"
        "Python's own output\n"
    )
    kept = _tf_import.filter_lines(text, 2, drop_cuda_probe=False)
    assert "cuInit" in kept and "a real warning" not in kept  # a machine with a driver keeps it


# ----------------------------------------------------------------------------- models' arguments

TINY = {
    "flowpp": lambda: FlowPlusPlus((8, 8, 1), precision="w1a1", preset="small", couplings=(1, 1, 1), width=4,
                                   num_blocks=1, num_components=2, dequant_couplings=1, dequant_width=4,
                                   dequant_blocks=1, context_width=4, context_blocks=1),
    "resnet_vae": lambda: ResNetVAE((8, 8, 1), precision="w1a1", preset="small", width=4, latent_layers=1,
                                    processing_blocks=0),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_empty_batches_and_bad_sample_arguments_raise_value_errors(name):
    model = TINY[name]()
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    assert model.bits_per_dim(x, seed=(1, 2)).shape == (2,)
    with pytest.raises(ValueError, match="empty batch"):
        model.bits_per_dim(x[:0], seed=(1, 2))
    for n in (0, -1):
        with pytest.raises(ValueError, match=r"n >= 1|n must be >= 1"):
            model.sample(n, seed=0)
    for temperature in (0.0, -0.5):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            model.sample(2, temperature=temperature, seed=0)
    assert model.sample(1, temperature=0.5, seed=0).shape == (1, 8, 8, 1)


@pytest.mark.parametrize("saved, resumed", [("new", "legacy"), ("legacy", "new")])
def test_resuming_a_training_state_of_the_other_optimizer_kind_is_refused(tmp_path, saved, resumed):
    # Keras' legacy and new optimizers name their variables differently: restoring one's
    # state into the other silently restarts the moments and the step count.
    kinds = {"new": tf.keras.optimizers.Adam, "legacy": tf.keras.optimizers.legacy.Adam}
    model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,))])
    model.compile(kinds[saved](), "mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    tf.train.Checkpoint(model=model).save(str(tmp_path / run_dir.BACKUP_DIR / "chief" / "ckpt"))
    run = run_dir.Run(tmp_path)
    with pytest.raises(errors.ConfigError, match="cannot resume.*keras_bdgm that started it.*--overwrite"):
        run.check_optimizer_state(kinds[resumed]())
    run.check_optimizer_state(kinds[saved]())  # the same kind resumes
    run_dir.Run(tmp_path / "empty").check_optimizer_state(kinds[resumed]())  # no training state yet
