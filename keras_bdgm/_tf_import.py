"""Imports TensorFlow so that its start-up lines obey TF_CPP_MIN_LOG_LEVEL.

TensorFlow's C++ libraries print a few lines while they load, before they read
TF_CPP_MIN_LOG_LEVEL (oneDNN, CPU instructions, "Could not find cuda drivers"), and the
CUDA probe of the first device listing logs "failed call to cuInit" as an error even on
a machine that has no NVIDIA driver, where that is the expected answer. With
TF_CPP_MIN_LOG_LEVEL >= 1, `import_tensorflow()` imports TensorFlow and lists its devices
with stderr (fd 2) captured, then writes back every captured line except

* TensorFlow log lines below the level TF_CPP_MIN_LOG_LEVEL asks for (and absl's
  "All log messages before absl::InitializeLog()" preamble), and
* the cuInit failure, when the machine has no NVIDIA driver (no /proc/driver/nvidia,
  /dev/nvidiactl or /dev/dxg).

With TF_CPP_MIN_LOG_LEVEL unset or 0 it is a plain `import tensorflow`.
"""

import os
import re
import sys
import tempfile

_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_LOG_LINE = re.compile(r"^([IWEF])\d{4} ")
_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CUDA_PROBE = "failed call to cuInit"


def _min_level():
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def has_nvidia_driver():
    return any(os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg"))


def filter_lines(text, level, drop_cuda_probe):
    """`text` without TensorFlow log lines below `level` (and their continuation lines)."""
    kept, keep_continuation = [], True
    for line in text.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if match:
            keep = _SEVERITY[match.group(1)] >= level and not (drop_cuda_probe and _CUDA_PROBE in line)
            keep_continuation = keep
        elif line.startswith(_PREAMBLE):
            keep, keep_continuation = level == 0, True
        else:
            keep = keep_continuation
        if keep:
            kept.append(line)
    return "".join(kept)


def import_tensorflow():
    """Imports TensorFlow (and probes its devices) with its start-up noise filtered."""
    level = _min_level()
    if "tensorflow" in sys.modules or level < 1:
        import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel

            tf.config.list_physical_devices()  # the CUDA probe, here rather than at the first op
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            sys.stderr.write(filter_lines(text, level, not has_nvidia_driver()))
            sys.stderr.flush()
