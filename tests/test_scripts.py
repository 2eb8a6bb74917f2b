"""examples/*.py end to end: files written, evaluation reproduced, resume, strategies, search."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm import experiment, image_grid, memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    "flowpp": {"couplings": [1, 1, 1], "width": 8, "num_blocks": 1, "num_components": 2,
               "dequant_couplings": 1, "dequant_width": 8, "dequant_blocks": 1,
               "context_width": 8, "context_blocks": 1},
    "resnet_vae": {"width": 8, "latent_layers": 2, "processing_blocks": 0},
}


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory):
    """A folder dataset: 28x28 grey PNGs, train/ (64) and test/ (16)."""
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


def _run(args, timeout=600, env=None):
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                         env=environ, timeout=timeout)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
    return out


def _train_args(model, dataset, model_dir, precision="w1a1", **flags):
    args = {
        "model": model, "precision": precision, "preset": "small", "dataset": dataset,
        "epochs": 2, "steps_per_epoch": 2, "batch_size": 8, "eval_examples": 16,
        "model_dir": str(model_dir), "overrides": json.dumps(TINY[model]), **flags,
    }
    return ["examples/train.py", *(f"--{k}={v}" for k, v in args.items())]


@pytest.mark.parametrize("model", ["flowpp", "resnet_vae"])
def test_train_evaluate_sample_end_to_end(model, png_folder, tmp_path):
    model_dir = tmp_path / model
    _run(_train_args(model, png_folder, model_dir))
    report = json.loads((model_dir / "report.json").read_text())
    for name in ("report.json", "samples.png", "model.keras", "model.bdgm"):
        assert (model_dir / name).exists(), name
    assert report["dataset"] == png_folder and report["model"] == model and report["precision"] == "w1a1"
    assert np.isfinite(report["test_bits_per_dim"]) and 0 < report["test_bits_per_dim"] < 16
    assert len(report["train_bits_per_dim"]) == 2 and report["images_per_second"] > 0

    loaded = experiment.load_model(str(model_dir))
    fp = memory.footprint(loaded)
    assert report["parameters"] == fp.parameters and report["binary_weights"] == fp.binary_weights > 0
    assert report["packed_bytes"] == os.path.getsize(model_dir / "model.bdgm")
    assert fp.bytes <= report["packed_bytes"] <= 1.01 * fp.bytes + 4096
    assert report["float32_bytes"] == 4 * fp.parameters

    grid = image_grid.read_png(model_dir / "samples.png")
    assert grid.shape == (8 * 29 + 1, 8 * 29 + 1, 1) and grid.dtype == np.uint8

    # The packed file restores a freshly built model to the same log-likelihood.
    fresh = experiment.build_model(model, (28, 28, 1), "w1a1", "small", **TINY[model])
    x = np.asarray(image_grid.read_png(model_dir / "samples.png")[1:29, 1:29][None]).repeat(2, 0)
    fresh.log_prob(x, seed=(1, 2))
    memory.load_packed(fresh, str(model_dir / "model.bdgm"))
    np.testing.assert_allclose(fresh.log_prob(x, seed=(1, 2)).numpy(), loaded.log_prob(x, seed=(1, 2)).numpy(),
                               rtol=1e-6)

    out = _run(["examples/evaluate.py", f"--model_dir={model_dir}"])
    evaluated = json.loads(out.stdout.strip().splitlines()[-1])
    assert evaluated["bits_per_dim"] == pytest.approx(report["test_bits_per_dim"], rel=1e-5)

    png = tmp_path / "grid.png"
    _run(["examples/sample.py", f"--model_dir={model_dir}", "--num=6", "--temperature=0.5", f"--out={png}"])
    assert image_grid.read_png(png).shape == (2 * 29 + 1, 3 * 29 + 1, 1)


RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras_bdgm, numpy as np, tensorflow as tf
    from keras_bdgm import experiment
    tf.config.experimental.enable_op_determinism()
    dataset, root, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

    def config(name):
        return experiment.TrainConfig(model="resnet_vae", precision="w32a32", dataset=dataset, epochs=3,
                                      steps_per_epoch=3, batch_size=8, eval_examples=8, model_dir=f"{root}/{name}",
                                      overrides=overrides, verbose=0, num_samples_grid=4)

    class Crash(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt("killed after the first epoch")

    experiment.train(config("straight"))
    straight = experiment.load_model(f"{root}/straight")
    try:
        experiment.train(config("resumed"), callbacks=[Crash()])
    except KeyboardInterrupt:
        print("INTERRUPTED", experiment.completed_epochs(f"{root}/resumed"))
    report = experiment.train(config("resumed"))
    resumed = experiment.load_model(f"{root}/resumed")
    diff = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(straight.weights, resumed.weights))
    print("RESUMED", report["resumed_after_epoch"], "MAXDIFF", diff, "WEIGHTS", len(resumed.weights))
""")


