"""Named architecture presets with overrides, one mechanism for every model.

A model keeps its presets as a dict of name -> dict of hyperparameters; a preset may
build on another with `"base": "other_name"`. `resolve` merges the chain, applies the
user's overrides and checks every name; `preset_config` is such a model's `get_config`.

Example:

    PRESETS = {"paper": {"width": 256, "depth": 12}, "small": {"base": "paper", "width": 32}}
    config = resolve(PRESETS, "small", {"depth": 4}, model="ResNetVAE")
    # {"width": 32, "depth": 4}
"""


def resolve(presets, preset, overrides=None, model="model"):
    """Returns the hyperparameters of `preset` with `overrides` applied.

    Raises:
      ValueError: unknown preset (the message lists the known ones), or an override
        that is not a hyperparameter of the preset (the message lists the valid ones).
    """
    if preset not in presets:
        raise ValueError(
            f"Unknown {model} preset {preset!r}; known presets: {', '.join(sorted(presets))}."
        )
    chain, name = [], preset
    while name is not None:
        if name in chain:
            raise ValueError(f"{model} preset {preset!r} has a cycle through {name!r}.")
        chain.append(name)
        name = presets[name].get("base")
    config = {}
    for name in reversed(chain):
        config.update({k: v for k, v in presets[name].items() if k != "base"})
    for key, value in (overrides or {}).items():
        if key not in config:
            raise ValueError(
                f"{model} has no hyperparameter {key!r}; valid overrides: "
                f"{', '.join(sorted(config))}."
            )
        config[key] = value
    return config


def preset_config(model, **arguments):
    """A preset-built model's `get_config`: its constructor arguments (image_shape,
    precision, preset, name, the given `arguments` and its overrides; tuples as lists, as
    JSON keeps them), so that `cls(**config)` builds the same model."""
    return {
        "image_shape": list(model.image_shape), "precision": model.precision, "preset": model.preset,
        "name": model.name, **arguments,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in model.overrides.items()},
    }
