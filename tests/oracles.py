"""Independent numpy oracles for the tests: direct loops, no TensorFlow."""

import numpy as np


def sign(x):
    """sign with sign(0) = +1, as binary networks define it."""
    return np.where(np.asarray(x) >= 0, 1.0, -1.0)


def _same_padding(size, kernel, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d(x, w, stride=1, padding="valid", pad_value=0.0):
    """Cross-correlation of x [N,H,W,Ci] with w [kh,kw,Ci,Co], TF padding rules ("same" pads
    with `pad_value`)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    kh, kw = w.shape[:2]
    if padding == "same":
        (pt, pb), (pl, pr) = _same_padding(x.shape[1], kh, stride), _same_padding(x.shape[2], kw, stride)
        x = np.pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)], constant_values=pad_value)
    oh = (x.shape[1] - kh) // stride + 1
    ow = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def elu(x):
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))