def test_interrupted_training_resumes_and_matches_uninterrupted_run(png_folder, tmp_path):
    overrides = dict(TINY["resnet_vae"], dropout=0.1)
    out = _run(["-c", RESUME_SCRIPT, png_folder, str(tmp_path), json.dumps(overrides)])
    lines = out.stdout.split("\n")
    assert "INTERRUPTED 1" in lines
    resumed = next(l for l in lines if l.startswith("RESUMED")).split()
    assert resumed[1] == "1"  # started again at epoch 2
    assert float(resumed[3]) == 0.0  # same weights, bit for bit, as the uninterrupted run
    assert int(resumed[5]) > 10


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras_bdgm, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_bdgm import experiment
    dataset, root, model, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    report = experiment.train(experiment.TrainConfig(
        model=model, precision="w1a1", dataset=dataset, epochs=1, steps_per_epoch=3, batch_size=8,
        eval_examples=8, model_dir=f"{root}/{model}", strategy="mirrored", overrides=overrides,
        verbose=0, num_samples_grid=4))
    print("REPORT", model, report["replicas"], report["train_bits_per_dim"][0], report["test_bits_per_dim"])
""")


@pytest.mark.parametrize("model", ["flowpp", "resnet_vae"])
def test_mirrored_strategy_over_two_cpus_trains_each_model(model, png_folder, tmp_path):
    """One process per model, as a training job would run."""
    out = _run(["-c", MIRRORED_SCRIPT, png_folder, str(tmp_path), model, json.dumps(TINY[model])])
    row = next(l for l in out.stdout.splitlines() if l.startswith("REPORT")).split()
    assert row[1] == model and row[2] == "2"  # two replicas
    assert all(np.isfinite(float(v)) for v in row[3:])


def test_width_search_runs_two_trials_and_prints_table(png_folder, tmp_path):
    out = _run([
        "examples/width_search.py", "--model=resnet_vae", "--widths=4,8", "--precisions=w1a1",
        f"--dataset={png_folder}", "--epochs=1", "--steps_per_epoch=2", "--batch_size=8",
        "--eval_examples=8", f"--model_dir={tmp_path}",
        "--overrides=" + json.dumps({"latent_layers": 1, "processing_blocks": 0}),
    ])
    table = out.stdout.strip().splitlines()[-3:]
    assert table[0].split()[:4] == ["trial", "width", "precision", "val_bits_per_dim"]
    rows = [line.split() for line in table[1:]]
    assert sorted(int(r[1]) for r in rows) == [4, 8]
    scores = [float(r[3]) for r in rows]
    assert all(np.isfinite(scores)) and scores == sorted(scores)
    params = {int(r[1]): int(r[4].replace(",", "")) for r in rows}
    assert params[8] > params[4]  # wider trial, more parameters


def test_bad_configs_fail_with_clear_errors(png_folder, tmp_path):
    with pytest.raises(ValueError, match="Unknown model 'glow'; expected one of: flowpp, resnet_vae"):
        experiment.train(experiment.TrainConfig(model="glow", model_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="Unknown strategy"):
        experiment.train(experiment.TrainConfig(strategy="horovod", model_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="steps_per_epoch must be >= 1"):
        experiment.train(experiment.TrainConfig(steps_per_epoch=0, model_dir=str(tmp_path)))
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--overwrite"):
        experiment.train(experiment.TrainConfig(dataset=png_folder, model_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="No saved model"):
        experiment.load_model(str(tmp_path / "nothing"))


def test_vae_learning_rate_schedule_decays_to_its_floor():
    schedule = experiment.learning_rate("resnet_vae")
    np.testing.assert_allclose(float(schedule(0)), 2e-3)
    np.testing.assert_allclose(float(schedule(1000)), 2e-3 * 0.999995 ** 1000, rtol=1e-5)
    np.testing.assert_allclose(float(schedule(10**7)), 5e-4)
    assert experiment.learning_rate("flowpp") == 1e-3
    assert experiment.learning_rate("flowpp", 3e-4) == 3e-4
