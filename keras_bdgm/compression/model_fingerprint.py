"""A model's fingerprint: SHA-256 of its architecture and of the weights its outputs use.

    sha256( class name, image shape, precision,
            for each weight (model order, no metric state): shape, kind, bytes )

where a binary (1-bit) weight contributes its signs packed 8 per byte and every other
weight its float32 bytes, exactly as `keras_bdgm.memory.save_packed` stores them. So a
model loaded from `model.keras` and the same model restored with `memory.load_packed`
(whose binary weights become +-1, same outputs) have the same fingerprint, and a
compressed file written with one decodes with the other. The weight shapes pin down the
architecture (width, layers, kernels); the precision adds what they do not (w1a32 and
w1a1 share their weights but not their activations). Metric totals, optimizer state,
training-only settings (kl_min, dropout, ...) and the model's name are not part of it; a
model without `image_shape` and `precision` attributes hashes its `get_config()` without
its name instead.

Example:

    fingerprint(model)    # '3f1c...' (64 hex digits)
"""

import hashlib
import json

from keras_bdgm import memory


def fingerprint(model):
    """Hex SHA-256 of `model`'s class, image shape, precision and effective weights."""
    digest = hashlib.sha256()
    if hasattr(model, "image_shape") and hasattr(model, "precision"):
        architecture = {"image_shape": list(model.image_shape), "precision": str(model.precision)}
    else:
        architecture = dict(model.get_config())
        architecture.pop("name", None)
    digest.update(type(model).__name__.encode())
    digest.update(json.dumps(architecture, sort_keys=True, default=str).encode())
    for weight in memory._unique_weights(model):  # pylint: disable=protected-access
        kind, data = memory._encode(weight)  # pylint: disable=protected-access
        digest.update(json.dumps([weight.shape.as_list(), kind]).encode())
        digest.update(data)
    return digest.hexdigest()
