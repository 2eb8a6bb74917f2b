"""The figures do not move: a fixed tiny model of each kind gives the bits/dim, samples and
packed file that the code before the package's restructuring gave.

tests/data/regression_<model>.npz was written by tests/data/make_regression.py run on the
tree at commit 9ad373d (before the model contract, the experiment split, the dataset
sources and the Flow++ step config were reorganized). Pair seeds throughout: the reading of
an int seed was unified afterwards on purpose (the ResNet VAE read s as (0, s)).

Samples and packed files bit for bit; the bounds to float rounding (about 1e-6 relative):
Flow++'s dequantization noise has since come from `keras_bdgm.models.noise` (the same with and
without XLA), which equals TensorFlow's `stateless_normal` up to rounding, and the
weight-normalized convs now fold their per-channel scale into the kernel, which rounds
differently from scaling the output.
"""

import os
import pathlib

import numpy as np
import pytest

import keras_bdgm
from keras_bdgm import memory
from keras_bdgm.runs.recipes import build_model

DATA = pathlib.Path(__file__).parent / "data"
OVERRIDES = {
    "flowpp": {"couplings": [1, 1, 1], "width": 8, "num_blocks": 1, "num_components": 3,
               "dequant_couplings": 1, "dequant_width": 8, "dequant_blocks": 1,
               "context_width": 8, "context_blocks": 1},
    "resnet_vae": {"width": 8, "latent_layers": 2, "processing_blocks": 0},
}


def _same_up_to_rounding(got, expected):
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=0)


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_fixed_model_gives_the_figures_of_the_code_before(name, tmp_path):
    fixture = np.load(DATA / f"regression_{name}.npz")
    model = build_model(name, (8, 8, 1), "w1a1", "small", **OVERRIDES[name])
    packed = tmp_path / "before.bdgm"
    packed.write_bytes(fixture["packed"].tobytes())
    memory.load_packed(model, str(packed))
    images = fixture["images"]
    _same_up_to_rounding(model.log_prob(images, num_samples=1, seed=(3, 4)).numpy(), fixture["log_prob_k1"])
    _same_up_to_rounding(model.log_prob(images, num_samples=3, seed=(5, 6)).numpy(), fixture["log_prob_k3"])
    np.testing.assert_array_equal(np.asarray(model.sample(4, seed=(7, 8))), fixture["samples"])
    # Writing the loaded weights again gives the same bytes as the code before.
    again = tmp_path / "after.bdgm"
    memory.save_packed(model, str(again))
    assert again.read_bytes() == fixture["packed"].tobytes()
    assert keras_bdgm.memory.footprint(model).parameters == model.count_params()
    assert os.path.getsize(again) == fixture["packed"].size
