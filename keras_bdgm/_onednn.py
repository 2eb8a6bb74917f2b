"""TensorFlow's oneDNN CPU kernels, on unless the user chose (`TF_ENABLE_ONEDNN_OPTS`).

TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX512_VNNI, AVX512_BF16
or AMX; elsewhere (e.g. an AVX2 machine) it runs Eigen's. On a 2-core AVX2 machine oneDNN
makes the train steps 1.4x faster, mostly the convolutions' gradients (BENCHMARKS.md,
"oneDNN"). TensorFlow reads the variable once, while it loads, so `import keras_bdgm` sets
it before importing TensorFlow; where TensorFlow was imported first, or the variable is
set (`TF_ENABLE_ONEDNN_OPTS=0` keeps Eigen's kernels), nothing changes.

The two kernel sets sum in other orders, so float results differ in rounding; a binary
conv of sign inputs (w1a1) is exact either way. The codecs need the arithmetic that encoded
a file to decode it: decode with the same setting.
"""

import os
import sys

ENV = "TF_ENABLE_ONEDNN_OPTS"


def prefer_onednn():
    """Sets TF_ENABLE_ONEDNN_OPTS=1 if unset and TensorFlow is not loaded yet; returns
    whether it set it."""
    if ENV in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ[ENV] = "1"
    return True


def enabled():
    """Whether the loaded TensorFlow runs its oneDNN kernels."""
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=import-outside-toplevel

    return bool(_pywrap_util_port.IsMklEnabled())
