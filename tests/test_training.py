"""The shared train step: clipping, skipping, metrics, distribution; image checks."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm.images import check_images
from keras_bdgm.training import GenerativeModel


class LinearLoss(GenerativeModel):
    """objective = <theta, c>: its gradient is c, whatever the batch."""

    def __init__(self, c, **kwargs):
        super().__init__((2, 2, 1), **kwargs)
        self.c = tf.constant(c, tf.float32)
        self.theta = tf.Variable(tf.zeros_like(self.c), name="theta")

    def compute_losses(self, x, training=False):
        return {"bits_per_dim": tf.reduce_sum(self.theta * self.c) + 0.0 * tf.reduce_mean(x)}


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
        from test_training import LinearLoss, _data
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
