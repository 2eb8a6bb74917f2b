"""Training, evaluation and reports: the logic behind examples/*.py, importable for tests.

`train(TrainConfig(...))` checks its settings and data, builds a model in a `tf.distribute`
strategy, runs its data-dependent init, fits it with Keras callbacks (progress bar,
`BackupAndRestore`, `ModelCheckpoint`, `TensorBoard` with a grid of samples per epoch, a
guard that stops a diverging run) and writes into `model_dir` (see `keras_bdgm.run_dir`):

    report.json    dataset, model, precision, test bits/dim, parameter and binary counts,
                   float32 and packed bytes, images/s, wall time (of the whole run)
    samples.png    a grid of samples
    model.keras    the whole model (`import keras_bdgm` then tf.keras.models.load_model)
    model.bdgm     the packed 1-bit weights (keras_bdgm.memory.load_packed)

A run killed at any moment continues, when started again with the same settings, in the
phase it was in (training, evaluating, writing files) and ends with the same files.

Example:

    report = train(TrainConfig(model="flowpp", precision="w1a1", preset="small",
                               dataset="fashion_mnist", epochs=1, model_dir="runs/a"))
"""

import dataclasses
import json
import math
import os
import sys

import numpy as np
import tensorflow as tf

import keras_bdgm
from keras_bdgm import data as bdgm_data
from keras_bdgm import image_grid, outputs, run_dir
from keras_bdgm.callbacks import DivergenceGuard, RunRecorder, SampleGrid, Throughput  # noqa: F401
from keras_bdgm.errors import ConfigError, DataNotFoundError, DivergedError, RunNotFoundError
from keras_bdgm.precision import parse as parse_precision
from keras_bdgm.presets import resolve as resolve_preset
from keras_bdgm.schedules import ExponentialDecayWithFloor
from keras_bdgm.validation import ValidationCurve

# Per model: class name and the training defaults of the paper's public code
# (tom-bird/binary-gen-models, commit 8b45e5d): the VAE's from train_rvae.py (lr 2e-3 decayed
# x0.999995 per step to 5e-4, 2 init batches; its later train.py, a9311d2, differs), the
# flow's from train_flow.py (lr 1e-3 constant, 25 init batches). See docs/ARCHITECTURE.md.
MODELS = {
    "flowpp": {"class": "FlowPlusPlus", "learning_rate": 1e-3, "decay": None, "init_batches": 25},
    "resnet_vae": {"class": "ResNetVAE", "learning_rate": 2e-3, "decay": (0.999995, 5e-4), "init_batches": 2},
}
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
REPORT_FILE, SAMPLES_FILE, KERAS_FILE, PACKED_FILE = (
    outputs.REPORT_FILE, outputs.SAMPLES_FILE, outputs.KERAS_FILE, outputs.PACKED_FILE)
VALIDATION_FILE = "validation_curve.json"


def _check_choice(kind, value, choices):
    if value not in choices:
        raise ConfigError(f"Unknown {kind} {value!r}; expected one of: {', '.join(choices)}.")


def build_model(model, image_shape, precision="w32a32", preset="small", **overrides):
    """Builds `model` ("flowpp" or "resnet_vae") for images of `image_shape`."""
    _check_choice("model", model, tuple(MODELS))
    cls = getattr(keras_bdgm.models, MODELS[model]["class"])
    return cls(image_shape, precision=precision, preset=preset, **overrides)


def learning_rate(model, value=None):
    """The model's default learning rate (schedule), or the constant `value`."""
    _check_choice("model", model, tuple(MODELS))
    spec = MODELS[model]
    if value is not None:
        if not value > 0:
            raise ValueError(f"learning_rate must be > 0, got {value!r}.")
        return float(value)
    if spec["decay"] is None:
        return spec["learning_rate"]
    decay, floor = spec["decay"]
    return ExponentialDecayWithFloor(spec["learning_rate"], decay, floor)


def get_strategy(name="default", tpu=None):
    """A `tf.distribute` strategy by name: default | mirrored | multi_worker | tpu."""
    _check_choice("strategy", name, STRATEGIES)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if not tf.config.list_logical_devices("GPU"):
            # Without GPUs, mirror over every logical CPU device (one unless configured).
            return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
        raise ValueError(f"No TPU could be reached ({e}); pass --tpu=<name or grpc address> on a TPU host.") from e
    return tf.distribute.TPUStrategy(resolver)


