"""Multi-worker training on this machine: two workers on 127.0.0.1 equal one process.

Every run here trains the same tiny ResNet VAE on the same tiny image folder (32 8x8 images
whose first pixel is the image's index) with a global batch of 8, seed 0, 2 epochs of 2
steps. The reference is one process with `--strategy=mirrored` over 2 logical CPUs
(KERAS_BDGM_LOGICAL_CPUS=2): the same two replicas as two single-CPU workers, so the same
per-replica batches and noise seeds (keras_bdgm.models.base, `noise_seed`). The clusters are a
chief and a worker on free ports of 127.0.0.1 (README.md, "Scaling out", is this example).

The clusters need local TCP ports: their tests skip themselves when 127.0.0.1 cannot be
bound, and `pytest -k "not multi_worker"` (Bazel: `--test_tag_filters=-multi_worker`) leaves
the module out. The unit tests of the pieces (last) need no ports.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from keras_bdgm import image_grid

from keras_bdgm.runs import errors, run_dir, strategies

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_VAE = {"width": 8, "latent_layers": 2, "processing_blocks": 0}
STEPS_PER_EPOCH, EPOCHS, BATCH = 2, 2, 8
WORKER_LOST_BOUND_S = 90  # the chief must give up this soon after its worker died (heartbeats: ~10 s)
PROCESS_TIMEOUT_S = 600


def _can_bind():
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
        return True
    except OSError:
        return False


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tf_configs(n=2):
    """TF_CONFIG of each task of a chief + (n - 1) workers on free local ports (chief first)."""
    hosts = [f"127.0.0.1:{_free_port()}" for _ in range(n)]
    cluster = {"chief": hosts[:1], "worker": hosts[1:]}
    tasks = [("chief", 0)] + [("worker", i) for i in range(n - 1)]
    return [json.dumps({"cluster": cluster, "task": {"type": t, "index": i}}) for t, i in tasks]


@pytest.fixture(scope="module")
def indexed_folder(tmp_path_factory):
    """A folder dataset: train/ (32) and test/ (8) 8x8 grey PNGs; pixel (0, 0) is the index."""
    root = tmp_path_factory.mktemp("indexed")
    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("test", 8)):
        os.makedirs(root / split)
        for i in range(n):
            image = rng.integers(0, 256, (8, 8, 1)).astype(np.uint8)
            image[0, 0, 0] = i
            image_grid.write_png(root / split / f"{i:03d}.png", image)
    return f"folder:{root}"


def _settings(dataset, model_dir, strategy):
    return {"model": "resnet_vae", "precision": "w1a1", "dataset": dataset, "epochs": EPOCHS,
            "steps_per_epoch": STEPS_PER_EPOCH, "batch_size": BATCH, "eval_examples": 8,
            "model_dir": str(model_dir), "strategy": strategy, "overrides": TINY_VAE}


def _flags(settings):
    return ["examples/train.py", *(f"--{k}={json.dumps(v) if isinstance(v, dict) else v}"
                                   for k, v in settings.items())]


# experiment.train with spies (what each replica trains on, the noise seeds it draws) and,
# optionally, a kill: SIGKILL of this process after its `kill_after`-th step of this start.
SPY_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import keras_bdgm, tensorflow as tf
    from keras_bdgm.models import base
    from keras_bdgm.runs import cli, experiment

    settings, kill_after = json.loads(sys.argv[1]), int(sys.argv[2])
    train_step, noise_seed = base.GenerativeModel.train_step, base.GenerativeModel.noise_seed

    def replica_and_step(model):
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        return replica, model.optimizer.iterations + 1

    def spied_train_step(self, data):
        tf.print("SAW", *replica_and_step(self), base.images_from(data)[:, 0, 0, 0],
                 summarize=-1, output_stream=sys.stdout)
        return train_step(self, data)

    def spied_noise_seed(self):
        seed = noise_seed(self)
        if tf.distribute.get_replica_context() is not None and self.optimizer is not None:
            tf.print("SEED", *replica_and_step(self), seed, summarize=-1, output_stream=sys.stdout)
        return seed

    base.GenerativeModel.train_step = spied_train_step
    base.GenerativeModel.noise_seed = spied_noise_seed

    class Kill(tf.keras.callbacks.Callback):
        steps = 0
        def on_train_batch_end(self, batch, logs=None):
            Kill.steps += 1
            if Kill.steps == kill_after:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    def main(argv):
        report = experiment.train(experiment.TrainConfig(**settings, verbose=0), callbacks=[Kill()])
        print("REPORT", json.dumps(report))

    cli.run(main)
""")


