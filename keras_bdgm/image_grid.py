"""Image grids: many uint8 images tiled into one, and written as PNG.

Example:

    grid = image_grid(model.sample(64))        # [8*H + 9, 8*W + 9, C] uint8
    write_png("samples.png", grid)
    sample_grid(model, 64, seed=0, path="samples.png")   # both steps in one
"""

import math

import numpy as np
import tensorflow as tf


def image_grid(images, columns=None, border=1):
    """Tiles uint8 images [N, H, W, C] into one [rows*(H+b)+b, cols*(W+b)+b, C] image."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"image_grid expects uint8 images [N, H, W, C], got {images.dtype} {images.shape}.")
    n, h, w, c = images.shape
    columns = columns or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / columns))
    grid = np.zeros((rows * (h + border) + border, columns * (w + border) + border, c), np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        top, left = border + r * (h + border), border + col * (w + border)
        grid[top:top + h, left:left + w] = image
    return grid


def sample_grid(model, num=64, temperature=1.0, seed=0, path=None):
    """A grid of `num` samples of `model` (its `sample(num, temperature, seed)`), written to
    `path` as PNG when given; returns the grid."""
    grid = image_grid(np.asarray(model.sample(num, temperature=temperature, seed=seed)))
    if path is not None:
        write_png(path, grid)
    return grid


def write_png(path, image):
    """Writes a uint8 image [H, W, C] (C in 1, 3, 4) to a PNG file."""
    tf.io.write_file(str(path), tf.io.encode_png(np.asarray(image, np.uint8)))


def read_png(path):
    """Reads a PNG file into a uint8 array [H, W, C]."""
    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()