def backup_dir(model_dir):
    return os.path.join(model_dir, run_dir.BACKUP_DIR)


def completed_epochs(model_dir):
    """Epochs already finished by an interrupted run in `model_dir` (0 if none)."""
    # BackupAndRestore writes under <backup>/chief (the chief worker's copy).
    latest = tf.train.latest_checkpoint(os.path.join(backup_dir(model_dir), "chief"))
    if latest is None:
        return 0
    reader = tf.train.load_checkpoint(latest)
    key = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
    return int(reader.get_tensor(key)) + 1 if reader.has_tensor(key) else 0


@dataclasses.dataclass
class TrainConfig:
    """Everything `train` needs; examples/train.py maps its flags onto these fields."""

    model: str = "flowpp"
    precision: str = "w1a1"
    preset: str = "small"
    dataset: str = "fashion_mnist"
    epochs: int = 1
    steps_per_epoch: int = 100
    batch_size: int = 64
    learning_rate: float | None = None
    model_dir: str = "runs/default"
    seed: int = 0
    strategy: str = "default"
    tpu: str | None = None
    data_dir: str | None = None
    manual_dir: str | None = None
    eval_examples: int | None = None
    eval_split: str | None = None  # default: "test", or the last 10% of a flat image folder
    train_split: str | None = None  # default: "train", or the rest of train beside eval_split
    validation_split: str | None = None
    validation_examples: int = 1000
    validation_every: int = 0
    init_examples: int | None = None
    num_samples_grid: int = 64
    overrides: dict = dataclasses.field(default_factory=dict)
    overwrite: bool = False
    verbose: int = 1

    def validate(self):
        """Raises ConfigError for a bad setting (all that can be checked without the data)."""
        _check_choice("model", self.model, tuple(MODELS))
        _check_choice("strategy", self.strategy, STRATEGIES)
        try:
            parse_precision(self.precision)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value!r}; pass a whole number, e.g. --{name}=8.")
        for name in ("eval_examples", "init_examples", "validation_examples"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be >= 1 (or unset), got {value!r}; pass a whole number.")
        if not isinstance(self.overrides, dict):
            raise ConfigError(
                "--overrides must be a JSON object of preset hyperparameters, e.g. "
                f"'{{\"width\": 48}}', got {json.dumps(self.overrides)}."
            )
        if self.validation_every and not self.validation_split:
            raise ConfigError("validation_every > 0 needs a validation_split, e.g. --validation_split='train[90%:]'.")
        model_module = sys.modules[getattr(keras_bdgm.models, MODELS[self.model]["class"]).__module__]
        try:
            resolve_preset(model_module.PRESETS, self.preset, self.overrides, model=MODELS[self.model]["class"])
            learning_rate(self.model, self.learning_rate)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        run_dir.check_model_dir(self.model_dir)

    def resolved(self):
        """A copy with the train and evaluation splits filled in; validates it first."""
        self.validate()
        try:
            train_split, eval_split, _ = bdgm_data.train_and_eval_splits(
                self.dataset, self.train_split, self.eval_split)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return dataclasses.replace(self, train_split=train_split, eval_split=eval_split)

    def settings(self):
        """The run's settings as stored in its folder (run.json)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("overwrite", "verbose")}


def _train_dataset(config, skip_batches):
    ds = bdgm_data.load(
        config.dataset, config.train_split, batch_size=config.batch_size, shuffle=True, seed=config.seed,
        data_dir=config.data_dir, manual_dir=config.manual_dir, drop_remainder=True,
    ).repeat()
    # A resumed run continues the same stream of batches as an uninterrupted one.
    return ds.skip(skip_batches) if skip_batches else ds


def _eval_dataset(config):
    return bdgm_data.load(
        config.dataset, config.eval_split, batch_size=config.batch_size, shuffle=False,
        data_dir=config.data_dir, manual_dir=config.manual_dir, limit=config.eval_examples,
    )


def _init_batch(config, spec):
    n = config.init_examples or min(spec["init_batches"] * config.batch_size, 512)
    ds = bdgm_data.load(
        config.dataset, config.train_split, batch_size=n, shuffle=True, seed=config.seed + 1,
        data_dir=config.data_dir, manual_dir=config.manual_dir,
    )
    return next(iter(ds))


def evaluate_bits_per_dim(model, dataset, num_samples=1, seed=0):
    """Mean per-image bits/dim of `model` over a dataset of uint8 image batches.

    Batch i draws its noise from seed (seed, i), so the figure is reproducible.
    """
    total, count = 0.0, 0
    for i, batch in enumerate(dataset):
        images = batch["image"] if isinstance(batch, dict) else batch
        bpd = model.bits_per_dim(images, num_samples=num_samples, seed=(seed, i))
        bpd = np.asarray(bpd, np.float64)
        total += bpd.sum()
        count += bpd.size
    if count == 0:
        raise ValueError("The evaluation dataset is empty.")
    return total / count


def _validation_callbacks(config, log_dir):
    """A `ValidationCurve` on `validation_split` when `validation_every` > 0, else none."""
    if not config.validation_every:
        return []
    ds = bdgm_data.load(config.dataset, config.validation_split, batch_size=config.validation_examples,
                        shuffle=False, data_dir=config.data_dir, manual_dir=config.manual_dir,
                        limit=config.validation_examples)
    images = np.concatenate([np.asarray(b) for b in ds])
    return [ValidationCurve(images, config.validation_every, os.path.join(config.model_dir, VALIDATION_FILE),
                            seed=config.seed, log_dir=log_dir)]


def _all_finite(model):
    return all(np.isfinite(w.numpy()).all() for w in model.weights if w.dtype.is_floating)


def check_data(config):
    """The image shape of the training split, after checking every split the run reads.

    Raises ConfigError / DataNotFoundError before anything is trained or written.
    """
    try:
        shape = bdgm_data.image_shape(config.dataset, config.train_split)
        for use, split in (("evaluation", config.eval_split), ("validation", config.validation_split)):
            if split is None or (use == "validation" and not config.validation_every):
                continue
            bdgm_data.load(config.dataset, split, batch_size=1, shuffle=False, data_dir=config.data_dir,
                           manual_dir=config.manual_dir)
            other = bdgm_data.image_shape(config.dataset, split)
            if other != shape:
                raise ValueError(f"The {use} split {split!r} holds {other} images, the training split {shape}.")
    except FileNotFoundError as err:
        raise DataNotFoundError(str(err)) from None
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return shape


def _build(config, image_shape):
    try:
        return build_model(config.model, image_shape, config.precision, config.preset, **config.overrides)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"Cannot build {config.model} (preset {config.preset!r}, overrides "
            f"{json.dumps(config.overrides)}): {err}"
        ) from None


def _restore_trained(model, config):
    """Loads the state at the end of training (BackupAndRestore's backup) into `model`."""
    latest = tf.train.latest_checkpoint(os.path.join(backup_dir(config.model_dir), "chief"))
    if latest is None:
        raise ConfigError(
            f"{config.model_dir} finished training, but its training state ({backup_dir(config.model_dir)}) "
            "is gone; pass --overwrite to train again."
        )
    model.optimizer.build(model.trainable_variables)
    tf.train.Checkpoint(model=model).read(latest).expect_partial()


def _fit(model, config, run, done, callbacks):
    """Trains from epoch `done` to `config.epochs`, recording every epoch in `run`."""
    throughput = Throughput(config.batch_size)
    log_dir = os.path.join(config.model_dir, "logs")
    fit_callbacks = [
        DivergenceGuard(config.steps_per_epoch),  # first: acts before anything is saved
        throughput,
        # An epoch's logs and checkpoint are saved before its backup: a run killed in
        # between trains the epoch again and saves both again (the same values).
        RunRecorder(run, throughput),
        tf.keras.callbacks.ModelCheckpoint(
            os.path.join(config.model_dir, "checkpoints", "epoch{epoch:03d}"), save_weights_only=True
        ),
        # The backup is kept after fit: the evaluation and the files are made from it.
        tf.keras.callbacks.BackupAndRestore(backup_dir(config.model_dir), delete_checkpoint=False),
        tf.keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0),
        SampleGrid(log_dir, num=16, seed=config.seed),
        *_validation_callbacks(config, log_dir),
        *callbacks,
    ]
    try:
        model.fit(
            _train_dataset(config, done * config.steps_per_epoch),
            epochs=config.epochs,
            steps_per_epoch=config.steps_per_epoch,
            callbacks=fit_callbacks,
            verbose=config.verbose,
        )
    except DivergedError as err:
        raise _diverged(err, config) from None


def _diverged(problem, config):
    last = completed_epochs(config.model_dir)
    kept = (
        f"the last good training state (after epoch {last}) is kept in {backup_dir(config.model_dir)}"
        if last else "no epoch had finished, so no checkpoint was kept"
    )
    lr = config.learning_rate if config.learning_rate is not None else "its default"
    return DivergedError(
        f"{problem} Stopped: {kept}, and no model files were written. Lower --learning_rate "
        f"(was {lr}) or check the data, and start again with --overwrite."
    )


def train(config: TrainConfig, callbacks=()):
    """Trains a model as `config` says and writes its files; returns the report dict.

    Continues an unfinished run in `config.model_dir` (same settings; more epochs allowed)
    in the phase it stopped in. Everything the user can get wrong is checked before the
    folder is created.

    Raises:
      ConfigError, DataNotFoundError: bad settings or data, or settings that differ from
        those of the run already in the folder.
      RunExistsError: the folder holds a finished run with other settings (pass
        overwrite=True); with the same settings the finished run's report is returned.
      DivergedError: the objective went non-finite or most updates were skipped; the
        last good training state is kept and no model files are written.
    """
    config = config.resolved()
    run = run_dir.Run(config.model_dir)
    if run.check(config.settings(), config.overwrite):  # finished already (e.g. killed after its report)
        if config.verbose:
            print(f"{config.model_dir} already holds this finished run; pass --overwrite to train it again.")
        return run_dir.read_json(run.file(REPORT_FILE))
    image_shape = check_data(config)
    try:
        strategy = get_strategy(config.strategy, config.tpu)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    tf.keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = _build(config, image_shape)
        keras_bdgm.initialize(model, _init_batch(config, MODELS[config.model]))
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate(config.model, config.learning_rate)))
    done = 0 if config.overwrite else completed_epochs(config.model_dir)
    previous = None if config.overwrite else run.stored_config()
    phase = run.start(config.settings(), config.overwrite, completed_epochs=done)
    if config.verbose and previous is not None:
        more = f", now for {config.epochs} epochs" if config.epochs > previous["epochs"] else ""
        print(f"Resuming {config.model_dir} in phase {phase!r} after epoch {done}{more}.")

    if phase == "training":
        _fit(model, config, run, done, callbacks)
        run.set_phase("evaluating")
    elif phase in ("evaluating", "writing"):
        with strategy.scope():
            _restore_trained(model, config)
    if run.phase in ("evaluating", "writing") and not _all_finite(model):
        raise _diverged(DivergedError("Training produced non-finite weights."), config)
    if run.phase == "evaluating":
        test_bpd = evaluate_bits_per_dim(model, _eval_dataset(config), seed=config.seed)
        if not math.isfinite(test_bpd):
            raise _diverged(DivergedError(f"The test bits/dim is {test_bpd}."), config)
        run.set_phase("writing", test_bits_per_dim=test_bpd)
    if run.phase == "writing":
        outputs.write_model_files(model, run, config.num_samples_grid, config.seed)
        run.set_phase("reporting")
        run.remove_backup()
    report = outputs.report(model, config, run, strategy.num_replicas_in_sync)
    run_dir.write_json(run.file(REPORT_FILE), report)  # last: the run is finished
    return report


def load_model(model_dir_or_file):
    """Loads `model.keras` from a model_dir (or a .keras path).

    Raises:
      RunNotFoundError: no saved model there (the message says what the folder holds).
    """
    path = str(model_dir_or_file)
    if path.endswith(".keras") and not os.path.isdir(path):
        folder = os.path.dirname(path)
    else:
        folder, path = path, os.path.join(path, KERAS_FILE)
    if not os.path.exists(path):
        state = run_dir.Run(folder).stored_state() if os.path.isdir(folder) else None
        raise RunNotFoundError(
            f"{folder} holds an unfinished run (phase {state['phase']}); finish it by running "
            "examples/train.py again with its flags." if state else
            f"No saved model in {folder or '.'} (no {KERAS_FILE}); pass the --model_dir of a "
            "finished run, or train one with examples/train.py --model_dir=..."
        )
    return tf.keras.models.load_model(path)


def write_sample_grid(model, path, num=64, temperature=1.0, seed=0):
    """Samples `num` images and writes them as one PNG grid; returns the grid."""
    grid = image_grid.image_grid(np.asarray(model.sample(num, temperature=temperature, seed=seed)))
    image_grid.write_png(path, grid)
    return grid
