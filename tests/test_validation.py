"""ValidationCurve: held-out bits/dim with fixed noise, recorded by step, kept on resume."""

import json

import keras_bdgm
import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm.models import FlowPlusPlus, ResNetVAE
from keras_bdgm.runs.validation import ValidationCurve


def _tiny(cls):
    tf.keras.utils.set_random_seed(0)
    if cls is ResNetVAE:
        model = cls((8, 8, 1), precision="w1a1", preset="small", width=8, latent_layers=2, processing_blocks=0)
    else:
        model = cls((8, 8, 1), precision="w1a1", preset="small", width=8, num_blocks=1, couplings=(1, 1, 1),
                    dequant_couplings=1, dequant_width=8, context_width=8)
    return model


@pytest.mark.parametrize("cls", [ResNetVAE, FlowPlusPlus])
def test_curve_matches_eager_evaluation_and_resumes(cls, tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (48, 8, 8, 1), dtype=np.uint8)
    held_out = rng.integers(0, 256, (10, 8, 8, 1), dtype=np.uint8)
    model = _tiny(cls)
    keras_bdgm.initialize(model, train[:16])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    path = tmp_path / "curve.json"
    curve = ValidationCurve(held_out, every_steps=2, path=str(path), batch_size=4, seed=7)
    model.fit(train, batch_size=8, epochs=1, steps_per_epoch=5, verbose=0, callbacks=[curve])
    steps = [p["step"] for p in curve.points]
    assert steps == [2, 4, 5]  # every 2 steps, and after the last step
    # The last point is the eager evaluation of the final weights with the same seeds.
    expected = np.mean(np.concatenate([
        np.asarray(model.bits_per_dim(held_out[s:s + 4], seed=tf.constant([7, j], tf.int32)))
        for j, s in enumerate(range(0, 10, 4))
    ]))
    assert curve.points[-1]["val_bits_per_dim"] == pytest.approx(expected, rel=1e-5)
    assert json.loads(path.read_text()) == curve.points
    # A resumed run keeps the finished points and appends after them.
    resumed = ValidationCurve(held_out, every_steps=2, path=str(path), batch_size=4, seed=7)
    assert resumed.points == curve.points
    model.fit(train, batch_size=8, epochs=1, steps_per_epoch=1, verbose=0, callbacks=[resumed])
    assert [p["step"] for p in resumed.points] == [2, 4, 5, 6]


def test_bad_arguments():
    with pytest.raises(ValueError, match="uint8"):
        ValidationCurve(np.zeros((2, 8, 8, 1), np.float32), every_steps=1)
    with pytest.raises(ValueError, match="every_steps"):
        ValidationCurve(np.zeros((2, 8, 8, 1), np.uint8), every_steps=0)


def test_rejects_several_steps_per_batch_call():
    model = _tiny(ResNetVAE)
    data = np.random.default_rng(1).integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
    keras_bdgm.initialize(model, data)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), steps_per_execution=2)
    curve = ValidationCurve(data[:4], every_steps=1)
    with pytest.raises(ValueError, match="steps_per_execution=1"):
        model.fit(data, batch_size=8, epochs=1, verbose=0, callbacks=[curve])