class Proc:
    """A started script: its command and process; once it ended, its return code, output and
    (monotonic) end time, collected by a thread as soon as it exits."""

    def __init__(self, args, tf_config=None, env=None):
        environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        environ.pop("TF_CONFIG", None)
        if tf_config:
            environ["TF_CONFIG"] = tf_config
        self.args = args
        self.popen = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=ROOT, env=environ)
        self.code = self.stdout = self.stderr = self.ended = None
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _wait(self):
        try:
            self.stdout, self.stderr = self.popen.communicate(timeout=PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()  # our own child, by its pid
            self.stdout, self.stderr = self.popen.communicate()
        self.code, self.ended = self.popen.returncode, time.monotonic()

    def finish(self):
        self._waiter.join()
        return self

    def why(self):
        return f"exit {self.code}: {self.args[:2]}\nstdout: {self.stdout[-1500:]}\nstderr: {self.stderr[-3000:]}"

    def rows(self, tag):
        """[[int, ...]] of this process's spy lines "TAG replica step [a b ...]" (step is 1-based)."""
        out = []
        for line in self.stdout.splitlines():
            if line.startswith(tag + " "):
                out.append([int(v) for v in line[len(tag):].replace("[", " ").replace("]", " ").split()])
        return out

    def report(self):
        """The report printed by the spy script ("REPORT {...}") or examples/train.py (indented JSON)."""
        lines = self.stdout.splitlines()
        spied = [line[7:] for line in lines if line.startswith("REPORT ")]
        return json.loads(spied[-1] if spied else "\n".join(lines[lines.index("{"):]))


def _spy(settings, kill_after=0, tf_config=None, env=None):
    return Proc(["-c", SPY_SCRIPT, json.dumps(settings), str(kill_after)], tf_config, env)


def _by_replica_and_step(rows):
    """{(replica, step): sorted values} of spy rows; several rows of one key are joined."""
    seen = {}
    for replica, step, *values in rows:
        seen.setdefault((replica, step), []).extend(values)
    return {key: sorted(values) for key, values in seen.items()}


def _weights(model_dir):
    from keras_bdgm.runs import experiment  # pylint: disable=import-outside-toplevel
    model = experiment.load_model(str(model_dir))
    return [w.numpy() for w in model.weights]


def _files(model_dir):
    """Relative paths under model_dir; TensorBoard event files as `<folder>/events` (their
    names hold a pid and a time; each process of the run adds one)."""
    found = []
    for folder, _, names in os.walk(model_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), model_dir)
            found.append(os.path.join(os.path.dirname(rel), "events") if ".tfevents." in name else rel)
    return sorted(set(found))


@pytest.fixture(scope="module")
def runs(indexed_folder, tmp_path_factory):
    """Every run of the module, started in two waves of independent runs (each process pays
    TensorFlow's import, so they overlap):

    reference: one process, two replicas (mirrored over 2 logical CPUs), spied.
    two_workers: examples/train.py as chief and worker, as a user would start them.
    killed: both workers (spied) SIGKILLed after step 3 of 4, mid epoch 2; resumed: both
      started again (second wave).
    worker_lost: the worker (spied) SIGKILLed after its first step, the chief examples/train.py.
    """
    if not _can_bind():
        pytest.skip("needs free TCP ports on 127.0.0.1")
    root = tmp_path_factory.mktemp("runs")

    def settings(name, strategy="multi_worker"):
        return _settings(indexed_folder, root / name, strategy)

    mirrored = settings("reference", "mirrored")
    reference = _spy(mirrored, env={"KERAS_BDGM_LOGICAL_CPUS": "2"})
    two_workers = [Proc(_flags(settings("two_workers")), tf_config) for tf_config in _tf_configs()]
    killed = [_spy(settings("killed"), 3, tf_config) for tf_config in _tf_configs()]
    chief_config, worker_config = _tf_configs()
    worker_lost = [Proc(_flags(settings("worker_lost")), chief_config), _spy(settings("worker_lost"), 1, worker_config)]
    for proc in [reference, *two_workers, *killed, *worker_lost]:
        proc.finish()
    resumed = [_spy(settings("killed"), 0, tf_config) for tf_config in _tf_configs()]
    for proc in resumed:
        proc.finish()
    assert reference.code == 0, reference.why()
    return {"root": root, "reference": reference, "two_workers": two_workers, "killed": killed,
            "resumed": resumed, "worker_lost": worker_lost}


@pytest.fixture(scope="module")
def reference(runs):
    return runs["root"] / "reference", runs["reference"]


@pytest.fixture(scope="module")
def two_workers(runs):
    return runs["root"] / "two_workers", runs["two_workers"]


@pytest.fixture(scope="module")
def killed_and_resumed(runs):
    return runs["root"] / "killed", runs["killed"], runs["resumed"]


