"""examples/*.py end to end: files written, evaluation reproduced, resume, strategies, search."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm import datasets, image_grid, memory

from keras_bdgm.runs import errors, experiment, run_dir

import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {model: tiny.overrides(model) for model in tiny.MODELS}


def _run(args, timeout=600, env=None, returncode=0):
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                         env=environ, timeout=timeout)
    assert out.returncode == returncode, (out.stdout[-2000:], out.stderr[-4000:])
    return out


def _run_all(commands, timeout=600):
    """Runs several scripts at once (each pays TensorFlow's import); returns their results."""
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = [subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, env=environ) for args in commands]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        results.append((proc.returncode, stdout, stderr))
    return results


def _train_args(model, dataset, model_dir, precision="w1a1", **flags):
    args = {
        "model": model, "precision": precision, "preset": "small", "dataset": dataset,
        "epochs": 2, "steps_per_epoch": 2, "batch_size": 8, "eval_examples": 16,
        "model_dir": str(model_dir), "overrides": json.dumps(TINY[model]), **flags,
    }
    return ["examples/train.py", *(f"--{k}={v}" for k, v in args.items())]


PLAIN_KERAS_LOAD = textwrap.dedent("""
    import sys
    import keras_bdgm
    import tensorflow as tf
    for compile in (True, False):
        model = tf.keras.models.load_model(sys.argv[1], compile=compile)
        optimizer = type(model.optimizer).__name__ if compile else "None"
        print(type(model).__name__, optimizer, len(model.weights))
        if compile and type(model).__name__ == "ResNetVAE":
            assert model.optimizer.get_config()["learning_rate"]["class_name"] == "ExponentialDecayWithFloor"
""")


@pytest.mark.parametrize("model", ["flowpp", "resnet_vae"])
def test_train_evaluate_sample_end_to_end(model, png_folder, tmp_path):
    model_dir = tmp_path / model
    _run(_train_args(model, png_folder, model_dir, eval_split="test"))
    report = json.loads((model_dir / "report.json").read_text())
    for name in ("report.json", "samples.png", "model.keras", "model.bdgm"):
        assert (model_dir / name).exists(), name
    assert report["dataset"] == png_folder and report["model"] == model and report["precision"] == "w1a1"
    assert report["eval_split"] == "test" and report["train_split"] == "train" and report["processes"] == 1
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
    before = fresh.log_prob(x, seed=(1, 2)).numpy()
    memory.load_packed(fresh, str(model_dir / "model.bdgm"))
    assert not np.allclose(before, fresh.log_prob(x, seed=(1, 2)).numpy())  # the load changed it
    np.testing.assert_allclose(fresh.log_prob(x, seed=(1, 2)).numpy(), loaded.log_prob(x, seed=(1, 2)).numpy(),
                               rtol=1e-6)

    out = _run(["examples/evaluate.py", f"--model_dir={model_dir}"])
    evaluated = json.loads(out.stdout.strip().splitlines()[-1])
    assert evaluated["bits_per_dim"] == pytest.approx(report["test_bits_per_dim"], rel=1e-5)

    # `import keras_bdgm` is all plain Keras needs to load the file, compiled or not.
    out = _run(["-c", PLAIN_KERAS_LOAD, str(model_dir / "model.keras")])
    assert out.stdout.split() == [type(loaded).__name__, "Adam", str(len(loaded.weights)),
                                  type(loaded).__name__, "None", str(len(loaded.weights))]

    png = tmp_path / "grid.png"
    _run(["examples/sample.py", f"--model_dir={model_dir}", "--num=6", "--temperature=0.5", f"--out={png}"])
    assert image_grid.read_png(png).shape == (2 * 29 + 1, 3 * 29 + 1, 1)


