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

With `strategy="multi_worker"` every worker calls `train` with the same settings (README.md,
"Scaling out"). They all train (each on its DATA shard of every global batch, see
`RunData.train`); only the chief writes into `model_dir`. After training the chief
evaluates and writes the files alone, with a copy of the model outside the strategy (loaded
from the training state), while the others wait for it and then return its report. A run
resumed past training is finished by the chief alone; the other workers return at once.

Example:

    report = train(TrainConfig(model="flowpp", precision="w1a1", preset="small",
                               dataset="fashion_mnist", epochs=1, model_dir="runs/a"))
"""

import dataclasses
import json
import math
import sys

import numpy as np
import tensorflow as tf

import keras_bdgm
from keras_bdgm import data as bdgm_data
from keras_bdgm import outputs, run_dir, strategies
from keras_bdgm.callbacks import run_callbacks
from keras_bdgm.errors import ConfigError, DataNotFoundError, DivergedError
from keras_bdgm.evaluation import DEFAULT_BATCH_SIZE as DEFAULT_EVAL_BATCH_SIZE
from keras_bdgm.evaluation import evaluate_bits_per_dim
from keras_bdgm.precision import parse as parse_precision
from keras_bdgm.presets import resolve as resolve_preset
from keras_bdgm.recipes import RECIPES, build_model, check_choice, learning_rate, recipe  # noqa: F401
from keras_bdgm.run_dir import REPORT_FILE, load_model  # noqa: F401
from keras_bdgm.strategies import STRATEGIES, get_strategy
from keras_bdgm.validation import ValidationCurve

MODELS = RECIPES  # the model names train knows, with their recipes


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
    eval_batch_size: int | None = None  # default: DEFAULT_EVAL_BATCH_SIZE
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
        check_choice("model", self.model, tuple(RECIPES))
        check_choice("strategy", self.strategy, STRATEGIES)
        try:
            parse_precision(self.precision)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value!r}; pass a whole number, e.g. --{name}=8.")
        for name in ("eval_examples", "eval_batch_size", "init_examples", "validation_examples"):
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
        model_class = recipe(self.model).model_type
        try:
            resolve_preset(sys.modules[model_class.__module__].PRESETS, self.preset, self.overrides,
                           model=model_class.__name__)
            learning_rate(self.model, self.learning_rate)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        run_dir.check_model_dir(self.model_dir)

    @property
    def eval_batch(self):
        """Images per evaluation batch: `eval_batch_size`, else DEFAULT_EVAL_BATCH_SIZE."""
        return self.eval_batch_size or DEFAULT_EVAL_BATCH_SIZE

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


class RunData:
    """The data a run reads (training, evaluation, validation and init batches), checked once.

    Raises ConfigError / DataNotFoundError at construction, before anything is trained or
    written, when a split the run reads is missing or its images differ in shape.
    """

    def __init__(self, config):
        self.config = config
        try:
            self.source = bdgm_data.resolve(config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir)
            self.image_shape = self.source.image_shape(config.train_split)
            for use, split in (("evaluation", config.eval_split), ("validation", config.validation_split)):
                if split is None or (use == "validation" and not config.validation_every):
                    continue
                self.source.num_examples(split)  # prepares the data once and checks the slice
                other = self.source.image_shape(split)
                if other != self.image_shape:
                    raise ValueError(
                        f"The {use} split {split!r} holds {other} images, the training split {self.image_shape}.")
        except FileNotFoundError as err:
            raise DataNotFoundError(str(err)) from None
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def _load(self, split, batch_size, shuffle=False, **kwargs):
        return self.source.load(split, batch_size, shuffle=shuffle, **kwargs)

    def train(self, skip_batches=0):
        """Shuffled training batches, repeated; a resumed run skips the batches it trained.

        Batches are global batches (`batch_size` images). Under a multi-worker strategy every
        worker runs this same seeded pipeline and tf.data shards it by DATA (not by FILE: tfds
        splits may be one file, fewer than the workers): each global batch is split into
        per-replica batches in order and worker w keeps those of its replicas. So at every
        step the workers see disjoint parts of one global batch (each worker reads all the
        data and drops the others' parts), and their union, in replica order, is the batch a
        single process with the same replicas trains on (tests/test_multi_worker.py).
        """
        c = self.config
        ds = self._load(c.train_split, c.batch_size, shuffle=True, seed=c.seed, drop_remainder=True).repeat()
        ds = ds.skip(skip_batches) if skip_batches else ds
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    def evaluation(self):
        c = self.config
        return self._load(c.eval_split, c.eval_batch, limit=c.eval_examples)

    def validation_images(self):
        """The validation curve's images, as one uint8 array."""
        c = self.config
        ds = self._load(c.validation_split, c.validation_examples, limit=c.validation_examples)
        return np.concatenate([np.asarray(b) for b in ds])

    def init_batch(self):
        """One batch for the data-dependent init: the recipe's batches, at most 512 images."""
        c = self.config
        n = c.init_examples or min(recipe(c.model).init_batches * c.batch_size, 512)
        return next(iter(self._load(c.train_split, n, shuffle=True, seed=c.seed + 1)))


def check_data(config):
    """The image shape of the training split, after checking every split the run reads."""
    return RunData(config).image_shape


def _all_finite(model):
    return all(np.isfinite(w.numpy()).all() for w in model.weights if w.dtype.is_floating)


def _build(config, image_shape):
    try:
        return build_model(config.model, image_shape, config.precision, config.preset, **config.overrides)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"Cannot build {config.model} (preset {config.preset!r}, overrides "
            f"{json.dumps(config.overrides)}): {err}"
        ) from None