def test_two_workers_finish_and_only_the_chief_writes_the_run(two_workers, reference):
    model_dir, (chief, worker) = two_workers
    assert chief.code == 0, chief.why()
    assert worker.code == 0, worker.why()
    report = chief.report()
    assert report["replicas"] == 2 and report["strategy"] == "multi_worker" and report["processes"] == 1
    assert worker.report() == report  # the worker waits for the chief and prints its report
    # The chief wrote the run's files, once (as one process does); the worker only Keras's
    # temporary workertemp_* copies, which are gone.
    assert _files(model_dir) == _files(reference[0])
    assert not any("workertemp" in f for f in _files(model_dir))
    assert len(json.loads((model_dir / "state.json").read_text())["starts"]) == 1
    events = sorted(os.path.relpath(folder, model_dir) for folder, _, names in os.walk(model_dir)
                    for name in names if ".tfevents." in name)
    assert events == ["logs/samples", "logs/train"]  # one TensorBoard file each: the chief's


def test_two_workers_train_like_one_process(two_workers, reference):
    """Same global batch, seed and data: the weights of one process with the same replicas."""
    model_dir, (chief, _) = two_workers
    assert chief.code == 0, chief.why()
    report, ref = chief.report(), reference[1].report()
    assert ref["replicas"] == 2 and report["skipped_steps"] == ref["skipped_steps"]
    np.testing.assert_allclose(report["train_bits_per_dim"], ref["train_bits_per_dim"], rtol=1e-5)
    np.testing.assert_allclose(report["test_bits_per_dim"], ref["test_bits_per_dim"], rtol=1e-5)
    for got, want in zip(_weights(model_dir), _weights(reference[0]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_workers_read_disjoint_halves_of_each_global_batch(killed_and_resumed, reference):
    """tf.data shards by DATA: at every step the chief (replica 0) and the worker (replica 1)
    train on disjoint halves whose union is the one-process global batch, replica by replica."""
    _, (chief, worker), _ = killed_and_resumed
    ref = _by_replica_and_step(reference[1].rows("SAW"))
    chief_saw, worker_saw = _by_replica_and_step(chief.rows("SAW")), _by_replica_and_step(worker.rows("SAW"))
    assert sorted(chief_saw) == [(0, 1), (0, 2), (0, 3)], chief.why()
    assert sorted(worker_saw) == [(1, 1), (1, 2), (1, 3)], worker.why()
    for step in (1, 2, 3):
        mine, theirs = chief_saw[0, step], worker_saw[1, step]
        assert len(mine) == len(theirs) == BATCH // 2 and not set(mine) & set(theirs)
        assert (mine, theirs) == (ref[0, step], ref[1, step])
    every = [v for step in (1, 2, 3) for v in chief_saw[0, step] + worker_saw[1, step]]
    assert len(set(every)) == len(every) == 3 * BATCH  # 32 images: no repeat within the epoch's first 24


def test_noise_seeds_are_distinct_per_replica_and_reproducible_on_resume(killed_and_resumed):
    _, killed, resumed = killed_and_resumed
    before = _by_replica_and_step(killed[0].rows("SEED") + killed[1].rows("SEED"))
    after = _by_replica_and_step(resumed[0].rows("SEED") + resumed[1].rows("SEED"))
    assert sorted(before) == [(r, s) for r in (0, 1) for s in (1, 2, 3)]
    assert sorted(after) == [(r, s) for r in (0, 1) for s in (3, 4)]  # resumed at epoch 2's start
    for step in (1, 2, 3):
        assert before[0, step] != before[1, step]  # distinct per replica (two processes)
    for step in (3, 4):
        assert after[0, step] != after[1, step]
    assert after[0, 3] == before[0, 3] and after[1, 3] == before[1, 3]  # step 3 again: the same noise


def test_two_workers_draw_the_noise_of_one_process(killed_and_resumed, reference):
    """Replica r of a two-worker run draws the seeds of replica r of one process: the draw
    index of a call site must not depend on how many replicas one process traces."""
    _, killed, resumed = killed_and_resumed
    ref = _by_replica_and_step(reference[1].rows("SEED"))
    before = _by_replica_and_step(killed[0].rows("SEED") + killed[1].rows("SEED"))
    after = _by_replica_and_step(resumed[0].rows("SEED") + resumed[1].rows("SEED"))
    for key, seeds in [*before.items(), *after.items()]:
        assert seeds == ref[key], (key, seeds, ref[key])


def test_both_workers_killed_mid_epoch_resume_and_match_an_uninterrupted_run(killed_and_resumed, two_workers):
    model_dir, killed, resumed = killed_and_resumed
    straight_dir, (straight, _) = two_workers
    for proc in killed:
        assert proc.code == -9, proc.why()
    for proc in resumed:
        assert proc.code == 0, proc.why()
    assert straight.code == 0, straight.why()
    report, uninterrupted = resumed[0].report(), straight.report()
    assert report["processes"] == 2 and report["resumed_after_epoch"] == 1 and report["replicas"] == 2
    assert resumed[1].report() == report  # the worker prints the chief's report
    assert report["skipped_steps"] == uninterrupted["skipped_steps"]
    np.testing.assert_allclose(report["train_bits_per_dim"], uninterrupted["train_bits_per_dim"], rtol=1e-5)
    np.testing.assert_allclose(report["test_bits_per_dim"], uninterrupted["test_bits_per_dim"], rtol=1e-5)
    for got, want in zip(_weights(model_dir), _weights(straight_dir), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert _files(model_dir) == _files(straight_dir)  # no workertemp_* copies left behind


def test_killing_only_the_worker_makes_the_chief_fail_with_a_clear_message(runs):
    chief, worker = runs["worker_lost"]
    assert worker.code == -9, worker.why()  # killed after its first step
    assert chief.code not in (0, None), chief.why()
    assert chief.ended - worker.ended < WORKER_LOST_BOUND_S, chief.why()
    lines = chief.stderr.strip().splitlines()
    assert lines[-1].startswith("train.py: error: Multi-worker training stopped on chief:0"), chief.why()
    assert "start every worker again" in lines[-1] and "Traceback" not in chief.stderr
    assert not (runs["root"] / "worker_lost" / "report.json").exists()


# ----------------------------------------------------------------------------- the pieces

@pytest.mark.parametrize("cluster, task, role", [
    ({"chief": ["a:1"], "worker": ["b:1"]}, ("chief", 0), (True, True)),
    ({"chief": ["a:1"], "worker": ["b:1"]}, ("worker", 0), (True, False)),
    ({"worker": ["a:1", "b:1", "c:1"]}, ("worker", 0), (True, True)),  # no chief: worker 0
    ({"worker": ["a:1", "b:1", "c:1"]}, ("worker", 2), (True, False)),
    ({"worker": ["a:1"]}, ("worker", 0), (False, True)),  # one task: not multi-worker
    (None, None, (False, True)),  # no TF_CONFIG
])
def test_task_role_names_the_chief(cluster, task, role, monkeypatch):
    if cluster is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}}))
    assert strategies.task_role() == role
    assert strategies.task_name() == (f"{task[0]}:{task[1]}" if task else "local")


