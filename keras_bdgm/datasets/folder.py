"""A folder of same-sized 8-bit PNG/JPEG images as a `tf.data.Dataset` of uint8 images.

Layout: either a flat folder of images (one split, `train`), or a folder with one
sub-folder per split (`root/train/*.png`, `root/test/*.png`, ...). Only the top level of
each folder is read; files are taken in sorted name order. Every image must have the same
height, width and channel count: grey (PIL modes "L", "1") gives 1 channel, RGB and
palette images give 3, RGBA gives 4. Other modes (16-bit, CMYK, grey+alpha) are refused
with the fix.

Split strings follow tfds's slicing: "train", "test", "train[:90%]", "train[-100:]".

#### Examples

```python
from keras_bdgm.datasets import folder

files, shape = folder.scan("/data/pngs")                # decodes every image once, checks sizes
ds = folder.dataset(files, shape)                       # uint8 [H, W, C] per element
files, shape = folder.resolve("/data/pngs", "train[:90%]")
```
"""

import os
import re
from concurrent import futures

import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# PIL mode -> channels of the decoded uint8 image.
MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4}

# path -> ((size, mtime), image shape or the reason it cannot be used): each file is
# decoded once per process, however often its folder is scanned.
_CHECKED = {}
_SHOWN_BAD_FILES = 5

_SPLIT_RE = re.compile(r"^\s*(\w+)\s*(?:\[\s*([^\]:]*?)\s*:\s*([^\]:]*?)\s*\])?\s*$")


def parse_split(split: str):
    """Returns (split name, start, end) from "name" or "name[start:end]" (ints or percents).

    start/end are None, an int, or a string ending in "%".
    """
    match = _SPLIT_RE.match(str(split))
    if not match:
        raise ValueError(
            f"Cannot parse split {split!r}; use a name such as 'train' or 'test', "
            "optionally sliced like 'train[:90%]', 'train[90%:]' or 'train[:1000]'."
        )
    name, start, end = match.groups()
    bounds = []
    for bound in (start, end):
        if bound is None or bound == "":
            bounds.append(None)
        elif re.fullmatch(r"-?\d+%", bound):
            bounds.append(bound)
        elif re.fullmatch(r"-?\d+", bound):
            bounds.append(int(bound))
        else:
            raise ValueError(f"Cannot parse slice bound {bound!r} in split {split!r}.")
    return name, bounds[0], bounds[1]


def _slice(items, start, end):
    n = len(items)

    def index(bound):
        if isinstance(bound, str):  # percent, rounded like tfds
            return int(round(int(bound[:-1]) * n / 100.0))
        return bound

    return items[index(start) : index(end)]


def list_images(path) -> list:
    """Returns the sorted image files (PNG/JPEG, any letter case) at the top of `path`."""
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"Image folder {path!r} does not exist; pass 'folder:/path/to/images' with a "
            "folder of PNG/JPEG files."
        )
    return sorted(
        os.path.join(path, name)
        for name in os.listdir(path)
        if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, name))
    )


def _decode(contents, channels):
    """uint8 [H, W, channels] from PNG or JPEG bytes (JPEG with the accurate integer DCT, as PIL)."""
    return tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=channels, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_png(contents, channels=channels),
    )


