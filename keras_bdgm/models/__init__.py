"""keras_bdgm's generative models, each a `tf.keras.Model` trained with `model.fit`.

* `FlowPlusPlus`: Flow++ with variational dequantization and mixture-logistic couplings.
* `ResNetVAE`: hierarchical ResNet VAE with bidirectional inference.

Both take `precision` in {"w32a32", "w1a32", "w1a1"} and a named `preset`.
Imported on first use, so one model's import cost is not paid by the other.
"""

_MODELS = {
    "FlowPlusPlus": "keras_bdgm.models.flowpp",
    "ResNetVAE": "keras_bdgm.models.resnet_vae",
}

__all__ = sorted(_MODELS)


def __getattr__(name):
    if name in _MODELS:
        import importlib  # pylint: disable=import-outside-toplevel

        return getattr(importlib.import_module(_MODELS[name]), name)
    raise AttributeError(f"module 'keras_bdgm.models' has no attribute {name!r}")
