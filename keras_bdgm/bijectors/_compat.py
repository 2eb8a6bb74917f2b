"""Loading what was saved before the variable layers were renamed.

* Keras's registry: each renamed layer keeps a deprecated subclass under its old name,
  registered as `keras_bdgm>OldName` (e.g. `normalize.NormalizeParams`), so a layer
  deserialized from an old file is that class and finds its weights under the old name.
* .keras weight files: Keras's saving (tf_keras `saving_lib`) files each layer of a list
  attribute under the snake_case of its class name, so a .keras file written before the
  renames holds e.g. `.../networks/coupling_network_1/...` where the renamed class looks
  for `.../networks/mix_logistic_coupling_layer_1/...`. `load_legacy_list_items` loads
  such items from their old paths; the layer holding the lists (`CouplingSteps`) calls it
  from its `load_own_variables`, which Keras runs right before it walks that layer's
  attributes, and hides the lists it loaded from that one walk (`hide_once`).
  TensorFlow checkpoints (`tf.train.Checkpoint`, the training backups) name list items by
  index, not by class, and are not affected.
"""

# List attribute of CouplingSteps -> the snake_case class name its items were saved under.
LEGACY_LIST_ITEMS = {"norms": "normalize_params", "convs": "inv_conv_params", "networks": "coupling_network"}


class _GroupStore:
    """tf_keras saving_lib's weights-store interface (`get(path)`) over one h5 group."""

    def __init__(self, group):
        self.group = group

    def get(self, path):
        if path in self.group and "vars" in self.group[path]:
            return self.group[path]["vars"]
        return {}


def _item_names(base, count):
    """The names Keras's saving gives `count` list items of one class: base, base_1, ..."""
    return [base if i == 0 else f"{base}_{i}" for i in range(count)]


def load_legacy_list_items(layer, store, legacy=None):
    """Loads the items of `layer`'s list attributes that a .keras file holds under their
    pre-rename class names; returns the names of the attributes it loaded (empty for a
    file in the current layout, or when `store` is not an h5 group of such a file).

    Args:
      layer: the Keras layer holding the lists.
      store: what Keras passed to `layer.load_own_variables` (the h5 group `<layer>/vars`).
      legacy: {list attribute: old snake_case class name}; default `LEGACY_LIST_ITEMS`.
    """
    group = getattr(store, "parent", None)  # h5py: the layer's own group
    if group is None or not hasattr(group, "keys"):
        return frozenset()
    try:
        from tf_keras.src.saving import saving_lib  # pylint: disable=import-outside-toplevel
        from tf_keras.src.utils.generic_utils import to_snake_case  # pylint: disable=import-outside-toplevel
    except ImportError:  # another Keras 2 layout: no legacy loading
        return frozenset()
    loaded = set()
    for attr, old in (legacy or LEGACY_LIST_ITEMS).items():
        items = list(getattr(layer, attr, None) or [])
        if not items or attr not in group:
            continue
        container = group[attr]
        new_names = _item_names(to_snake_case(type(items[0]).__name__), len(items))
        old_names = _item_names(old, len(items))
        if any(n in container for n in new_names) or not all(n in container for n in old_names):
            continue  # the current layout (or not ours): Keras loads it
        for item, name in zip(items, old_names):
            saving_lib._load_state(  # pylint: disable=protected-access
                item, _GroupStore(container), None, inner_path=name, visited_trackables=set())
        loaded.add(attr)
    return frozenset(loaded)


class HideOnceFromKerasWalk:
    """Mixin for a Keras layer: `hide_once(names)` leaves `names` out of the next `dir()`,
    the one tf_keras saving_lib's walk over the layer's attributes makes right after
    `load_own_variables` (so items loaded from legacy paths are not looked up again)."""

    def hide_once(self, names):
        object.__setattr__(self, "_hidden_from_next_walk", frozenset(names))

    def __dir__(self):
        hidden = self.__dict__.pop("_hidden_from_next_walk", frozenset())
        return [n for n in super().__dir__() if n not in hidden]
