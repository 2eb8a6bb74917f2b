"""Where tfds data lives (`default_data_dir`), and preparing it there atomically (`prepare`).

tensorflow-datasets reads a dataset from its version folder, `<data_dir>/<name>/<version>`
(e.g. `~/tensorflow_datasets/fashion_mnist/3.0.1`). keras_bdgm prepares a dataset into a
temporary sibling folder and renames the finished version folder into place, holding a file
lock (`fcntl.flock` on `<data_dir>/.<name>-<version>.lock`) meanwhile, so that:

- a preparation that is interrupted (killed midway) leaves only its temporary folder,
  `<data_dir>/.<name>-<version>.incomplete-*`, which the next preparation deletes; the
  version folder appears complete or not at all;
- processes preparing the same dataset at once (parallel tests, several workers) take
  turns: the first prepares it, the others wait on the lock, then find it ready and read it;
- a version folder that lacks tfds's completion files (`dataset_info.json` and
  `features.json`, e.g. a copy cut short) is not trusted: it is deleted and the dataset
  prepared again.

A `data_dir` on a remote file system (`gs://...`) is prepared in place by tfds (which also
stages into an `incomplete.*` folder), without the lock; so is any `data_dir` where
`fcntl` does not exist (Windows).

`default_data_dir()` is `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`, read at each call
(tfds itself reads `TFDS_DATA_DIR` once, when it is imported). The tests set it to a folder
of their own session (tests/conftest.py), so they never write into the home directory.

#### Examples

```python
import tensorflow_datasets
from keras_bdgm.datasets import prepared

builder = prepared.prepare(
    lambda data_dir: tensorflow_datasets.builder("mnist", data_dir=data_dir),
    "/tmp/tfds",
    lambda staging: tensorflow_datasets.builder("mnist", data_dir=staging).download_and_prepare(),
)
```
"""

import contextlib
import glob
import os
import shutil
import tempfile

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

DATA_DIR_ENV = "TFDS_DATA_DIR"


def default_data_dir() -> str:
    """The tfds data directory used when none is given: `$TFDS_DATA_DIR`, else
    `~/tensorflow_datasets` (read now, unlike tfds, which reads the variable at import)."""
    return os.environ.get(DATA_DIR_ENV) or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def is_local(path) -> bool:
    """Whether `path` is on the local file system (not `gs://...` or another URL)."""
    return "://" not in os.fspath(path)


def is_complete(version_dir) -> bool:
    """Whether tfds's completion files, `dataset_info.json` and `features.json`, are in
    `version_dir` (tfds writes them last)."""
    return all(os.path.isfile(os.path.join(version_dir, f)) for f in ("dataset_info.json", "features.json"))


@contextlib.contextmanager
def _locked(path):
    """Holds an exclusive `flock` on the file `path` (created if missing) in the block."""
    with open(path, "a+b") as lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _remove(path):
    """Deletes folder `path`: first renamed out of the way (at once), then removed."""
    trash = tempfile.mkdtemp(prefix=os.path.basename(path) + ".discarded-", dir=os.path.dirname(path))
    os.rename(path, os.path.join(trash, "old"))
    shutil.rmtree(trash, ignore_errors=True)


def prepare(make_builder, data_dir, prepare_into):
    """Returns `make_builder(data_dir)`, its data prepared (at most once, atomically).

    Args:
      make_builder: `data_dir -> tfds builder`; it must not write anything.
      data_dir: the tfds data directory (created if missing); None for `default_data_dir()`.
      prepare_into: `staging_data_dir -> None`, prepares the dataset into the tfds data
        directory it is given (a new, empty folder next to the version folder), e.g.
        `make_builder(staging).download_and_prepare()`.

    Raises:
      What `prepare_into` raises (the temporary folder is deleted, nothing is left behind),
      or RuntimeError if it returns without having prepared the dataset.
    """
    data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    builder = make_builder(data_dir)
    if builder.is_prepared() and (not is_local(data_dir) or is_complete(builder.data_dir)):
        return builder
    if not is_local(data_dir) or fcntl is None:
        prepare_into(data_dir)
        return make_builder(data_dir)

    os.makedirs(data_dir, exist_ok=True)
    final = os.fspath(builder.data_dir)
    relative = os.path.relpath(final, data_dir)  # e.g. fashion_mnist/3.0.1
    key = "." + relative.replace(os.sep, "-")
    with _locked(os.path.join(data_dir, key + ".lock")):
        builder = make_builder(data_dir)  # another process may have prepared it meanwhile
        if is_complete(final) and builder.is_prepared():
            return builder
        # Left by interrupted preparations (their lock died with them): not to be trusted.
        for stale in glob.glob(os.path.join(glob.escape(data_dir), key + ".incomplete-*")):
            shutil.rmtree(stale, ignore_errors=True)
        if os.path.lexists(final):
            _remove(final)
        staging = tempfile.mkdtemp(prefix=key + ".incomplete-", dir=data_dir)
        try:
            prepare_into(staging)
            staged = os.path.join(staging, relative)
            if not is_complete(staged):
                raise RuntimeError(f"Preparing {relative} into {staging} left no complete {staged}.")
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(staged, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return make_builder(data_dir)
