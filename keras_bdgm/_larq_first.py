"""Makes `import larq` before `import keras_bdgm` work: installed as a start-up hook.

larq needs Keras 2 (tf_keras), which TensorFlow 2.16+ gives `tf.keras` only when the
environment variable TF_USE_LEGACY_KERAS=1 is set before TensorFlow is first imported.
`import keras_bdgm` sets it; a script that imports larq first would otherwise fail inside
larq with an AttributeError about `tf.keras.layers.LocallyConnected1D`.

keras_bdgm's installation adds `keras_bdgm_larq_first.pth` to site-packages, which runs this
file (by path, without importing the keras_bdgm package or TensorFlow) at Python start-up.
It puts one import finder on `sys.meta_path` that acts once, on the first `import larq`:

* TensorFlow not imported yet: set TF_USE_LEGACY_KERAS=1 (unless the variable is set
  already), as `import keras_bdgm` would; larq then imports and works.
* TensorFlow already imported with Keras 3: raise keras_bdgm's ImportError, which says
  what to do, instead of larq's AttributeError.

It finds nothing itself (larq is imported as usual) and takes itself off `sys.meta_path`
after that first import. Set KERAS_BDGM_NO_LARQ_HOOK=1 to leave it out.
"""

import os
import sys

KERAS_3_MESSAGE = (
    "{who} needs Keras 2 (tf_keras), but TensorFlow was already imported with Keras 3. "
    "Import keras_bdgm before tensorflow, or set the environment variable "
    "TF_USE_LEGACY_KERAS=1 before starting Python (e.g. `TF_USE_LEGACY_KERAS=1 python train.py`)."
)


def legacy_keras_selected():
    """Whether TF_USE_LEGACY_KERAS asks TensorFlow for Keras 2."""
    return os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true")


def select_legacy_keras(who="keras_bdgm"):
    """Sets TF_USE_LEGACY_KERAS=1, or raises ImportError if TensorFlow is already imported
    with Keras 3 (too late to switch)."""
    if "tensorflow" in sys.modules and not legacy_keras_selected():
        raise ImportError(KERAS_3_MESSAGE.format(who=who))
    os.environ["TF_USE_LEGACY_KERAS"] = "1"


class LarqFirstFinder:
    """A `sys.meta_path` finder that selects Keras 2 on the first `import larq`."""

    keras_bdgm_larq_first = True  # how `install` and `uninstall` know it (whichever copy of this file)

    def find_spec(self, name, path=None, target=None):  # noqa: ARG002  (the finder protocol)
        if name == "larq":
            uninstall()
            if "TF_USE_LEGACY_KERAS" not in os.environ or "tensorflow" in sys.modules:
                select_legacy_keras(who="larq (and keras_bdgm)")
        return None  # the usual finders import larq


def install():
    """Puts the finder first on `sys.meta_path` (once; not with KERAS_BDGM_NO_LARQ_HOOK=1)."""
    if os.environ.get("KERAS_BDGM_NO_LARQ_HOOK") or "larq" in sys.modules:
        return
    if not any(getattr(f, "keras_bdgm_larq_first", False) for f in sys.meta_path):
        sys.meta_path.insert(0, LarqFirstFinder())


def uninstall():
    """Takes the finder off `sys.meta_path`."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "keras_bdgm_larq_first", False)]


# The one line of keras_bdgm_larq_first.pth (setup.py writes it into site-packages): runs this
# file by path, so that neither the keras_bdgm package nor TensorFlow is imported at start-up,
# and does nothing where the keras_bdgm found first has no such file (another version of it on
# PYTHONPATH, say).
PTH_LINE = (
    "import os, importlib.util as u; s = u.find_spec('keras_bdgm'); "
    "p = s and s.origin and os.path.join(os.path.dirname(s.origin), '_larq_first.py'); "
    "s = p and os.path.isfile(p) and u.spec_from_file_location('_keras_bdgm_larq_first', p); "
    "s and s.loader.exec_module(u.module_from_spec(s))\n"
)

if __name__ == "_keras_bdgm_larq_first":  # run from the .pth file
    install()
