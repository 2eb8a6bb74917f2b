"""Test set-up: a data folder of the session's own, quiet TensorFlow, Keras 2 before
TensorFlow, deterministic seeds.

Hermetic data: the tests prepare Fashion-MNIST (and anything else tfds would keep in
`~/tensorflow_datasets`, Keras in `~/.keras`) into a folder this test session owns,
never into the home directory (which Bazel's sandbox makes read-only). Under `bazel test`
that is `$TEST_TMPDIR/keras_bdgm`; under plain pytest a new temporary folder, deleted at the
end. `TFDS_DATA_DIR`, `KERAS_HOME` and `KERAS_BDGM_XLA_CACHE` point into it, so subprocesses (the example scripts)
inherit it. `KERAS_BDGM_TEST_DATA_DIR=/some/folder` makes sessions share one tfds data
folder instead (preparing it once; preparation is atomic and locked, so parallel sessions
are safe), e.g. to save the half minute Fashion-MNIST takes to prepare. With pytest-xdist
(`pytest -n 2`) the workers use the controlling process's folder, so they prepare the data
once between them.
"""

import os
import shutil
import tempfile

SHARED_DATA_DIR_ENV = "KERAS_BDGM_TEST_DATA_DIR"
_SESSION_DIR_ENV = "KERAS_BDGM_TEST_SESSION_DIR"


def _session_dir():
    """The session's own folder, and whether to delete it at the end."""
    if os.environ.get("TEST_TMPDIR"):  # Bazel: the test's scratch folder, deleted by Bazel
        path = os.path.join(os.environ["TEST_TMPDIR"], "keras_bdgm")
        os.makedirs(path, exist_ok=True)
        return path, False
    if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get(_SESSION_DIR_ENV):
        return os.environ[_SESSION_DIR_ENV], False  # pytest -n: the controller's folder (it deletes it)
    path = tempfile.mkdtemp(prefix="keras_bdgm-tests-")
    os.environ[_SESSION_DIR_ENV] = path  # inherited by pytest-xdist's workers
    return path, True


SESSION_DIR, _DELETE_SESSION_DIR = _session_dir()
os.environ["TFDS_DATA_DIR"] = os.environ.get(SHARED_DATA_DIR_ENV) or os.path.join(SESSION_DIR, "tensorflow_datasets")
os.environ["KERAS_HOME"] = os.path.join(SESSION_DIR, "keras")  # tf_keras writes keras.json at import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BDGM_XLA_CACHE"] = os.path.join(SESSION_DIR, "xla_cache")  # never ~/.cache

import keras_bdgm  # noqa: E402,F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    tf.keras.backend.clear_session()


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory):
    """A folder dataset: 28x28 grey PNGs, train/ (64) and test/ (16)."""
    from keras_bdgm import image_grid

    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    for split, n in (("train", 64), ("test", 16)):
        os.makedirs(root / split)
        for i in range(n):
            blob = 200 * np.exp(-((yy - 14 - i % 5) ** 2 + (xx - 14) ** 2) / 40.0)
            image = np.clip(blob + rng.normal(0, 10, (28, 28)), 0, 255).astype(np.uint8)
            image_grid.write_png(root / split / f"{i:03d}.png", image[..., None])
    return f"folder:{root}"


@pytest.fixture(scope="module")
def vae():
    """A tiny initialized w1a1 ResNetVAE (tests/tiny.py), shared by a module's tests."""
    import tiny
    return tiny.tiny_model("resnet_vae", "w1a1", images=tiny.tiny_images(16), seed=0)


@pytest.fixture(scope="module")
def flow():
    """A tiny initialized w1a1 FlowPlusPlus (tests/tiny.py), shared by a module's tests."""
    import tiny
    return tiny.tiny_model("flowpp", "w1a1", images=tiny.tiny_images(16), seed=0)


def pytest_unconfigure(config):
    del config
    if _DELETE_SESSION_DIR:
        shutil.rmtree(SESSION_DIR, ignore_errors=True)
