"""Importing keras_bdgm selects Keras 2, or explains why it cannot."""

import os
import subprocess
import sys

import pytest
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


# ---------------------------------------------------------------- `import larq` first


def _larq_hook_installed():
    """The start-up hook file, where pip installed keras_bdgm (else the test is skipped)."""
    import importlib.metadata
    import site

    try:
        importlib.metadata.distribution("keras-bdgm")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("keras_bdgm is not pip-installed here (no start-up hook to test)")
    paths = [os.path.join(d, "keras_bdgm_larq_first.pth") for d in [*site.getsitepackages(), site.getusersitepackages()]]
    found = [p for p in paths if os.path.exists(p)]
    assert found, f"pip-installed keras_bdgm without its start-up hook; looked for {paths}"
    return found[0]


def test_the_installed_hook_is_the_packages_own_line():
    from keras_bdgm import _larq_first

    with open(_larq_hook_installed(), encoding="utf-8") as f:
        assert f.read() == _larq_first.PTH_LINE


def test_start_up_hook_imports_nothing_heavy_and_waits_for_larq():
    _larq_hook_installed()
    out = _run("import sys\nprint(sorted(m for m in ('tensorflow', 'keras_bdgm', 'larq') if m in sys.modules))\n"
               "print(sum(getattr(f, 'keras_bdgm_larq_first', False) for f in sys.meta_path))")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]", "1"]


def test_start_up_hook_is_silent_where_another_keras_bdgm_comes_first(tmp_path):
    # e.g. an older keras_bdgm on PYTHONPATH (bench/speed.py's baseline tree), without the hook
    (tmp_path / "keras_bdgm").mkdir()
    (tmp_path / "keras_bdgm" / "__init__.py").write_text("")
    _larq_hook_installed()
    out = _run("import sys\nprint(sum(getattr(f, 'keras_bdgm_larq_first', False) for f in sys.meta_path))",
               PYTHONPATH=str(tmp_path))
    assert out.returncode == 0 and out.stderr == "" and out.stdout.split() == ["0"], out.stderr[-2000:]


def test_importing_larq_first_selects_keras_2():
    _larq_hook_installed()
    out = _run("import larq as lq\nimport keras_bdgm\nimport tensorflow as tf\nimport os, sys\n"
               "print(tf.keras.layers.Dense.__module__, os.environ['TF_USE_LEGACY_KERAS'])\n"
               "print(float(lq.quantizers.SteSign()(tf.constant(-0.3))))\n"
               "print(sum(getattr(f, 'keras_bdgm_larq_first', False) for f in sys.meta_path))")
    assert out.returncode == 0, out.stderr[-2000:]
    module, flag, sign, finders = out.stdout.split()
    assert module.startswith("tf_keras") and flag == "1" and float(sign) == -1.0
    assert finders == "0"  # the finder is gone after its one import


def test_importing_larq_after_tensorflow_with_keras_3_fails_with_instructions():
    _larq_hook_installed()
    out = _run("import tensorflow\nimport larq")
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "AttributeError" not in out.stderr
    assert "TF_USE_LEGACY_KERAS=1" in out.stderr and "before tensorflow" in out.stderr


def test_without_the_hook_larq_first_fails_inside_larq():
    # What the hook is for (and its off switch): larq alone cannot import under Keras 3.
    _larq_hook_installed()
    out = _run("import larq", KERAS_BDGM_NO_LARQ_HOOK="1")
    assert out.returncode != 0 and "AttributeError" in out.stderr


def _onednn_state(env):
    script = ("import keras_bdgm, os\nfrom keras_bdgm import _onednn\n"
              "print('STATE', os.environ.get('TF_ENABLE_ONEDNN_OPTS'), _onednn.enabled())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**{k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return next(line for line in out.stdout.splitlines() if line.startswith("STATE")).split()[1:]


def test_importing_keras_bdgm_turns_on_onednn_unless_the_user_set_the_variable():
    assert _onednn_state({}) == ["1", "True"]
    assert _onednn_state({"TF_ENABLE_ONEDNN_OPTS": "0"}) == ["0", "False"]


def test_prefer_onednn_leaves_a_loaded_tensorflow_and_a_set_variable_alone(monkeypatch):
    from keras_bdgm import _onednn

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert _onednn.prefer_onednn() is False  # TensorFlow is loaded in this process
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
