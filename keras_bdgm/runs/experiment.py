"""Training, evaluation and reports: the logic behind examples/*.py, importable for tests.

`train(TrainConfig(...))` checks its settings and data, builds a model in a `tf.distribute`
strategy, runs its data-dependent init, fits it with Keras callbacks (progress bar,
`BackupAndRestore`, `ModelCheckpoint`, `TensorBoard` with a grid of samples per epoch, a
guard that stops a diverging run) and writes into `model_dir` (see `keras_bdgm.runs.run_dir`):

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

import json
import math

import tensorflow as tf

import keras_bdgm
from keras_bdgm.runs import reports, run_dir, strategies
from keras_bdgm.runs.callbacks import all_finite, run_callbacks
from keras_bdgm.runs.errors import ConfigError, DivergedError
from keras_bdgm.models.evaluation import DEFAULT_BATCH_SIZE as DEFAULT_EVAL_BATCH_SIZE  # noqa: F401
from keras_bdgm.models.evaluation import evaluate_bits_per_dim
from keras_bdgm.runs.recipes import RECIPES, build_model, learning_rate, optimizer, recipe  # noqa: F401
from keras_bdgm.runs.run_data import RunData
from keras_bdgm.runs.run_dir import REPORT_FILE, load_model  # noqa: F401
from keras_bdgm.runs.strategies import STRATEGIES, get_strategy  # noqa: F401
from keras_bdgm.runs.train_config import TrainConfig
from keras_bdgm.runs.validation import ValidationCurve

MODELS = RECIPES  # the model names train knows, with their recipes


def check_data(config):
    """The image shape of the training split, after checking every split the run reads."""
    return RunData(config).image_shape


def _build(config, image_shape):
    try:
        return build_model(config.model, image_shape, config.precision, config.preset, **config.overrides)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"Cannot build {config.model} (preset {config.preset!r}, overrides "
            f"{json.dumps(config.overrides)}): {err}"
        ) from None


def _optimizer(config):
    """Adam with the run's learning rate (schedule): `recipes.optimizer`."""
    return optimizer(config.model, config.learning_rate, config.learning_rate_decay, config.total_steps)


def _jit_compile(config, model, done):
    """XLA for the train step: `config.jit_compile` when given; else True when the steps left
    ((epochs - done) x steps_per_epoch) reach the model's `xla_break_even_steps` (the run is
    long enough for XLA's faster steps to repay its compilation) on one replica; else None
    (the model's default)."""
    if config.jit_compile is not None:
        return config.jit_compile
    break_even = model.xla_break_even_steps
    steps_left = (config.epochs - done) * config.steps_per_epoch
    if break_even is not None and steps_left >= break_even and model.distribute_strategy.num_replicas_in_sync == 1:
        return True
    return None


def _initialize(model, config, data):
    """The data-dependent init; then, for `warm_start`, the weights of that model.

    A warm start must be the same model (class and configuration): another one raises
    ConfigError naming the difference. Its weights replace every weight of `model`
    (the optimizer starts afresh); a resumed run then restores its own training state.
    """
    keras_bdgm.initialize(model, data.init_batch())
    if config.warm_start is None:
        return
    try:
        source = load_model(config.warm_start)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--warm_start={config.warm_start} is not a model Keras can load: {err}") from None
    wanted, found = _architecture(model), _architecture(source)
    if wanted != found:
        differ = "; ".join(f"{k}={found.get(k)!r} there, {wanted.get(k)!r} here"
                           for k in sorted(set(wanted) | set(found)) if wanted.get(k) != found.get(k))
        raise ConfigError(
            f"--warm_start={config.warm_start} holds another model ({differ}); warm-start from a "
            "model of the same --model, --precision, --preset and --overrides."
        )
    model.set_weights(source.get_weights())


def _architecture(model):
    """What must match for one model's weights to start another: class and configuration."""
    config = json.loads(json.dumps(model.get_config()))  # tuples as lists, as a loaded model has them
    return {"class": type(model).__name__,
            **{k: v for k, v in config.items() if k not in ("name", "trainable", "dtype")}}


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
    done = 0 if config.overwrite else run.completed_epochs()
    with strategy.scope():
        model = _build(config, data.image_shape)
        _initialize(model, config, data)
        model.compile(optimizer=_optimizer(config), jit_compile=_jit_compile(config, model, done))
    if done and run.next_phase(config.settings(), config.overwrite) == "training":
        run.check_optimizer_state(model.optimizer)  # before anything in the folder changes
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
    _initialize(model, config, data)
    model.compile(optimizer=_optimizer(config), jit_compile=config.jit_compile)
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
    if run.phase in ("evaluating", "writing") and not all_finite(model):
        raise _diverged(DivergedError("Training produced non-finite weights."), config, run)
    if run.phase == "evaluating":
        test_bpd = evaluate_bits_per_dim(model, data.evaluation(), seed=config.seed, verbose=config.verbose)
        if not math.isfinite(test_bpd):
            raise _diverged(DivergedError(f"The test bits/dim is {test_bpd}."), config, run)
        run.set_phase("writing", test_bits_per_dim=test_bpd)
    if run.phase == "writing":
        reports.write_model_files(model, run, config.num_samples_grid, config.seed)
        run.set_phase("reporting")
        run.remove_backup()
    report = reports.report(model, config, run, run.state.get("replicas", strategy.num_replicas_in_sync))
    run_dir.write_json(run.file(REPORT_FILE), report)  # last: the run is finished
    return report


def completed_epochs(model_dir):
    """Epochs already finished by an interrupted run in `model_dir` (0 if none)."""
    return run_dir.Run(model_dir).completed_epochs()
