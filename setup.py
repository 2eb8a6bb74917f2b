"""keras-bdgm: binary deep generative models (Flow++, ResNet VAE) on Keras 2, larq and TFP."""

import pathlib
import runpy

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

HERE = pathlib.Path(__file__).parent
LARQ_FIRST_PTH = "keras_bdgm_larq_first.pth"


def write_startup_hook(directory):
    """Writes keras_bdgm_larq_first.pth into `directory` (site-packages once installed): a
    start-up hook that makes `import larq` before `import keras_bdgm` select Keras 2 (see
    keras_bdgm/_larq_first.py; KERAS_BDGM_NO_LARQ_HOOK=1 turns it off)."""
    line = runpy.run_path(str(HERE / "keras_bdgm" / "_larq_first.py"))["PTH_LINE"]
    target = pathlib.Path(directory) / LARQ_FIRST_PTH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(line, encoding="utf-8")
    return str(target)


class BuildPyWithStartupHook(build_py):
    """Wheels get the hook beside the package; an editable wheel (PEP 660) gets it at the
    root of the wheel it is assembling (the `install` command's install_lib)."""

    def _hook_directory(self):
        if getattr(self, "editable_mode", False):
            return self.get_finalized_command("install").install_lib
        return self.build_lib

    def run(self):
        super().run()
        write_startup_hook(self._hook_directory())

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode), str(pathlib.Path(self._hook_directory()) / LARQ_FIRST_PTH)]


class DevelopWithStartupHook(develop):
    """`pip install -e .` through `setup.py develop` (pip without PEP 660 for this project)."""

    def run(self):
        super().run()
        if not self.uninstall:
            write_startup_hook(self.install_dir)


setup(
    name="keras-bdgm",
    version="0.3.1",
    description=(
        "Binary deep generative models (Flow++, ResNet VAE) with 1-bit weights and "
        "activations, on Keras 2, larq and TensorFlow Probability."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_bdgm", "keras_bdgm.*"]),
    cmdclass={"build_py": BuildPyWithStartupHook, "develop": DevelopWithStartupHook},
    # The trained 1-bit models (packed weights and their records) ship inside the package.
    package_data={"keras_bdgm.pretrained": ["*.bdgm", "*.json"]},
    install_requires=[
        "tensorflow>=2.18,<2.22",
        # tf-keras must match tensorflow's minor version; pip resolves the pair together.
        "tf-keras>=2.18,<2.22",
        "larq>=0.14",
        "tensorflow-probability>=0.25",
        "tensorflow-datasets>=4.9",
        "importlib_resources",
        "keras-tuner>=1.4",
        "absl-py",
        # tf.keras.callbacks.TensorBoard writes summaries only with tensorboard installed.
        "tensorboard",
        "numpy",
        "pillow",
        # ANS entropy coder of keras_bdgm.compression (bits-back lossless image coding).
        "constriction>=0.4",
    ],
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3"], "bench": ["matplotlib"]},
    entry_points={"console_scripts": ["keras-bdgm-compress = keras_bdgm.compression.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
