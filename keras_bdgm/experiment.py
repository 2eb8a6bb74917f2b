"""Training, evaluation and reports: the logic behind examples/*.py, importable for tests.

`train(TrainConfig(...))` builds a model in a `tf.distribute` strategy, runs its
data-dependent init, fits it with Keras callbacks (progress bar, `BackupAndRestore` so a
killed run resumes at the epoch it stopped, `ModelCheckpoint`, `TensorBoard` with a grid of
samples per epoch) and writes into `model_dir`:

    report.json    dataset, model, precision, test bits/dim, parameter and binary counts,
                   float32 and packed bytes, images/s, wall time
    samples.png    a grid of samples
    model.keras    the whole model (tf.keras.models.load_model)
    model.bdgm     the packed 1-bit weights (keras_bdgm.memory.load_packed)

Example:

    report = train(TrainConfig(model="flowpp", precision="w1a1", preset="small",
                               dataset="fashion_mnist", epochs=1, model_dir="runs/a"))
"""

import dataclasses
import json
import os
import time

import numpy as np
import tensorflow as tf

import keras_bdgm
from keras_bdgm import data as bdgm_data
from keras_bdgm import image_grid, memory
from keras_bdgm.precision import parse as parse_precision
from keras_bdgm.validation import ValidationCurve

_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")

# Per model: class name, training defaults of the paper's public code (REFERENCE section 4).
MODELS = {
    "flowpp": {"class": "FlowPlusPlus", "learning_rate": 1e-3, "decay": None, "init_batches": 25},
    "resnet_vae": {"class": "ResNetVAE", "learning_rate": 2e-3, "decay": (0.999995, 5e-4), "init_batches": 2},
}
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
REPORT_FILE, SAMPLES_FILE, KERAS_FILE, PACKED_FILE = "report.json", "samples.png", "model.keras", "model.bdgm"
VALIDATION_FILE = "validation_curve.json"


def _check_choice(kind, value, choices):
    if value not in choices:
        raise ValueError(f"Unknown {kind} {value!r}; expected one of: {', '.join(choices)}.")


