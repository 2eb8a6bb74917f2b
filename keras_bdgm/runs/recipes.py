"""The models `train` knows and the paper's training recipe of each: one home for both.

    recipe = RECIPES["resnet_vae"]      # Recipe(model_class="ResNetVAE", learning_rate=0.002, ...)
    model = build_model("resnet_vae", (28, 28, 1), precision="w1a1", preset="small", width=32)
    model.compile(optimizer=optimizer("resnet_vae"))   # Adam with the recipe's learning rate

The recipes of the flow and the VAE are those of the paper's public code (the VAE's from
its train_rvae.py, the flow's from train_flow.py; see docs/ARCHITECTURE.md); the PixelCNN's
is this project's (measured on Fashion-MNIST, bench/probe_models.py):

| model      | Adam learning rate                                | batch | init batches |
|------------|---------------------------------------------------|-------|--------------|
| flowpp     | 1e-3, constant                                    | 128   | 25           |
| resnet_vae | 2e-3, x0.999995 per step, floor 5e-4              | 128   | 2            |
| pixelcnn   | 2e-3, constant                                    | 64    | 4            |

Every run trains with Adam (beta 0.9, 0.999, epsilon 1e-7) as Keras' legacy optimizer
(`optimizer`): it updates each variable with one fused op (`ResourceApplyAdam`), where the
current Keras Adam builds about a dozen ops per variable. The update is the same; the
train step's graph is smaller, so its first call traces in less time (bench/speed.py, "first
step"). Fine-tuning: a run may start from a trained model (`TrainConfig.warm_start`) and
decay the learning rate to 0 over its steps (`learning_rate_decay="cosine"`).

The models clip the global gradient norm to 1.0 and skip an update whose norm is above a bound
(100 for the flow, 1e5 for the VAE); those two belong to the models' train step and are
their constructors' defaults (`FlowPlusPlus(clip_norm=..., skip_threshold=...)`, the VAE's
presets).
"""

import dataclasses

import tensorflow as tf

import keras_bdgm.models
from keras_bdgm.runs.errors import ConfigError
from keras_bdgm.runs.schedules import ExponentialDecayWithFloor


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model is trained.

    Attributes:
      model_class: the class's name in `keras_bdgm.models`.
      learning_rate: Adam's (initial) learning rate.
      decay: None (constant) or (factor per step, floor) of an exponential decay.
      init_batches: batches of the data-dependent init (capped at 512 images by `train`).
      batch_size: the paper's global batch size.
    """

    model_class: str
    learning_rate: float
    decay: tuple | None
    init_batches: int
    batch_size: int = 128

    @property
    def model_type(self):
        """The model's class."""
        return getattr(keras_bdgm.models, self.model_class)


LEARNING_RATE_DECAYS = ("cosine",)  # besides the recipe's own schedule (None)

RECIPES = {
    "flowpp": Recipe("FlowPlusPlus", learning_rate=1e-3, decay=None, init_batches=25),
    "resnet_vae": Recipe("ResNetVAE", learning_rate=2e-3, decay=(0.999995, 5e-4), init_batches=2),
    "pixelcnn": Recipe("PixelCNN", learning_rate=2e-3, decay=None, init_batches=4, batch_size=64),
}


def check_choice(kind, value, choices):
    """Raises ConfigError unless `value` is one of `choices` (the message lists them)."""
    if value not in choices:
        raise ConfigError(f"Unknown {kind} {value!r}; expected one of: {', '.join(choices)}.")


def recipe(model):
    """The `Recipe` of `model` (a name in `RECIPES`); ConfigError for another name."""
    check_choice("model", model, tuple(RECIPES))
    return RECIPES[model]


def build_model(model, image_shape, precision="w32a32", preset="small", **overrides):
    """Builds `model` (a name in `RECIPES`) for images of `image_shape`."""
    return recipe(model).model_type(image_shape, precision=precision, preset=preset, **overrides)


def optimizer(model, value=None, decay=None, total_steps=None):
    """Adam with the learning rate (schedule) of `learning_rate(...)`, as every run uses it:
    `tf.keras.optimizers.legacy.Adam`, one fused update op per variable (module docstring).

    Example:
        model.compile(optimizer=optimizer("pixelcnn"))
    """
    return tf.keras.optimizers.legacy.Adam(learning_rate(model, value, decay, total_steps))


def learning_rate(model, value=None, decay=None, total_steps=None):
    """The learning rate (schedule) of a run of `model`.

    Args:
      model: a name in `RECIPES`.
      value: the initial learning rate; None: the recipe's.
      decay: None: the recipe's schedule (constant if `value` is given); "cosine": from the
        initial rate to 0 over `total_steps`, lr(t) = lr0 (1 + cos(pi t / T)) / 2
        (`tf.keras.optimizers.schedules.CosineDecay`), as for fine-tuning a trained model.
      total_steps: T, the run's training steps (for "cosine").

    Raises:
      ValueError: a learning rate <= 0, an unknown decay, or "cosine" without total_steps >= 1.
    """
    spec = recipe(model)
    if value is not None and not value > 0:
        raise ValueError(f"learning_rate must be > 0, got {value!r}.")
    if decay is not None:
        check_choice("learning_rate_decay", decay, LEARNING_RATE_DECAYS)
        if not total_steps or total_steps < 1:
            raise ValueError(f"A cosine learning rate decay needs the run's steps >= 1, got {total_steps!r}.")
        initial = spec.learning_rate if value is None else float(value)
        return tf.keras.optimizers.schedules.CosineDecay(initial, decay_steps=int(total_steps), alpha=0.0)
    if value is not None:
        return float(value)
    if spec.decay is None:
        return spec.learning_rate
    factor, floor = spec.decay
    return ExponentialDecayWithFloor(spec.learning_rate, factor, floor)
