"""Importing keras_bdgm selects Keras 2, or explains why it cannot."""

import os
import subprocess
import sys

import tensorflow as tf

import keras_bdgm


def _run(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    environ.update(TF_CPP_MIN_LOG_LEVEL="2", **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300)


def test_keras_2_is_selected_in_this_process():
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tf.keras.layers.Dense.__module__.startswith("tf_keras")


def test_importing_tensorflow_first_with_keras_3_fails_with_instructions():
    out = _run("import tensorflow\nimport keras_bdgm")
    assert out.returncode != 0
    assert "ImportError" in out.stderr
    assert "TF_USE_LEGACY_KERAS=1" in out.stderr and "before tensorflow" in out.stderr


def test_importing_tensorflow_first_is_fine_when_legacy_keras_was_set():
    out = _run("import tensorflow as tf\nimport keras_bdgm\nprint(tf.keras.layers.Dense.__module__)", TF_USE_LEGACY_KERAS="1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("tf_keras")


def test_public_api():
    assert callable(keras_bdgm.initialize)
    for name in ("WNConv2D", "WNDense", "WNConv2DTranspose", "BWNConv2D", "BWNDense"):
        assert hasattr(keras_bdgm.layers, name)
    assert keras_bdgm.precision.parse("W1A32").binary_weights