RESUME_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import keras_bdgm, numpy as np, tensorflow as tf
    from keras_bdgm import memory
    from keras_bdgm.runs import experiment
    tf.config.experimental.enable_op_determinism()
    dataset, root, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

    def config(name, epochs=3):
        return experiment.TrainConfig(model="resnet_vae", precision="w32a32", dataset=dataset, epochs=epochs,
                                      steps_per_epoch=3, batch_size=8, eval_examples=8, model_dir=f"{root}/{name}",
                                      overrides=overrides, verbose=0, num_samples_grid=4)

    class Kill(tf.keras.callbacks.Callback):
        steps = 0
        def __init__(self, at):
            super().__init__()
            self.at = at
        def on_train_batch_end(self, batch, logs=None):
            Kill.steps += 1
        def on_epoch_end(self, epoch, logs=None):
            if self.at == "after_epoch_1" and epoch == 0:
                raise KeyboardInterrupt(self.at)
        def on_train_end(self, logs=None):
            if self.at == "after_training":
                raise KeyboardInterrupt(self.at)

    def kill_once(module, name):
        real = getattr(module, name)
        def killed(*args, **kwargs):
            setattr(module, name, real)
            raise KeyboardInterrupt(name)
        setattr(module, name, killed)

    evaluations = []
    evaluate = experiment.evaluate_bits_per_dim
    experiment.evaluate_bits_per_dim = lambda *a, **k: evaluations.append(1) or evaluate(*a, **k)

    straight = experiment.train(config("straight"))
    evaluations.clear()
    steps, report = {}, None
    for label, epochs, kill in [
        ("after_epoch_1", 2, None),
        ("after_training", 2, None),
        ("evaluating", 3, (experiment, "evaluate_bits_per_dim")),  # and --epochs grows to 3
        ("writing", 3, (memory, "save_packed")),  # after samples.png and model.keras
        ("none", 3, None),
    ]:
        if kill:
            kill_once(*kill)
        Kill.steps = 0
        try:
            report = experiment.train(config("resumed", epochs), callbacks=[Kill(label)])
        except KeyboardInterrupt:
            pass
        steps[label] = Kill.steps
        if label == "after_epoch_1":
            print("EPOCHS_AFTER_KILL", experiment.completed_epochs(f"{root}/resumed"))
    print("AGAIN", experiment.train(config("resumed")) == report)  # the same command once more: nothing to do
    print("STEPS", json.dumps(steps))
    print("EVALUATIONS", len(evaluations))
    a, b = experiment.load_model(f"{root}/straight"), experiment.load_model(f"{root}/resumed")
    print("MAXDIFF", max(float(np.abs(x.numpy() - y.numpy()).max()) for x, y in zip(a.weights, b.weights)))
    print("WEIGHTS", len(b.weights))
    print("REPORTS", json.dumps([straight, report]))

    def files(d):
        return sorted(os.path.relpath(os.path.join(p, f), d) for p, _, fs in os.walk(d) for f in fs
                      if not os.path.relpath(p, d).startswith("logs"))
    print("FILES", json.dumps([files(f"{root}/straight"), files(f"{root}/resumed")]))
    print("SAME_BYTES", all(open(f"{root}/straight/{n}", "rb").read() == open(f"{root}/resumed/{n}", "rb").read()
                            for n in ("samples.png", "model.bdgm")))
