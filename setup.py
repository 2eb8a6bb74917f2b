"""keras-bdgm: binary deep generative models (Flow++, ResNet VAE) on Keras 2, larq and TFP."""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent

setup(
    name="keras-bdgm",
    version="0.1.0",
    description=(
        "Binary deep generative models (Flow++, ResNet VAE) with 1-bit weights and "
        "activations, on Keras 2, larq and TensorFlow Probability."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_bdgm", "keras_bdgm.*"]),
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
    extras_require={"test": ["pytest>=7"], "bench": ["matplotlib"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
