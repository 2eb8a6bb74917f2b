"""keras_bdgm's generative models, each a `tf.keras.Model` trained with `model.fit`, and
the contract they share.

The contract, beside the models:

- `base`: `GenerativeModel`, what every model honours (below), its train and test steps.
- `importance`: the importance-weighted bound, computed in chunks of samples.
- `updates`: the update that is clipped, or skipped when the gradient is not finite or too
  large, then clips the binary layers' latent weights.
- `seeds`: the one rule that reads a seed (an int, a pair of ints or None).
- `noise`: `stateless_normal`, the same Gaussian noise with and without XLA.
- `presets`: named architectures and the resolver that lists them on a typo.
- `evaluation`: `evaluate_bits_per_dim`, compiled and batched over a whole dataset.

The models, one module each:

* `FlowPlusPlus`: Flow++ with variational dequantization and mixture-logistic couplings.
* `ResNetVAE`: hierarchical ResNet VAE with bidirectional inference.
* `PixelCNN`: PixelCNN++-style autoregressive model with gated causal residual blocks (no
  latents: its bound is the exact log p(x)).

All take `precision` in {"w32a32", "w1a32", "w1a1"} and a named `preset`, and follow the
contract of `keras_bdgm.models.base.GenerativeModel`: `model(x)` is the single-sample bound
log p(x, z) - log q(z | x) per image in nats, `log_prob` / `bits_per_dim` the
importance-weighted bound (computed in chunks of samples), `sample(n, temperature, seed)`
draws images, `config` holds the resolved hyperparameters, and seeds (an int, a pair of
ints or None) are read one way (`keras_bdgm.models.seeds.stateless_seed`). Whole datasets are
evaluated by `keras_bdgm.models.evaluation.evaluate_bits_per_dim`.
Imported on first use, so one model's import cost is not paid by the others. Keras knows
them all from `import keras_bdgm` on: each is registered under its name ("keras_bdgm>FlowPlusPlus")
by a stand-in that imports the model's module when a saved model is loaded, so
`tf.keras.models.load_model("model.keras")` needs nothing else.
"""

import importlib

import tensorflow as tf

_MODELS = {
    "FlowPlusPlus": "keras_bdgm.models.flowpp",
    "PixelCNN": "keras_bdgm.models.pixelcnn",
    "ResNetVAE": "keras_bdgm.models.resnet_vae",
}

__all__ = sorted(_MODELS)


def __getattr__(name):
    if name in _MODELS:
        return getattr(importlib.import_module(_MODELS[name]), name)
    raise AttributeError(f"module 'keras_bdgm.models' has no attribute {name!r}")


def _register_stand_ins():
    """Registers, for each model not imported yet, a class whose `from_config` imports the
    model's module (which registers the real class in its place) and builds the model."""
    registry = tf.keras.utils.get_custom_objects()
    for name, module in _MODELS.items():
        key = f"keras_bdgm>{name}"
        if key in registry:
            continue

        def from_config(cls, config, custom_objects=None, _name=name, _module=module):
            del cls, custom_objects
            return getattr(importlib.import_module(_module), _name).from_config(config)

        registry[key] = type(name, (), {"from_config": classmethod(from_config), "__module__": module})


_register_stand_ins()
