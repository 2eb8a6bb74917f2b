"""Data-dependent initialization (weight-norm style) for every layer that supports it.

Salimans & Kingma (2016) initialize a weight-normalized layer from one batch: with
gain g = 1 and bias b = 0 the layer's pre-activation t has per-channel mean m and standard
deviation s; setting g = init_scale / s and b = -m * init_scale / s makes the output have
mean 0 and standard deviation `init_scale`. `init_scale = 0` sets g = b = 0 (a residual
branch that starts as zero). Flow layers (e.g. the per-element affine normalization) use
the same hook.

A layer takes part by subclassing `DataDependentInit` and calling
`self._maybe_data_dependent_init(...)` from its `call`; `initialize(model, x)` runs one
forward pass in which every such layer initializes itself from the input it actually
receives, so nested layers and models are initialized in forward order.

Example:

    model = tf.keras.Sequential([WNConv2D(16, 3), ResidualBlock(16, precision="w1a1")])
    keras_bdgm.initialize(model, images[:256])
"""

import contextlib
import threading

import tensorflow as tf

_STATE = threading.local()

# Output std that data-dependent init gives the "entry" convs of each model (the VAE's input
# and output convs; Flow++'s coupling and context input convs and each gated block's first
# conv) and the gate conv of Flow++'s gated blocks, per scheme:
#   "identity":  1.0 for entry convs, 0.0 for gates (every gated block starts as the identity);
#   "reference": 0.1 for both (the values of the paper's public code).
# Residual blocks' convs are 1.0 and 0.0 (identity at init) in both schemes.
INIT_SCHEMES = {
    "identity": {"entry": 1.0, "gate": 0.0},
    "reference": {"entry": 0.1, "gate": 0.1},
}


def init_scales(scheme):
    """{"entry": float, "gate": float} for an init scheme name ("identity" or "reference")."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(
            f"Unknown init scheme {scheme!r}; expected one of: {', '.join(sorted(INIT_SCHEMES))}."
        )
    return dict(INIT_SCHEMES[scheme])


def in_init_scope() -> bool:
    """True inside `initialize`'s forward pass."""
    return getattr(_STATE, "initialized", None) is not None


@contextlib.contextmanager
def _init_scope():
    if in_init_scope():
        raise RuntimeError("keras_bdgm.initialize is already running; it does not nest.")
    _STATE.initialized = []
    try:
        yield _STATE.initialized
    finally:
        _STATE.initialized = None


class DataDependentInit:
    """Mixin for layers (and bijectors) with a data-dependent initialization.

    Subclasses implement `_data_dependent_init(*args)`, which assigns variables from a
    batch, and call `self._maybe_data_dependent_init(*args)` where the batch is seen.
    Within one `initialize` pass each object initializes once (the first time it is
    called), so shared layers are initialized from their first use.
    """

    def _maybe_data_dependent_init(self, *args, **kwargs) -> bool:
        if not in_init_scope():
            return False
        if any(obj is self for obj in _STATE.initialized):
            return False
        if not tf.executing_eagerly():
            raise RuntimeError(
                f"{type(self).__name__} was asked for data-dependent init inside a "
                "tf.function; keras_bdgm.initialize must run eagerly."
            )
        self._data_dependent_init(*args, **kwargs)
        _STATE.initialized.append(self)
        return True

    def _data_dependent_init(self, *args, **kwargs):
        raise NotImplementedError


def initialize(model, x, **call_kwargs):
    """Runs the data-dependent init of every layer of `model` on the batch `x`.

    Models with their own init pass (e.g. flows, whose forward pass is not `model(x)`)
    define `data_dependent_init(x)`; otherwise `model(x, training=False)` is called.

    Args:
      model: a Keras layer or model (built or not).
      x: an input batch (a tensor, array or nested structure the model accepts).
      **call_kwargs: extra arguments for `model(x, ...)`.

    Returns:
      The list of layers that were initialized, in forward order.

    Raises:
      ValueError: if no layer of the model supports data-dependent init.
    """
    if not tf.executing_eagerly():
        raise RuntimeError("keras_bdgm.initialize must run eagerly, not in a tf.function.")
    with _init_scope() as initialized:
        if hasattr(model, "data_dependent_init"):
            model.data_dependent_init(x, **call_kwargs)
        else:
            call_kwargs.setdefault("training", False)
            model(x, **call_kwargs)
        done = list(initialized)
    if not done:
        raise ValueError(
            f"initialize() found no layer with data-dependent init in {model.name!r}; "
            "it initializes keras_bdgm's WN/BWN layers and flow normalizations."
        )
    return done
