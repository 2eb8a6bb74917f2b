"""`TrainConfig`: every setting of a training run, checked before anything is read or written.

examples/train.py maps its flags onto these fields; `keras_bdgm.runs.experiment.train` takes one.

Example:

    config = TrainConfig(model="resnet_vae", precision="w1a1", dataset="fashion_mnist",
                         epochs=10, batch_size=128, model_dir="runs/vae").resolved()
    config.eval_split     # "test"
"""

import dataclasses
import json
import os
import sys

from keras_bdgm import datasets
from keras_bdgm.runs import run_dir
from keras_bdgm.runs.errors import ConfigError
from keras_bdgm.models.evaluation import DEFAULT_BATCH_SIZE as DEFAULT_EVAL_BATCH_SIZE
from keras_bdgm.precision import parse as parse_precision
from keras_bdgm.models.presets import resolve as resolve_preset
from keras_bdgm.runs.recipes import LEARNING_RATE_DECAYS, RECIPES, check_choice, learning_rate, recipe
from keras_bdgm.runs.strategies import STRATEGIES


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
    learning_rate_decay: str | None = None  # None: the recipe's schedule; "cosine": to 0 over the run
    warm_start: str | None = None  # a finished run's folder or a .keras file: its weights start the model
    jit_compile: bool | None = None  # XLA for the train step; None: XLA when the steps left reach the model's xla_break_even_steps (None: never)
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
        if self.learning_rate_decay is not None:
            check_choice("learning_rate_decay", self.learning_rate_decay, LEARNING_RATE_DECAYS)
        if self.warm_start is not None and not os.path.exists(self.warm_start):
            raise ConfigError(
                f"--warm_start={self.warm_start} does not exist; pass a finished run's --model_dir "
                "or a .keras file of the same model."
            )
        if self.validation_every and not self.validation_split:
            raise ConfigError("validation_every > 0 needs a validation_split, e.g. --validation_split='train[90%:]'.")
        model_class = recipe(self.model).model_type
        try:
            resolve_preset(sys.modules[model_class.__module__].PRESETS, self.preset, self.overrides,
                           model=model_class.__name__)
            learning_rate(self.model, self.learning_rate, self.learning_rate_decay, self.total_steps)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        run_dir.check_model_dir(self.model_dir)

    @property
    def total_steps(self):
        """The run's training steps, epochs x steps_per_epoch (a cosine decay's length)."""
        return self.epochs * self.steps_per_epoch

    @property
    def eval_batch(self):
        """Images per evaluation batch: `eval_batch_size`, else DEFAULT_EVAL_BATCH_SIZE."""
        return self.eval_batch_size or DEFAULT_EVAL_BATCH_SIZE

    def resolved(self):
        """A copy with the train and evaluation splits filled in; validates it first."""
        self.validate()
        try:
            train_split, eval_split, _ = datasets.train_and_eval_splits(
                self.dataset, self.train_split, self.eval_split)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return dataclasses.replace(self, train_split=train_split, eval_split=eval_split)

    def settings(self):
        """The run's settings as stored in its folder (run.json)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("overwrite", "verbose")}
