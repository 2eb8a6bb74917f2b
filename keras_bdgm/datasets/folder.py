"""A folder of same-sized 8-bit PNG/JPEG images as a `tf.data.Dataset` of uint8 images.

Layout: either a flat folder of images (one split, `train`), or a folder with one
sub-folder per split (`root/train/*.png`, `root/test/*.png`, ...). Only the top level of
each folder is read; files are taken in sorted name order. Every image must have the same
height, width and channel count: grey (PIL modes "L", "1") gives 1 channel, RGB and
palette images give 3, RGBA gives 4. Other modes (16-bit, CMYK, grey+alpha) are refused
with the fix.

Split strings are those of `keras_bdgm.datasets.splits` (tfds's slicing): "train",
"test", "train[:90%]", "train[-100:]". `FolderSource` is the folder as a dataset `Source`
(what `keras_bdgm.datasets.resolve("folder:/data/pngs")` returns): it scans each sub-folder
once and keeps the file list and image shape.

#### Examples

```python
from keras_bdgm.datasets import folder

files, shape = folder.scan("/data/pngs")                # decodes every image once, checks sizes
ds = folder.dataset(files, shape)                       # uint8 [H, W, C] per element
files, shape = folder.resolve("/data/pngs", "train[:90%]")

source = folder.FolderSource("/data/pngs")              # scans on first use, once
source.image_shape("train"), source.num_examples("train[90%:]")
ds = source.load("train[:90%]", batch_size=64)          # shuffled uint8 batches
```
"""

import os
from concurrent import futures

import numpy as np
import tensorflow as tf

from keras_bdgm.datasets import splits
from keras_bdgm.datasets.source import Source

PREFIX = "folder:"  # a dataset name "folder:/path/to/images" names a folder

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# PIL mode -> channels of the decoded uint8 image.
MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4}

# path -> ((size, mtime), image shape or the reason it cannot be used): each file is
# decoded once per process, however often its folder is scanned.
_CHECKED = {}
_SHOWN_BAD_FILES = 5

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
    """Returns (folder, parsed split) for `split` under `root`: `root/<name>/` when that
    sub-folder exists, otherwise `root` itself for "train".

    Raises:
      FileNotFoundError: `root` is not a folder.
      ValueError: a malformed split, or a split other than "train" with no sub-folder.
    """
    parsed = splits.parse(split)
    sub = os.path.join(root, parsed.name)
    if os.path.isdir(sub):
        return sub, parsed
    if not os.path.isdir(root):
        list_images(root)  # raises FileNotFoundError with the fix
    if parsed.name == "train":
        return root, parsed
    raise ValueError(
        f"Image folder {root!r} has no {parsed.name!r} sub-folder. A flat folder holds one split, "
        f"'train'; make sub-folders {root}/train and {root}/{parsed.name}, or slice the flat folder, "
        "e.g. split='train[:90%]' and split='train[90%:]'."
    )


def _select(root, split, parsed, files):
    files = parsed.select(files, of=f"image folder {root!r}")
    if not files:
        raise ValueError(f"Split {split!r} of image folder {root!r} selects no images.")
    return files


def resolve(root, split):
    """Returns (files, image_shape) of `split` ("train", "test[:50%]", ...) of the folder `root`."""
    folder, parsed = split_folder(root, split)
    files, shape = scan(folder)
    return _select(root, split, parsed, files), shape


class FolderSource(Source):
    """The image folder `root` as a dataset `Source`, each sub-folder scanned once.

    The scan (file list, image shape, every image checked) is kept for the life of the
    object: create a new one to see files added or changed since.

    Args:
      root: the folder (`~` is expanded).
      name: the dataset name, for messages (default "folder:<root>").

    Raises:
      ValueError: `root` is empty.
    """

    def __init__(self, root, name=None):
        root = os.fspath(root)
        if not root:
            raise ValueError(f"Dataset {PREFIX!r} names no folder; use '{PREFIX}/path/to/images'.")
        self.path = root
        self.root = os.path.expanduser(root)
        self.name = name if name is not None else PREFIX + root
        self._scans = {}  # folder -> (files, image shape)

    def _files(self, split):
        """(files, image shape) of `split`, the folder scanned the first time only."""
        folder, parsed = split_folder(self.root, split)
        if folder not in self._scans:
            self._scans[folder] = scan(folder)
        files, shape = self._scans[folder]
        return _select(self.root, split, parsed, files), shape

    def files(self, split) -> list:
        """The image files `split` selects, in sorted name order."""
        return self._files(split)[0]

    def image_shape(self, split="train"):
        return self._files(split)[1]

    def num_examples(self, split):
        return len(self._files(split)[0])

    def has_split(self, name):
        return name == "train" or os.path.isdir(os.path.join(self.root, name))

    def default_eval_split(self):
        """"test" with a test/ sub-folder; else the last 10% of train, and a note saying so."""
        if self.has_split("test"):
            return "test", None
        note = (
            f"{self.path} has no test/ sub-folder: evaluated on its last 10% "
            f"({splits.HELD_OUT[1]}), trained on the rest"
        )
        return splits.HELD_OUT[1], note

    def read(self, split, *, shuffle=False, seed=None, limit=None):
        del shuffle, seed  # files are read in order; `load` shuffles the examples
        files, shape = self._files(split)
        return dataset(files if limit is None else files[: int(limit)], shape)


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
