"""A persistent cache of XLA-compiled programs, so a process compiles a train step once per machine.

XLA compiles a `jit_compile=True` function (Flow++'s default train step) when it is first
called: tens of seconds on a 2-core machine, paid again by every new process (a resumed
run, each trial of a width search). TensorFlow can keep the compiled programs on disk
(`TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR`) and load them in a later process,
but it fails the call when an entry there is truncated or belongs to another program.
This module gives TensorFlow a folder that holds only entries keras_bdgm saw it write:

* `configure()` (run by `import keras_bdgm`, before TensorFlow loads, since TensorFlow reads
  its XLA flags once while loading) picks the folder, deletes every entry without a valid
  signature there (a `<entry>.sha256` file holding the entry's SHA-256) and passes the
  folder to TensorFlow;
* at exit (or on `sign()`) the entries this process's TensorFlow wrote are signed.

So a corrupt, foreign or half-written entry costs one compilation, never a failed step.
The folder is per TensorFlow version and CPU (compiled programs use the host's
instructions): `<base>/tf-<version>-<cpu hash>/`, with `<base>` = `$KERAS_BDGM_XLA_CACHE`,
else `$XDG_CACHE_HOME/keras_bdgm/xla` (`~/.cache/keras_bdgm/xla`).
`KERAS_BDGM_XLA_CACHE=off` turns the cache off; so does a folder that cannot be written
(e.g. a read-only home). A `TF_XLA_FLAGS` that names its own persistent cache folder is
left alone (and unmanaged). Only XLA programs are cached: a tf.function step (the default
of the ResNet VAE and the PixelCNN) is traced and optimized anew by every process.

Example:

    KERAS_BDGM_XLA_CACHE=/tmp/xla python examples/train.py --model=flowpp ...
    python -c "import keras_bdgm; print(keras_bdgm.xla_cache.directory())"
"""

import atexit
import hashlib
import os
import platform
import sys
import time

ENV = "KERAS_BDGM_XLA_CACHE"
OFF = ("off", "0", "false", "no", "")
FLAG = "--tf_xla_persistent_cache_directory"
ENTRY_SUFFIX = ".pb"
SIGNATURE_SUFFIX = ".sha256"

_state = {"directory": None, "started": None, "note": "not configured"}


def directory():
    """The cache folder TensorFlow uses in this process, or None (`note()` says why)."""
    return _state["directory"]


def note():
    """Why the cache is on or off in this process (one line)."""
    return _state["note"]


def _tensorflow_version():
    from importlib import metadata  # pylint: disable=import-outside-toplevel

    for name in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def _cpu_fingerprint():
    """A short hash of the CPU's model and instruction-set flags (Linux), else the machine."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [l for l in f if l.startswith(("model name", "flags"))]
        text += "".join(sorted(set(lines)))
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_base():
    """`$KERAS_BDGM_XLA_CACHE`, else `$XDG_CACHE_HOME/keras_bdgm/xla` (~/.cache/keras_bdgm/xla)."""
    if os.environ.get(ENV) is not None:
        return os.path.expanduser(os.environ[ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "keras_bdgm", "xla")


def versioned(base):
    """The folder under `base` for this TensorFlow version and CPU."""
    return os.path.join(base, f"tf-{_tensorflow_version()}-{_cpu_fingerprint()}")


def _digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _signature(path):
    try:
        with open(path + SIGNATURE_SUFFIX, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _entries(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(ENTRY_SUFFIX))


def prune(folder):
    """Deletes every entry of `folder` without a valid signature, and signatures without an
    entry. Returns the names of the deleted entries."""
    removed = []
    for name in _entries(folder):
        path = os.path.join(folder, name)
        try:
            valid = _signature(path) == _digest(path)
        except OSError:
            valid = False
        if not valid:
            _remove(path)
            _remove(path + SIGNATURE_SUFFIX)
            removed.append(name)
    for name in os.listdir(folder):
        if name.endswith(SIGNATURE_SUFFIX) and not os.path.exists(os.path.join(folder, name[:-len(SIGNATURE_SUFFIX)])):
            _remove(os.path.join(folder, name))
    return removed


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def sign(folder=None, since=None):
    """Signs the unsigned entries of `folder` (default: this process's cache) written at or
    after `since` (default: when this process configured the cache). Returns their names."""
    folder = folder or directory()
    if folder is None or not os.path.isdir(folder):
        return []
    since = _state["started"] if since is None else since
    signed = []
    for name in _entries(folder):
        path = os.path.join(folder, name)
        try:
            if _signature(path) is not None or (since is not None and os.path.getmtime(path) < since):
                continue
            tmp = f"{path}{SIGNATURE_SUFFIX}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="ascii") as f:
                f.write(_digest(path) + "\n")
            os.replace(tmp, path + SIGNATURE_SUFFIX)
            signed.append(name)
        except OSError:
            continue
    return signed


def configure(base=None):
    """Sets up the cache for this process; call before TensorFlow is imported (keras_bdgm's
    `__init__` does). Returns the folder, or None when the cache is off (`note()` says why)."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if FLAG in flags:
        _state.update(directory=None, note="TF_XLA_FLAGS names its own persistent cache (not managed)")
        return None
    if "tensorflow" in sys.modules:
        _state.update(directory=None, note="TensorFlow was imported before keras_bdgm (its XLA flags are read)")
        return None
    raw = os.environ.get(ENV) if base is None else base
    if raw is not None and raw.strip().lower() in OFF:
        _state.update(directory=None, note=f"off ({ENV}={raw})")
        return None
    folder = versioned(default_base() if base is None else os.path.expanduser(base))
    try:
        os.makedirs(folder, exist_ok=True)
        removed = prune(folder)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"{folder} is not writable")
    except OSError as err:
        _state.update(directory=None, note=f"off: cannot use {folder} ({err.__class__.__name__})")
        return None
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={folder}".strip()
    _state.update(directory=folder, started=time.time() - 1.0,
                  note=f"on: {folder}" + (f" ({len(removed)} unsigned entries removed)" if removed else ""))
    atexit.register(sign)
    return folder