""")


def test_run_killed_in_every_phase_resumes_and_matches_uninterrupted_run(png_folder, tmp_path):
    """Killed after epoch 1, after the last epoch, while evaluating and while writing its
    files (and given one more epoch on the way): the resumed run redoes no finished work
    and ends with the same weights, files and report as a run that was never killed."""
    overrides = dict(TINY["resnet_vae"], dropout=0.1)
    out = _run(["-c", RESUME_SCRIPT, png_folder, str(tmp_path), json.dumps(overrides)])
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.stdout.splitlines() if " " in line}
    assert lines["EPOCHS_AFTER_KILL"] == "1" and lines["AGAIN"] == "True"
    # Each epoch trained once (3 steps each); nothing trained after training had finished.
    assert json.loads(lines["STEPS"]) == {"after_epoch_1": 3, "after_training": 3, "evaluating": 3,
                                          "writing": 0, "none": 0}
    assert lines["EVALUATIONS"] == "1"  # evaluated once: not again after the kill while writing
    assert float(lines["MAXDIFF"]) == 0.0 and int(lines["WEIGHTS"]) > 10  # bit for bit
    straight, resumed = json.loads(lines["REPORTS"])
    for key in ("test_bits_per_dim", "train_bits_per_dim", "skipped_steps", "parameters", "packed_bytes"):
        assert resumed[key] == straight[key], key
    assert len(resumed["train_bits_per_dim"]) == 3  # the whole run, not the last process
    assert resumed["processes"] == 5 and straight["processes"] == 1
    assert resumed["images_per_second"] > 0 and resumed["wall_time_s"] > 0
    files_straight, files_resumed = json.loads(lines["FILES"])
    assert files_resumed == files_straight
    assert "backup/chief/checkpoint" not in files_resumed and "report.json" in files_resumed
    assert lines["SAME_BYTES"] == "True"


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras_bdgm, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_bdgm.runs import experiment
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
    command = [
        "examples/width_search.py", "--model=resnet_vae", "--widths=4,8", "--precisions=w1a1",
        f"--dataset={png_folder}", "--epochs=1", "--steps_per_epoch=2", "--batch_size=8",
        "--eval_examples=8", f"--model_dir={tmp_path}",
        "--overrides=" + json.dumps({"latent_layers": 1, "processing_blocks": 0}),
    ]
    first = _run(command).stdout.strip().splitlines()[-3:]
    # Run again in the same folder: the finished trials are not redone, and the table
    # still shows their memory (read back from each trial's report.json).
    out = _run(command)
    table = out.stdout.strip().splitlines()[-3:]
    assert table == first
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


def test_cosine_decay_follows_its_formula_and_runs_use_the_fused_adam():
    schedule = experiment.learning_rate("pixelcnn", 1e-3, "cosine", total_steps=100)
    for step in (0, 1, 25, 50, 99, 100, 150):
        expected = 1e-3 * 0.5 * (1 + np.cos(np.pi * min(step, 100) / 100))
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-5, atol=1e-10)  # float32
    np.testing.assert_allclose(float(experiment.learning_rate("flowpp", None, "cosine", 10)(5)), 0.5e-3, rtol=1e-6)
    adam = experiment.optimizer("resnet_vae")
    assert isinstance(adam, tf.keras.optimizers.legacy.Adam)
    np.testing.assert_allclose(float(adam.learning_rate(1000)), 2e-3 * 0.999995 ** 1000, rtol=1e-5)
    with pytest.raises(ValueError, match="learning_rate_decay"):
        experiment.learning_rate("flowpp", None, "linear", 10)
    with pytest.raises(ValueError, match="steps >= 1"):
        experiment.learning_rate("flowpp", None, "cosine", 0)


class _WeightsAtStart(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [w.numpy() for w in self.model.weights]


def test_warm_start_begins_from_the_trained_models_weights(png_folder, tmp_path):
    source = tmp_path / "source"
    experiment.train(_tiny_config(png_folder, source, model="pixelcnn", epochs=1))
    trained = experiment.load_model(str(source))
    seen = _WeightsAtStart()
    config = _tiny_config(png_folder, tmp_path / "tuned", model="pixelcnn", epochs=1, learning_rate=1e-3,
                          learning_rate_decay="cosine", warm_start=str(source))
    report = experiment.train(config, callbacks=[seen])
    assert len(seen.weights) == len(trained.weights)
    for got, want in zip(seen.weights, trained.weights):
        np.testing.assert_array_equal(got, want.numpy())
    stored = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert stored["warm_start"] == str(source) and stored["learning_rate_decay"] == "cosine"
    assert np.isfinite(report["test_bits_per_dim"])
    # A cosine run cannot be stretched (its schedule ends at the steps it started with) ...
    run_dir.Run(str(tmp_path / "stretch")).start(_tiny_config(
        png_folder, tmp_path / "stretch", model="pixelcnn", learning_rate_decay="cosine").resolved().settings())
    with pytest.raises(errors.ConfigError, match="cosine learning rate"):
        experiment.train(_tiny_config(png_folder, tmp_path / "stretch", model="pixelcnn",
                                      learning_rate_decay="cosine", epochs=5))
    # ... and a warm start must be the same model.
    with pytest.raises(errors.ConfigError, match=r"holds another model \(.*precision='w1a1' there, 'w32a32' here"):
        experiment.train(_tiny_config(png_folder, tmp_path / "other", model="pixelcnn", precision="w32a32",
                                      warm_start=str(source)))
    with pytest.raises(errors.ConfigError, match="does not exist"):
        experiment.train(_tiny_config(png_folder, tmp_path / "x", model="pixelcnn", warm_start=str(tmp_path / "no")))


def _tiny_config(dataset, model_dir, model="resnet_vae", **fields):
    settings = dict(model=model, precision="w1a1", dataset=dataset, epochs=2, steps_per_epoch=2, batch_size=8,
                    eval_examples=8, model_dir=str(model_dir), overrides=TINY[model], verbose=0,
                    num_samples_grid=4)
    return experiment.TrainConfig(**{**settings, **fields})


def test_restart_with_other_settings_stops_and_names_them(png_folder, tmp_path):
    first = _tiny_config(png_folder, tmp_path / "run", batch_size=32).resolved()
    run_dir.Run(first.model_dir).start(first.settings())  # a run killed while training
    stored = (tmp_path / "run" / "run.json").read_text()

    changed = _tiny_config(png_folder, tmp_path / "run", precision="w32a32", batch_size=64)
    with pytest.raises(errors.ConfigError) as info:
        experiment.train(changed)
    message = str(info.value)
    assert "--precision=w1a1 there, w32a32 now" in message and "--batch_size=32 there, 64 now" in message
    assert "--overwrite" in message and "--model_dir" in message and "\n" not in message
    for same in ("--model=", "--dataset=", "--seed=", "--overrides="):
        assert same not in message
    with pytest.raises(errors.ConfigError, match="--learning_rate=None there, 10.0 now"):
        experiment.train(_tiny_config(png_folder, tmp_path / "run", batch_size=32, learning_rate=10.0))
    with pytest.raises(errors.ConfigError, match="shorten"):
        experiment.train(_tiny_config(png_folder, tmp_path / "run", batch_size=32, epochs=1))
    assert (tmp_path / "run" / "run.json").read_text() == stored  # the run is left as it was
    # More epochs only extend the run; overwrite starts it over with the new settings.
    # More epochs may continue it; --overwrite accepts any settings. Neither is a finished run.
    assert run_dir.Run(first.model_dir).check(dataclasses.replace(first, epochs=5).settings()) is False
    assert run_dir.Run(first.model_dir).check(changed.resolved().settings(), overwrite=True) is False


class _PoisonAtEpoch2(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            weight = self.model.trainable_weights[0]
            weight.assign(tf.fill(weight.shape, float("nan")))


def test_diverging_run_stops_keeps_last_good_epoch_and_writes_no_model(png_folder, tmp_path):
    with pytest.raises(errors.DivergedError) as info:
        experiment.train(_tiny_config(png_folder, tmp_path), callbacks=[_PoisonAtEpoch2()])
    assert "epoch 2, step 1: bits_per_dim is nan" in str(info.value)
    assert "after epoch 1" in str(info.value) and "--learning_rate" in str(info.value)
    assert experiment.completed_epochs(str(tmp_path)) == 1  # the good epoch's state is kept
    assert (tmp_path / "checkpoints" / "epoch001.index").exists()
    assert not (tmp_path / "checkpoints" / "epoch002.index").exists()
    for name in ("report.json", "model.keras", "model.bdgm", "samples.png"):
        assert not (tmp_path / name).exists(), name

    # --learning_rate=10, as a user would. Flow++ goes NaN (which Keras's TerminateOnNaN
    # missed: it reads logs["loss"]); the VAE's loss stays finite while its updates are skipped.
    with pytest.raises(errors.DivergedError, match="bits_per_dim is (nan|inf)|updates were skipped"):
        experiment.train(_tiny_config(png_folder, tmp_path / "flowpp", model="flowpp", steps_per_epoch=4,
                                      learning_rate=10.0))
    code, stdout, stderr = _run_all([_train_args("resnet_vae", png_folder, tmp_path / "vae", epochs=2,
                                                 steps_per_epoch=4, learning_rate=10)])[0]
    assert code == 1, (stdout[-2000:], stderr[-3000:])
    assert stderr.strip().startswith("train.py: error: Training diverged at epoch 1") and "updates were skipped" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "--learning_rate (was 10.0)" in stderr
    for model in ("flowpp", "vae"):
        assert not any((tmp_path / model / name).exists() for name in ("model.keras", "model.bdgm", "report.json"))


@pytest.fixture(scope="module")
def flat_folder(tmp_path_factory):
    """A flat folder dataset: 40 28x28 grey PNGs, no train/ or test/ sub-folders."""
    root = tmp_path_factory.mktemp("flat")
    yy, xx = np.mgrid[:28, :28]
    for i in range(40):
        image = (100 + 100 * np.exp(-((yy - 10 - i % 9) ** 2 + (xx - 14) ** 2) / 30.0)).astype(np.uint8)
        image_grid.write_png(root / f"{i:03d}.png", image[..., None])
    return f"folder:{root}"


def test_flat_folder_holds_out_its_last_tenth_for_evaluation(flat_folder, tmp_path):
    with pytest.raises(errors.ConfigError, match="no 'test' sub-folder"):
        experiment.train(_tiny_config(flat_folder, tmp_path / "test_split", eval_split="test"))
    assert not (tmp_path / "test_split").exists()  # checked before anything was trained or written

    report = experiment.train(_tiny_config(flat_folder, tmp_path / "run", eval_examples=None))
    assert report["train_split"] == "train[:90%]" and report["eval_split"] == "train[90%:]"
    assert "last 10%" in report["eval_note"]
    assert np.isfinite(report["test_bits_per_dim"]) and (tmp_path / "run" / "model.keras").exists()
    held_out = datasets.load(flat_folder, "train[90%:]", batch_size=8, shuffle=False)
    model = experiment.load_model(str(tmp_path / "run"))
    assert experiment.evaluate_bits_per_dim(model, held_out) == pytest.approx(report["test_bits_per_dim"], rel=1e-6)


def test_user_errors_print_one_line_exit_non_zero_and_leave_no_folder(png_folder, flat_folder, tmp_path):
    (tmp_path / "a_file").write_text("")
    (tmp_path / "empty_run").mkdir()
    unfinished = _tiny_config(png_folder, tmp_path / "unfinished", batch_size=32).resolved()
    run_dir.Run(unfinished.model_dir).start(unfinished.settings())
    cases = {  # one script each (each pays TensorFlow's import); the rest in-process below
        "train": (_train_args("resnet_vae", png_folder, tmp_path / "r1", preset="huge"), "Unknown ResNetVAE preset 'huge'"),
        "changed flags": (_train_args("resnet_vae", png_folder, tmp_path / "unfinished", precision="w32a32"),
                          "--precision=w1a1 there, w32a32 now"),
        "evaluate": (["examples/evaluate.py", f"--model_dir={tmp_path / 'empty_run'}"], "No saved model in"),
        "sample": (["examples/sample.py", f"--model_dir={tmp_path / 'r2'}"], "No saved model in"),
        "width_search": (["examples/width_search.py", "--precisions=w2a2", f"--dataset={png_folder}",
                          f"--model_dir={tmp_path / 'r3'}"], "Unknown precision 'w2a2'"),
    }
    results = _run_all([args for args, _ in cases.values()])
    for (case, (_, expected)), (code, stdout, stderr) in zip(cases.items(), results):
        assert code == 2, (case, stdout[-1000:], stderr[-3000:])
        assert len(stderr.strip().splitlines()) == 1 and expected in stderr, (case, stderr[-3000:])
        assert ": error: " in stderr and "Traceback" not in stderr
    assert sorted(os.listdir(tmp_path)) == ["a_file", "empty_run", "unfinished"]

    # The other bad values, in-process: a ConfigError (what the scripts print), nothing created.
    for fields, expected in [
        ({"dataset": "cifar100"}, "Unknown dataset 'cifar100'"),
        ({"overrides": {"widht": 8}}, "no hyperparameter 'widht'"),
        ({"overrides": [8]}, "must be a JSON object"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"model_dir": str(tmp_path / "a_file")}, "is a file, not a folder"),
        ({"dataset": flat_folder, "eval_split": "test"}, "no 'test' sub-folder"),
    ]:
        with pytest.raises(errors.ConfigError, match=expected):
            experiment.train(dataclasses.replace(_tiny_config(png_folder, tmp_path / "r4"), **fields))
        assert not (tmp_path / "r4").exists()


def test_a_normal_run_prints_no_tensorflow_noise(tmp_path):
    """Fashion-MNIST through tfds (the cache path), checkpoints every epoch, default log level."""
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, *_train_args("resnet_vae", "fashion_mnist", tmp_path, steps_per_epoch=3)],
                         capture_output=True, text=True, cwd=ROOT, env=environ, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    noise = ["cuInit", "cuda drivers", "did not fully read the dataset", "Sharding callback", "oneDNN",
             "absl::InitializeLog", "cpu_feature_guard", "dataset_info.py", "Constructing tf.data.Dataset"]
    found = [n for n in noise if n in out.stderr or n in out.stdout]
    assert not found, (found, out.stderr[-4000:])


def test_compress_and_decompress_from_the_command_line(tmp_path):
    """examples/compress.py: PNG folder -> file (--model_dir) -> PNGs (--packed), exact; bad input: one line."""
    from keras_bdgm import compression  # pylint: disable=import-outside-toplevel
    from keras_bdgm.models import ResNetVAE  # pylint: disable=import-outside-toplevel

    import keras_bdgm  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 8, 8, 1)).astype(np.uint8)
    model = ResNetVAE((8, 8, 1), precision="w1a1", preset="small", **TINY["resnet_vae"])
    keras_bdgm.initialize(model, images)
    run = tmp_path / "run"
    run.mkdir()
    model.save(str(run / "model.keras"))
    memory.save_packed(model, str(run / "model.bdgm"))
    (run / "report.json").write_text(json.dumps({"model": "resnet_vae", "precision": "w1a1", "preset": "small",
                                                 "overrides": TINY["resnet_vae"]}))
    pngs, rgb = tmp_path / "pngs", tmp_path / "rgb"
    pngs.mkdir()
    rgb.mkdir()
    for i, image in enumerate(images):
        image_grid.write_png(pngs / f"{i}.png", image)
        image_grid.write_png(rgb / f"{i}.png", np.repeat(image, 3, axis=-1))
    compressed = tmp_path / "x.kbc"
    out = _run(["examples/compress.py", f"--model_dir={run}", f"--input={pngs}", f"--output={compressed}",
                "--batch_size=2", "--elbo"]).stdout
    for expected in ("5 images of 8x8x1 in 1 file", "bits/dim", "model bound:", "encode", "wrote"):
        assert expected in out, out
    np.testing.assert_array_equal(compression.decompress(model, compressed.read_bytes()), images)
    truncated = tmp_path / "cut.kbc"
    truncated.write_bytes(compressed.read_bytes()[:-9])
    commands = [
        ["examples/compress.py", f"--packed={run / 'model.bdgm'}", "--decompress", f"--input={compressed}",
         f"--output={tmp_path / 'back'}"],
        ["examples/compress.py", f"--packed={run / 'model.bdgm'}", "--decompress", f"--input={truncated}",
         f"--output={tmp_path / 'no1'}"],
        ["examples/compress.py", f"--model_dir={run}", f"--input={rgb}", f"--output={tmp_path / 'no2.kbc'}"],
    ]
    (code, out, err), *bad = _run_all(commands)
    assert code == 0 and "decode" in out, err[-3000:]
    back = [image_grid.read_png(tmp_path / "back" / name) for name in sorted(os.listdir(tmp_path / "back"))]
    np.testing.assert_array_equal(np.stack(back), images)
    for (code, out, err), expected in zip(bad, ["truncated", "mode RGB"]):
        assert code == 2 and expected in err and "Traceback" not in err, err[-3000:]
    assert not (tmp_path / "no1").exists() and not (tmp_path / "no2.kbc").exists()
