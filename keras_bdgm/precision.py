"""The three precisions of a binary deep generative model.

A precision names the bit-width of the residual layers' weights (W) and activations (A):

| name     | weights          | activations       |
|----------|------------------|-------------------|
| "w32a32" | float32 (WN)     | ELU               |
| "w1a32"  | sign(v) (BWN)    | ELU               |
| "w1a1"   | sign(v) (BWN)    | sign(x), clipped STE |

Everything outside the residual layers stays float32 in every precision.

Example:

    >>> from keras_bdgm.precision import parse
    >>> parse("W1A1").binary_activations
    True
"""

import dataclasses

PRECISIONS = ("w32a32", "w1a32", "w1a1")


@dataclasses.dataclass(frozen=True)
class Precision:
    """A parsed precision: whether weights and activations are binary."""

    name: str
    binary_weights: bool
    binary_activations: bool


def parse(precision) -> Precision:
    """Returns the `Precision` for a name in `PRECISIONS` (case-insensitive).

    Raises:
      ValueError: if `precision` is not one of `PRECISIONS`.
    """
    if isinstance(precision, Precision):
        return precision
    name = str(precision).strip().lower() if isinstance(precision, str) else None
    if name not in PRECISIONS:
        raise ValueError(
            f"Unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)} "
            "(weights/activations bits: w32a32 = full precision, w1a32 = binary weights, "
            "w1a1 = binary weights and activations)."
        )
    return Precision(
        name=name,
        binary_weights=name.startswith("w1"),
        binary_activations=name.endswith("a1"),
    )
