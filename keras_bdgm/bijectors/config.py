"""`CouplingConfig`: the hyperparameters of Flow++'s coupling networks, in one object.

`FlowPlusPlus` builds one `CouplingConfig` from its preset and hands it, unchanged, to
`MainFlow`, which hands it to each stage's `CouplingSteps`, which hands it to every
`MixLogisticCouplingLayer` and, through `block_kwargs`, to their `GatedResidualBlock`s.
The dequantizer gets a `replace`d copy (its own width and depth) and derives its context
network's from that (`context_network_config`). Each of these layers serializes it once,
as a nested dict under the key "config" of its `get_config`.

The layers that take a `config=` also take its fields as keywords, which replace the
config's (so `CouplingSteps(shape, 2, width=8)` is `CouplingSteps(shape, 2,
CouplingConfig(width=8))`), and their `from_config` reads configs saved before the
`CouplingConfig` existed (the fields flat in the layer's config).

#### Examples

    config = CouplingConfig(width=32, num_blocks=2, num_components=4, precision="w1a1")
    steps = CouplingSteps((14, 14, 4), num_steps=2, config=config)
    assert all(net.config is config for net in steps.networks)
    unfused = config.replace(fuse_negation=False)        # the w1a1 blocks without the fast path
    assert CouplingConfig.from_config(config.get_config()) == config
"""

import dataclasses

from keras_bdgm.init import init_scales
from keras_bdgm.precision import parse as parse_precision


@dataclasses.dataclass(frozen=True)
class CouplingConfig:
    """One Flow++ coupling network's hyperparameters (frozen; compare with ==).

    Attributes:
      width: hidden channels of the network (of its residual blocks).
      num_blocks: gated residual blocks, each followed by a layer norm.
      num_components: K, the logistic mixture components of the coupling.
      precision: "w32a32", "w1a32" or "w1a1", of the residual blocks (stored by its name).
      dropout: residual-block dropout rate, in [0, 1); used at w32a32 only.
      attention_heads: 0 for none, else the heads of a gated self-attention (32-bit) after
        every block.
      gate_kernel_size: k of the blocks' gate conv (Flow++: 1 in the coupling networks; the
        dequantizer's context network uses 3, see `context_network_config`).
      fuse_negation: at w1a1, fold the blocks' concat activation [x, -x] into their binary
        convs (the same numbers, half the convolution work); False builds the explicit
        concatenation (`bench/profile_step.py --unfused`).
      init_scheme: data-dependent init scales of the input conv and the blocks
        ("identity" or "reference", see `keras_bdgm.init.INIT_SCHEMES`).

    Raises:
      ValueError: a field out of range, an unknown precision or init scheme.
    """

    width: int = 32
    num_blocks: int = 2
    num_components: int = 4
    precision: str = "w32a32"
    dropout: float = 0.0
    attention_heads: int = 0
    gate_kernel_size: int = 1
    fuse_negation: bool = True
    init_scheme: str = "identity"

    def __post_init__(self):
        def set_field(name, value):
            object.__setattr__(self, name, value)

        for name in ("width", "num_blocks", "num_components", "attention_heads", "gate_kernel_size"):
            set_field(name, int(getattr(self, name)))
        set_field("dropout", float(self.dropout))
        set_field("fuse_negation", bool(self.fuse_negation))
        set_field("precision", parse_precision(self.precision).name)
        init_scales(self.init_scheme)  # raises for an unknown scheme
        if min(self.width, self.num_components, self.gate_kernel_size) <= 0:
            raise ValueError(
                "CouplingConfig needs a positive width, num_components and gate_kernel_size; got "
                f"{self.width}, {self.num_components}, {self.gate_kernel_size}."
            )
        if self.num_blocks < 0 or self.attention_heads < 0:
            raise ValueError(
                "CouplingConfig needs num_blocks >= 0 and attention_heads >= 0; got "
                f"{self.num_blocks}, {self.attention_heads}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"CouplingConfig dropout must be in [0, 1), got {self.dropout!r}.")

    @classmethod
    def field_names(cls):
        """The names of the fields, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes):
        """A copy with `changes` applied (validated like a new config)."""
        return dataclasses.replace(self, **changes) if changes else self

    def block_kwargs(self):
        """The `keras_bdgm.blocks.GatedResidualBlock` arguments this config sets."""
        return dict(precision=self.precision, dropout=self.dropout, fuse_negation=self.fuse_negation,
                    gate_kernel_size=self.gate_kernel_size, init_scheme=self.init_scheme)

    def get_config(self):
        """The fields as a JSON-compatible dict (`from_config` inverts it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        unknown = set(config) - set(cls.field_names())
        if unknown:
            raise ValueError(
                f"CouplingConfig has no field(s) {', '.join(sorted(unknown))}; fields: "
                f"{', '.join(cls.field_names())}."
            )
        return cls(**config)

    @classmethod
    def resolve(cls, config=None, fields=None):
        """`config` (a CouplingConfig, its `get_config()` dict, or None for the defaults)
        with `fields` (a dict of field values, e.g. a layer's keyword arguments) replaced.

        Returns `config` itself when it is a CouplingConfig and `fields` is empty, so one
        object travels from the preset to every network.
        """
        if config is None:
            config = cls()
        elif isinstance(config, dict):
            config = cls.from_config(config)
        elif not isinstance(config, cls):
            raise TypeError(
                f"config must be a CouplingConfig, its get_config() dict or None; got {config!r}."
            )
        return config.replace(**(fields or {}))

    @classmethod
    def pop_fields(cls, kwargs):
        """Removes the config fields from `kwargs` (a layer's **kwargs) and returns them."""
        return {name: kwargs.pop(name) for name in cls.field_names() if name in kwargs}


def context_network_config(config, width, num_blocks):
    """The config of the dequantizer's context network, from its couplings' `config`: its
    own width and depth and a 3x3 gate conv (Flow++), the rest shared."""
    return config.replace(width=width, num_blocks=num_blocks, gate_kernel_size=3)
