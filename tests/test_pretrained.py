"""keras_bdgm.pretrained: packing a run, loading it back, the shipped models and bad files."""

import json

import numpy as np
import pytest

from keras_bdgm import datasets, pretrained

from keras_bdgm.runs import experiment

import tiny

TINY_VAE = tiny.overrides("resnet_vae")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 3-step ResNetVAE run on Fashion-MNIST, exported as a pretrained model."""
    run = tmp_path_factory.mktemp("run")
    out = tmp_path_factory.mktemp("pretrained")
    experiment.train(experiment.TrainConfig(
        model="resnet_vae", precision="w1a1", dataset="fashion_mnist", epochs=1, steps_per_epoch=3,
        batch_size=8, eval_examples=16, overrides=TINY_VAE, model_dir=str(run), verbose=0,
        num_samples_grid=4,
    ))
    pretrained.export_run(str(run), str(out))
    return run, out


def test_loaded_model_gives_the_trained_models_outputs(exported):
    run, out = exported
    assert pretrained.list(out) == ["resnet_vae/w1a1/fashion_mnist"]
    trained = experiment.load_model(str(run))
    loaded = pretrained.load("resnet_vae/w1a1", directory=out)
    x = next(iter(datasets.load("fashion_mnist", "test", batch_size=8, limit=8)))
    np.testing.assert_array_equal(loaded.log_prob(x, seed=3), trained.log_prob(x, seed=3))
    np.testing.assert_array_equal(loaded.sample(4, seed=1), trained.sample(4, seed=1))
    report = json.loads((run / "report.json").read_text())
    assert loaded.record["test_bits_per_dim"] == report["test_bits_per_dim"]
    assert loaded.record["overrides"] == TINY_VAE and loaded.record["image_shape"] == [28, 28, 1]
    same = pretrained.load("resnet_vae", precision="w1a1", dataset="fashion_mnist", directory=out)
    np.testing.assert_array_equal(same.log_prob(x, seed=3), trained.log_prob(x, seed=3))


def test_missing_and_damaged_files(exported, tmp_path):
    _, out = exported
    with pytest.raises(FileNotFoundError, match="available: resnet_vae/w1a1/fashion_mnist"):
        pretrained.load("resnet_vae/w32a32", directory=out)
    with pytest.raises(ValueError, match="needs a precision"):
        pretrained.load("resnet_vae", directory=out)
    with pytest.raises(ValueError, match="Bad pretrained model name"):
        pretrained.load("a/b/c/d", directory=out)
    for name in ("resnet_vae_w1a1_fashion_mnist.json", "resnet_vae_w1a1_fashion_mnist.bdgm"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    packed = tmp_path / "resnet_vae_w1a1_fashion_mnist.bdgm"
    raw = bytearray(packed.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    packed.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt: its weights fail the CRC-32 check"):
        pretrained.load("resnet_vae/w1a1", directory=tmp_path)
    packed.unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        pretrained.load("resnet_vae/w1a1", directory=tmp_path)


@pytest.mark.parametrize("name", pretrained.list())
def test_shipped_models_load_and_score_like_their_records(name):
    model = pretrained.load(name)
    record = model.record
    assert record["packed_bytes"] < 1_000_000
    assert name.split("/")[1] in ("w1a1", "w1a32")
    x = next(iter(datasets.load(record["dataset"], "test", batch_size=200, limit=200)))
    bpd = float(np.mean(model.bits_per_dim(x, seed=0)))
    # 200 test images vary around the mean over the whole test split by a few hundredths.
    assert abs(bpd - record["test_bits_per_dim"]) < 0.15, (bpd, record["test_bits_per_dim"])
    samples = np.asarray(model.sample(4, seed=0))
    assert samples.dtype == np.uint8 and samples.shape == (4, *record["image_shape"])


def _script(args):
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.skipif(not pretrained.list(), reason="no shipped models")
def test_scripts_take_a_pretrained_name(tmp_path):
    from PIL import Image

    name = pretrained.list()[0]
    out = _script(["examples/evaluate.py", f"--pretrained={name}", "--eval_examples=40", "--batch_size=20"])
    assert out.returncode == 0, out.stderr
    figure = json.loads(out.stdout.strip().splitlines()[-1])["bits_per_dim"]
    model = pretrained.load(name)
    ds = datasets.load(model.record["dataset"], "test", batch_size=20, shuffle=False, limit=40)
    assert figure == pytest.approx(experiment.evaluate_bits_per_dim(model, ds, seed=model.record["seed"]), rel=1e-6)
    png = tmp_path / "grid.png"
    out = _script(["examples/sample.py", f"--pretrained={name}", "--num=4", f"--out={png}"])
    assert out.returncode == 0, out.stderr
    assert np.asarray(Image.open(png)).ndim >= 2
    out = _script(["examples/sample.py", "--pretrained=resnet_vae/w8a8"])
    assert out.returncode == 2 and "No pretrained model 'resnet_vae/w8a8/fashion_mnist'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