def _fit(model, config, run, data, done, callbacks, chief=True):
    """Trains from epoch `done` to `config.epochs`, recording every epoch in `run`.

    chief=False: a non-chief worker (read-only `run`): no validation curve nor sample grids.
    A collective that fails (a worker died, hung or stopped) raises WorkerLostError.
    """
    validation = []
    if config.validation_every and chief:
        validation = [ValidationCurve(data.validation_images(), config.validation_every,
                                      run.file(run_dir.VALIDATION_FILE), seed=config.seed,
                                      log_dir=run.file(run_dir.LOG_DIR))]
    fit_callbacks, _ = run_callbacks(run, config.steps_per_epoch, config.batch_size, config.seed,
                                     extra=[*validation, *callbacks], chief=chief)
    try:
        model.fit(data.train(done * config.steps_per_epoch), epochs=config.epochs,
                  steps_per_epoch=config.steps_per_epoch, callbacks=fit_callbacks, verbose=config.verbose)
    except DivergedError as err:
        raise _diverged(err, config, run) from None
    except strategies.COLLECTIVE_ERRORS as err:
        if not strategies.is_multi_worker(model.distribute_strategy):
            raise
        raise strategies.worker_lost(err) from None


def _diverged(problem, config, run):
    last = run.completed_epochs()
    kept = (
        f"the last good training state (after epoch {last}) is kept in {run.file(run_dir.BACKUP_DIR)}"
        if last else "no epoch had finished, so no checkpoint was kept"
    )
    lr = config.learning_rate if config.learning_rate is not None else "its default"
    return DivergedError(
        f"{problem} Stopped: {kept}, and no model files were written. Lower --learning_rate "
        f"(was {lr}) or check the data, and start again with --overwrite."
    )