def _header_shape(path):
    """(H, W, C) from the header, or the reason the file cannot be used (a str)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    try:
        with Image.open(path) as image:
            width, height = image.size
            mode = image.mode
    except (OSError, SyntaxError) as err:
        return f"not an image ({err})"
    if mode not in MODE_CHANNELS:
        return (
            f"PIL mode {mode!r}: only 8-bit grey ('L', '1'), RGB, palette ('P') and RGBA images "
            "are supported; convert it, e.g. `PIL.Image.open(p).convert('RGB').save(p)`"
        )
    return (height, width, MODE_CHANNELS[mode])


def _check_image(path):
    """(H, W, C) of the image at `path` after decoding all of it as the dataset will, or
    the reason it cannot be used (a str). Cached by file size and modification time."""
    stat = os.stat(path)
    key = (stat.st_size, stat.st_mtime_ns)
    cached = _CHECKED.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    result = _header_shape(path)
    if not isinstance(result, str):
        try:
            decoded = _decode(tf.io.read_file(path), result[-1]).shape
            if tuple(decoded) != result:
                result = f"decodes to {tuple(decoded)}, its header says {result}"
        except (tf.errors.OpError, ValueError) as err:
            message = getattr(err, "message", str(err)).strip().splitlines()[0]
            result = f"cannot be decoded, damaged or truncated ({message})"
    _CHECKED[path] = (key, result)
    return result


def scan(path, files=None):
    """Returns (files, image_shape) for the images in `path`, after checking they share a shape.

    Decodes every image once (as the dataset will; cached per file), so a damaged file is
    found here, by name, instead of inside tf.data.

    Raises:
      FileNotFoundError: `path` is not a folder.
      ValueError: no images, files that cannot be decoded (each one named), unsupported
        modes or mixed shapes.
    """
    if files is None:
        files = list_images(path)
    if not files:
        raise ValueError(
            f"No PNG/JPEG images (extensions {', '.join(IMAGE_EXTENSIONS)}) in folder "
            f"{path!r}. Put the images at its top level (or in train/ and test/ sub-folders)."
        )
    with futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_check_image, files))
    bad = [(file, result) for file, result in zip(files, results) if isinstance(result, str)]
    if bad:
        shown = "; ".join(f"{os.path.basename(file)}: {reason}" for file, reason in bad[:_SHOWN_BAD_FILES])
        more = f"; and {len(bad) - _SHOWN_BAD_FILES} more" if len(bad) > _SHOWN_BAD_FILES else ""
        raise ValueError(
            f"{len(bad)} of the {len(files)} images in {path!r} cannot be used: {shown}{more}. "
            "Remove or replace them."
        )
    shapes = {}
    for file, shape in zip(files, results):
        shapes.setdefault(shape, []).append(file)
    if len(shapes) > 1:
        listing = "; ".join(
            f"{'x'.join(map(str, shape))}: {len(group)} file(s), e.g. {os.path.basename(group[0])}"
            for shape, group in sorted(shapes.items(), key=lambda item: -len(item[1]))
        )
        raise ValueError(
            f"Images in {path!r} must all share one height x width x channels, found "
            f"{listing}. Resize/convert them to one shape first."
        )
    return files, next(iter(shapes))


def split_folder(root, split):
    """Returns (folder, slice start, slice end) that `split` names under `root`.

    `root/<name>/` when that sub-folder exists; otherwise `root` itself for "train".
    """
    name, start, end = parse_split(split)
    sub = os.path.join(root, name)
    if os.path.isdir(sub):
        return sub, start, end
    if not os.path.isdir(root):
        list_images(root)  # raises FileNotFoundError with the fix
    if name == "train":
        return root, start, end
    raise ValueError(
        f"Image folder {root!r} has no {name!r} sub-folder. A flat folder holds one split, "
        f"'train'; make sub-folders {root}/train and {root}/{name}, or slice the flat folder, "
        "e.g. split='train[:90%]' and split='train[90%:]'."
    )


def resolve(root, split):
    """Returns (files, image_shape) of `split` ("train", "test[:50%]", ...) of the folder `root`."""
    folder, start, end = split_folder(root, split)
    files, shape = scan(folder)
    files = _slice(files, start, end)
    if not files:
        raise ValueError(f"Split {split!r} of image folder {root!r} selects no images.")
    return files, shape


def dataset(files, image_shape) -> tf.data.Dataset:
    """Returns a dataset of uint8 images [H, W, C] decoded from `files`, in that order."""
    image_shape = tuple(int(d) for d in image_shape)
    channels = image_shape[-1]

    def decode(path):
        return tf.ensure_shape(_decode(tf.io.read_file(path), channels), image_shape)

    files = np.asarray(files, dtype=object).astype(str)
    return tf.data.Dataset.from_tensor_slices(files).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
