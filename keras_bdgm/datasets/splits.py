"""Split strings ("train", "test", "train[:90%]", "train[:1000]"): one parser for every source.

A split is a name, optionally sliced like a Python list: `name[start:end]`. The bounds are
both counts ("train[:1000]", "test[-100:]") or both percents of the split's size
("train[90%:]", "train[:33.3%]", each in -100..100). The semantics are tensorflow-datasets'
(tfds), so a slice selects the same examples from a tfds dataset and from an image folder:

- a percent bound becomes `int(round(percent * size / 100))` examples (Python's `round`:
  halves go to the even neighbour), then negative bounds count from the end;
- a count beyond the split's size is an error (not clipped);
- a start past the end selects nothing.

Unlike tfds, "train[:]" is accepted (the whole split), and mixed units ("train[10:50%]",
which tfds reads as two percents) are refused.

#### Examples

```python
from keras_bdgm.datasets import splits

split = splits.parse("train[:90%]")      # Split(name='train', start=None, end=90.0, percent=True)
split.bounds(1000)                       # (0, 900): examples 0..899
split.select(files)                      # the first 90% of a list
str(split.renamed("validation"))         # 'validation[:90%]'
splits.is_training("train[90%:]")        # True
splits.complement("train[90%:]")         # 'train[:90%]'
```
"""

import dataclasses
import re

# Evaluation on the last 10% of the training data, training on the rest.
HELD_OUT = ("train[:90%]", "train[90%:]")

_SPLIT_RE = re.compile(r"^\s*([\w-]+)\s*(?:\[([^\[\]]*)\])?\s*$")
_COUNT_RE = re.compile(r"^-?\d+$")
_PERCENT_RE = re.compile(r"^(-?(?:\d+(?:\.\d*)?|\.\d+))\s*%$")
_FORMS = "use a name such as 'train' or 'test', optionally sliced like 'train[:90%]', 'train[90%:]' or 'train[:1000]'"


def _number(value):
    """`value` as split text: 90.0 -> "90", 33.3 -> "33.3" (no exponent, tfds cannot read it)."""
    if value == int(value):
        return str(int(value))
    text = repr(float(value))
    return text if "e" not in text else f"{value:.12f}".rstrip("0")


@dataclasses.dataclass(frozen=True)
class Split:
    """A parsed split: `name`, slice bounds `start`/`end` (None: open), `percent` units.

    `str(split)` is the canonical spelling, which tfds reads.
    """

    name: str
    start: float | int | None = None
    end: float | int | None = None
    percent: bool = False

    def __str__(self):
        if self.start is None and self.end is None:
            return self.name

        def text(bound):
            if bound is None:
                return ""
            return _number(bound) + "%" if self.percent else str(bound)

        return f"{self.name}[{text(self.start)}:{text(self.end)}]"

    @property
    def sliced(self) -> bool:
        """Whether the split selects part of `name` (a bound is set)."""
        return self.start is not None or self.end is not None

    def renamed(self, name: str) -> "Split":
        """The same slice of the split called `name` ("test[:10%]" -> "validation[:10%]")."""
        return dataclasses.replace(self, name=name)

    def bounds(self, size: int, of: str = "") -> tuple:
        """Returns (start, end) indices, 0 <= start <= end <= size, of the examples selected
        out of `size` (tfds's rounding). `of` names the data in the error, e.g. "folder '/d'".

        Raises:
          ValueError: a count bound beyond `size`.
        """
        size = int(size)

        def absolute(bound, default):
            if bound is None:
                return default
            return int(round(bound * size / 100.0)) if self.percent else int(bound)

        start, end = absolute(self.start, 0), absolute(self.end, size)
        if abs(start) > size or abs(end) > size:
            where = f" of {of}" if of else ""
            raise ValueError(
                f"Split {str(self)!r} reaches example {max(abs(start), abs(end))}, but split "
                f"{self.name!r}{where} holds only {size}; use smaller bounds or percents, "
                f"e.g. '{self.name}[:90%]'."
            )
        start = start + size if start < 0 else start
        end = end + size if end < 0 else end
        return start, max(start, end)

    def count(self, size: int, of: str = "") -> int:
        """How many of `size` examples the split selects."""
        start, end = self.bounds(size, of)
        return end - start

    def select(self, items, of: str = ""):
        """The selected part of the sequence `items` (all of them for an unsliced split)."""
        start, end = self.bounds(len(items), of)
        return items[start:end]


def _bound(text, split):
    """(value, is_percent) of one slice bound; (None, None) when empty."""
    text = text.strip()
    if not text:
        return None, None
    if _COUNT_RE.match(text):
        return int(text), False
    match = _PERCENT_RE.match(text)
    if match:
        value = float(match.group(1))
        if abs(value) > 100:
            raise ValueError(f"Percent bound {text!r} in split {split!r} is outside -100%..100%.")
        return value, True
    raise ValueError(
        f"Cannot parse slice bound {text!r} in split {split!r}: a bound is a whole number "
        "('train[:1000]', 'test[-100:]') or a percent ('train[:90%]', 'train[:33.3%]')."
    )


def parse(split) -> Split:
    """Returns the `Split` that a split string ("train", "train[:90%]", ...) names.

    A `Split` is returned as it is.

    Raises:
      ValueError: not a split string, a bad bound, mixed units, an index or a step.
    """
    if isinstance(split, Split):
        return split
    if not isinstance(split, str):
        raise ValueError(f"A split is a string, got {split!r}; {_FORMS}.")
    match = _SPLIT_RE.match(split)
    if not match:
        raise ValueError(f"Cannot parse split {split!r}; {_FORMS}.")
    name, selector = match.groups()
    if selector is None:
        return Split(name)
    parts = selector.split(":")
    if len(parts) != 2:
        raise ValueError(
            f"Cannot parse split {split!r}: a split takes one slice, start:end "
            f"(no index, no step); {_FORMS}."
        )
    (start, start_pct), (end, end_pct) = (_bound(part, split) for part in parts)
    if start_pct is not None and end_pct is not None and start_pct != end_pct:
        raise ValueError(
            f"Split {split!r} mixes a count and a percent; make both bounds counts "
            f"('{name}[100:900]') or both percents ('{name}[10%:90%]')."
        )
    return Split(name, start, end, bool(start_pct or end_pct))


def is_training(split) -> bool:
    """Returns whether `split` ("train", "train[:90%]", ...) is part of the training split."""
    return parse(split).name == "train"


def complement(split):
    """The rest of a one-sided slice ("train[90%:]" -> "train[:90%]"); None for other splits."""
    split = parse(split)
    if (split.start is None) == (split.end is None):
        return None
    if split.start is None:
        return str(Split(split.name, split.end, None, split.percent))
    return str(Split(split.name, None, split.start, split.percent))