def train(config: TrainConfig, callbacks=()):
    """Trains a model as `config` says and writes its files; returns the report dict.

    build -> (data-dependent init) -> fit -> evaluate -> write files -> report, each phase
    recorded in the run's folder. Continues an unfinished run in `config.model_dir` (same
    settings; more epochs allowed) in the phase it stopped in. Everything the user can get
    wrong is checked before the folder is created.

    Raises:
      ConfigError, DataNotFoundError: bad settings or data, or settings that differ from
        those of the run already in the folder.
      RunExistsError: the folder holds a finished run with other settings (pass
        overwrite=True); with the same settings the finished run's report is returned.
      DivergedError: the objective went non-finite or most updates were skipped; the
        last good training state is kept and no model files are written.
      strategies.WorkerLostError: (multi-worker) a collective with the other workers failed:
        one died, hung past the collective timeout or stopped on an error.
    """
    config = config.resolved()
    multi_worker, chief = strategies.task_role() if config.strategy == "multi_worker" else (False, True)
    run = run_dir.Run(config.model_dir, read_only=not chief)
    if run.check(config.settings(), config.overwrite):  # finished already (e.g. killed after its report)
        if config.verbose:
            print(f"{config.model_dir} already holds this finished run; pass --overwrite to train it again.")
        return run_dir.read_json(run.file(REPORT_FILE))
    strategy_name = config.strategy
    # Only training needs every worker: past it, the chief finishes the run alone.
    if multi_worker and run.next_phase(config.settings(), config.overwrite) != "training":
        if not chief:
            return _worker_done(config, run, trained=False)
        multi_worker, strategy_name = False, "default"
    try:  # before the data is read: MultiWorkerMirroredStrategy must start before TensorFlow does
        strategy = get_strategy(strategy_name, config.tpu)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    data = RunData(config)
    tf.keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = _build(config, data.image_shape)
        keras_bdgm.initialize(model, data.init_batch())
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate(config.model, config.learning_rate)))
    done = 0 if config.overwrite else run.completed_epochs()
    previous = None if config.overwrite else run.stored_config()
    phase = run.start(config.settings(), config.overwrite, completed_epochs=done)
    if config.verbose and previous is not None:
        more = f", now for {config.epochs} epochs" if config.epochs > previous["epochs"] else ""
        print(f"Resuming {config.model_dir} in phase {phase!r} after epoch {done}{more}.")

    if phase == "training":
        if chief:
            run.state["replicas"] = strategy.num_replicas_in_sync
        if multi_worker:
            strategies.barrier(strategy)  # the chief has opened (or, with overwrite, cleared) the run
        _fit(model, config, run, data, done, callbacks, chief)
        run.set_phase("evaluating")
        if multi_worker:
            if not chief:
                strategies.barrier(strategy, timeout_s=0)  # until the chief has finished the run
                return _worker_done(config, run, trained=True)
            try:  # alone: a model outside the strategy, from the training state (backup/)
                return _finish(_restored_locally(config, data, run), config, run, data, strategy)
            finally:
                strategies.barrier(strategy, timeout_s=0, raise_errors=False)
    elif phase in ("evaluating", "writing"):
        with strategy.scope():
            run.restore_training_state(model)
    return _finish(model, config, run, data, strategy)


def _restored_locally(config, data, run):
    """The trained model, built outside any strategy and loaded from the training state."""
    model = _build(config, data.image_shape)
    keras_bdgm.initialize(model, data.init_batch())
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate(config.model, config.learning_rate)))
    run.restore_training_state(model)
    return model


def _worker_done(config, run, trained):
    """What a non-chief worker returns: the chief's report once it is written, else a note."""
    if run.finished:
        return run_dir.read_json(run.file(REPORT_FILE))
    note = ("trained with the chief; the chief writes the run's files" if trained else
            f"nothing to train (phase {run.next_phase(config.settings())!r}); the chief finishes the run")
    if config.verbose:
        print(f"{strategies.task_name()}: {note} in {config.model_dir}.")
    return {"task": strategies.task_name(), "model_dir": config.model_dir, "note": note}


def _finish(model, config, run, data, strategy):
    """Evaluates `model`, writes its files and the report, each phase once (see `train`)."""
    if run.phase in ("evaluating", "writing") and not _all_finite(model):
        raise _diverged(DivergedError("Training produced non-finite weights."), config, run)
    if run.phase == "evaluating":
        test_bpd = evaluate_bits_per_dim(model, data.evaluation(), seed=config.seed, verbose=config.verbose)
        if not math.isfinite(test_bpd):
            raise _diverged(DivergedError(f"The test bits/dim is {test_bpd}."), config, run)
        run.set_phase("writing", test_bits_per_dim=test_bpd)
    if run.phase == "writing":
        outputs.write_model_files(model, run, config.num_samples_grid, config.seed)
        run.set_phase("reporting")
        run.remove_backup()
    report = outputs.report(model, config, run, run.state.get("replicas", strategy.num_replicas_in_sync))
    run_dir.write_json(run.file(REPORT_FILE), report)  # last: the run is finished
    return report


def completed_epochs(model_dir):
    """Epochs already finished by an interrupted run in `model_dir` (0 if none)."""
    return run_dir.Run(model_dir).completed_epochs()