@_serializable
class ExponentialDecayWithFloor(tf.keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = max(initial * decay**step, floor): the ResNet VAE's schedule."""

    def __init__(self, initial, decay, floor):
        self.initial, self.decay, self.floor = float(initial), float(decay), float(floor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        return tf.maximum(self.initial * tf.pow(self.decay, step), self.floor)

    def get_config(self):
        return {"initial": self.initial, "decay": self.decay, "floor": self.floor}


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
    return os.path.join(model_dir, "backup")


def completed_epochs(model_dir):
    """Epochs already finished by an interrupted run in `model_dir` (0 if none)."""
    # BackupAndRestore writes under <backup>/chief (the chief worker's copy).
    latest = tf.train.latest_checkpoint(os.path.join(backup_dir(model_dir), "chief"))
    if latest is None:
        return 0
    reader = tf.train.load_checkpoint(latest)
    key = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
    return int(reader.get_tensor(key)) + 1 if reader.has_tensor(key) else 0


class SampleGrid(tf.keras.callbacks.Callback):
    """Writes a grid of `num` samples to TensorBoard after every epoch."""

    def __init__(self, log_dir, num=16, seed=0):
        super().__init__()
        self.num, self.seed = num, seed
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples"))

    def on_epoch_end(self, epoch, logs=None):
        grid = image_grid.image_grid(np.asarray(self.model.sample(self.num, seed=self.seed)))
        with self.writer.as_default():
            tf.summary.image("samples", grid[None], step=epoch)
        self.writer.flush()


class Throughput(tf.keras.callbacks.Callback):
    """Measures training images per second, per epoch (the first includes tracing)."""

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size
        self.epoch_rates = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_rates.append(self._steps * self.batch_size / (time.perf_counter() - self._start))

    @property
    def images_per_second(self):
        rates = self.epoch_rates[1:] or self.epoch_rates
        return float(np.median(rates)) if rates else float("nan")


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
    eval_split: str = "test"
    train_split: str = "train"
    validation_split: str | None = None
    validation_examples: int = 1000
    validation_every: int = 0
    init_examples: int | None = None
    num_samples_grid: int = 64
    overrides: dict = dataclasses.field(default_factory=dict)
    overwrite: bool = False
    verbose: int = 1

    def validate(self):
        _check_choice("model", self.model, tuple(MODELS))
        _check_choice("strategy", self.strategy, STRATEGIES)
        parse_precision(self.precision)
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}.")


def _finished_check(config):
    report = os.path.join(config.model_dir, REPORT_FILE)
    if os.path.exists(report) and not config.overwrite:
        raise FileExistsError(
            f"{config.model_dir} already holds a finished run ({REPORT_FILE}); pass --overwrite "
            "to train again there, or choose another --model_dir."
        )


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
    if not config.validation_split:
        raise ValueError("validation_every > 0 needs a validation_split, e.g. 'train[90%:]'.")
    ds = bdgm_data.load(config.dataset, config.validation_split, batch_size=config.validation_examples,
                        shuffle=False, data_dir=config.data_dir, manual_dir=config.manual_dir,
                        limit=config.validation_examples)
    images = np.concatenate([np.asarray(b) for b in ds])
    return [ValidationCurve(images, config.validation_every, os.path.join(config.model_dir, VALIDATION_FILE),
                            seed=config.seed, log_dir=log_dir)]


def _all_finite(model):
    return all(np.isfinite(w.numpy()).all() for w in model.weights if w.dtype.is_floating)


def train(config: TrainConfig, callbacks=()):
    """Trains a model as `config` says and writes its files; returns the report dict."""
    config.validate()
    _finished_check(config)
    os.makedirs(config.model_dir, exist_ok=True)
    tf.keras.utils.set_random_seed(config.seed)
    spec = MODELS[config.model]
    image_shape = bdgm_data.image_shape(config.dataset)
    strategy = get_strategy(config.strategy, config.tpu)
    start = time.time()
    with strategy.scope():
        model = build_model(config.model, image_shape, config.precision, config.preset, **config.overrides)
        keras_bdgm.initialize(model, _init_batch(config, spec))
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate(config.model, config.learning_rate)))
    done = completed_epochs(config.model_dir)
    if done and config.verbose:
        print(f"Resuming {config.model_dir} after epoch {done}.")
    throughput = Throughput(config.batch_size)
    log_dir = os.path.join(config.model_dir, "logs")
    fit_callbacks = [
        tf.keras.callbacks.BackupAndRestore(backup_dir(config.model_dir)),
        tf.keras.callbacks.ModelCheckpoint(
            os.path.join(config.model_dir, "checkpoints", "epoch{epoch:03d}"), save_weights_only=True
        ),
        tf.keras.callbacks.TerminateOnNaN(),
        tf.keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0),
        SampleGrid(log_dir, num=16, seed=config.seed),
        throughput,
        *_validation_callbacks(config, log_dir),
        *callbacks,
    ]
    history = model.fit(
        _train_dataset(config, done * config.steps_per_epoch),
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        callbacks=fit_callbacks,
        verbose=config.verbose,
    )
    if not _all_finite(model):
        raise FloatingPointError(
            f"Training produced non-finite weights; nothing was written to {config.model_dir} "
            "beyond its checkpoints. Lower --learning_rate or check the data."
        )
    test_bpd = evaluate_bits_per_dim(model, _eval_dataset(config), seed=config.seed)
    samples = np.asarray(model.sample(config.num_samples_grid, seed=config.seed))
    image_grid.write_png(os.path.join(config.model_dir, SAMPLES_FILE), image_grid.image_grid(samples))
    model.save(os.path.join(config.model_dir, KERAS_FILE))
    packed_bytes = memory.save_packed(model, os.path.join(config.model_dir, PACKED_FILE))
    fp = memory.footprint(model)
    report = {
        "dataset": config.dataset,
        "model": config.model,
        "precision": config.precision,
        "preset": config.preset,
        "overrides": config.overrides,
        "test_bits_per_dim": float(test_bpd),
        "eval_split": config.eval_split,
        "eval_examples": config.eval_examples,
        "train_split": config.train_split,
        "train_bits_per_dim": [float(v) for v in history.history.get("bits_per_dim", [])],
        "skipped_steps": [float(v) for v in history.history.get("skipped_steps", [])],
        "parameters": fp.parameters,
        "binary_weights": fp.binary_weights,
        "real_parameters": fp.real_parameters,
        "binary_share": fp.binary_share,
        "float32_bytes": fp.float32_bytes,
        "one_bit_bytes": fp.bytes,
        "packed_bytes": packed_bytes,
        "images_per_second": throughput.images_per_second,
        "wall_time_s": time.time() - start,
        "epochs": config.epochs,
        "steps_per_epoch": config.steps_per_epoch,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "strategy": config.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "resumed_after_epoch": done,
    }
    with open(os.path.join(config.model_dir, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
    return report


def load_model(model_dir_or_file):
    """Loads `model.keras` from a model_dir (or a .keras path)."""
    path = model_dir_or_file
    if os.path.isdir(path):
        path = os.path.join(path, KERAS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No saved model at {path}; train one with examples/train.py --model_dir=...")
    import keras_bdgm.models.flowpp  # noqa: F401  (register the model classes)
    import keras_bdgm.models.resnet_vae  # noqa: F401
    return tf.keras.models.load_model(path)


def write_sample_grid(model, path, num=64, temperature=1.0, seed=0):
    """Samples `num` images and writes them as one PNG grid; returns the grid."""
    grid = image_grid.image_grid(np.asarray(model.sample(num, temperature=temperature, seed=seed)))
    image_grid.write_png(path, grid)
    return grid