def test_a_read_only_run_follows_the_chief_and_writes_nothing(tmp_path):
    settings = {"model": "resnet_vae", "epochs": 2, "batch_size": 8, "model_dir": str(tmp_path)}
    follower = run_dir.Run(tmp_path / "run", read_only=True)
    assert follower.next_phase(settings) == "training" and follower.start(settings) == "training"
    follower.record_epoch(0, {"bits_per_dim": 5.0})
    follower.set_phase("evaluating")
    follower.remove_backup()
    assert not (tmp_path / "run").exists()

    chief = run_dir.Run(tmp_path / "run")
    chief.start(settings)
    chief.set_phase("writing", test_bits_per_dim=4.0)
    (tmp_path / "run" / "backup").mkdir()
    follower = run_dir.Run(tmp_path / "run", read_only=True)
    assert follower.next_phase(settings) == "writing"  # what the chief's start will say
    assert follower.next_phase({**settings, "epochs": 3}) == "training"  # more epochs: train on
    before = sorted(os.listdir(tmp_path / "run")), (tmp_path / "run" / "state.json").read_text()
    assert follower.start(settings, overwrite=True) == "training"  # the chief clears, not the follower
    follower.remove_backup()
    assert (sorted(os.listdir(tmp_path / "run")), (tmp_path / "run" / "state.json").read_text()) == before
    with pytest.raises(errors.ConfigError, match="--model=resnet_vae there, flowpp now"):
        follower.start({**settings, "model": "flowpp"})  # the same checks as the chief's


def test_worker_lost_and_timeout_settings(monkeypatch):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    monkeypatch.setenv(strategies.COLLECTIVE_TIMEOUT_ENV, "30")
    err = strategies.worker_lost(tf.errors.DeadlineExceededError(None, None, "Collective has timed out."))
    assert isinstance(err, errors.UserError) and "\n" not in str(err)
    assert str(err).startswith("Multi-worker training stopped on worker:0: a collective with the other workers "
                               "timed out (a worker died, hung for more than 30 s")
    assert "start every worker again" in str(err)
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv(strategies.COLLECTIVE_TIMEOUT_ENV, bad)
        with pytest.raises(errors.ConfigError, match="KERAS_BDGM_COLLECTIVE_TIMEOUT_S"):
            strategies.collective_timeout_s()
    monkeypatch.delenv(strategies.COLLECTIVE_TIMEOUT_ENV)
    assert strategies.collective_timeout_s() == strategies.DEFAULT_COLLECTIVE_TIMEOUT_S
