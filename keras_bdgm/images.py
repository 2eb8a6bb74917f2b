"""Checking and converting batches of 8-bit images, shared by every model.

Models take images as [N, H, W, C] arrays of pixel values 0..255: uint8, or any integer
or float dtype holding whole numbers in that range. `check_images` turns them into
float32 pixel values after checking shape and values, with errors that say how to fix the
input.

Example:

    x = check_images(batch, image_shape=(28, 28, 1))   # float32 in [0, 255]
"""

import numpy as np
import tensorflow as tf

NUM_BINS = 256


def _shape_error(x_shape, image_shape):
    return ValueError(
        f"Expected a batch of images of shape [N, {', '.join(map(str, image_shape))}] "
        f"(uint8 pixels 0..255), got shape {list(x_shape)}. Add a batch axis with "
        "x[None] for one image, or build the model for this image shape."
    )


def check_images(x, image_shape) -> tf.Tensor:
    """Returns `x` as float32 pixel values after checking it is a batch of 8-bit images.

    Args:
      x: [N, H, W, C] uint8 (or integer/float with whole values in 0..255).
      image_shape: the expected (H, W, C).

    Raises:
      ValueError: wrong rank or shape, an empty batch, non-numeric dtype, NaN, values outside 0..255
        or not whole numbers (checked eagerly; inside a tf.function the value checks are
        `tf.debugging` assertions).
    """
    image_shape = tuple(int(d) for d in image_shape)
    if isinstance(x, np.ndarray) or not tf.is_tensor(x):
        x = np.asarray(x)
        if x.dtype.kind not in "uif":
            raise ValueError(
                f"Images must be numeric (uint8 pixels 0..255), got dtype {x.dtype}."
            )
        x = tf.convert_to_tensor(x)
    dtype = x.dtype
    if not (dtype.is_integer or dtype.is_floating):
        raise ValueError(f"Images must be numeric (uint8 pixels 0..255), got dtype {dtype.name}.")
    shape = x.shape
    if shape.rank is not None:
        if shape.rank != 4 or any(
            s is not None and s != e for s, e in zip(shape[1:], image_shape)
        ):
            raise _shape_error(shape, image_shape)
        if shape[0] == 0:
            raise ValueError(
                f"Got an empty batch (shape {list(shape)}): pass at least one image."
            )
    if dtype == tf.uint8:
        return tf.cast(x, tf.float32)
    if tf.executing_eagerly():
        values = x.numpy()
        if dtype.is_floating and np.isnan(values).any():
            raise ValueError("Images contain NaN; pass uint8 pixel values 0..255.")
        if values.size and (values.min() < 0 or values.max() > NUM_BINS - 1):
            raise ValueError(
                f"Pixel values must lie in 0..255, got range [{values.min()}, {values.max()}]."
                " Pass raw uint8 images, not images scaled to [0, 1] or [-1, 1]."
            )
        if dtype.is_floating and not np.array_equal(values, np.round(values)):
            raise ValueError(
                "Pixel values must be whole numbers 0..255 (the models add their own "
                "dequantization noise); pass uint8 images."
            )
        return tf.cast(x, tf.float32)
    xf = tf.cast(x, tf.float32)
    checks = [
        tf.debugging.assert_greater_equal(xf, 0.0, message="pixel values must be >= 0"),
        tf.debugging.assert_less_equal(xf, 255.0, message="pixel values must be <= 255"),
    ]
    if dtype.is_floating:
        checks.append(tf.debugging.assert_equal(xf, tf.round(xf), message="pixels must be whole numbers 0..255 (NaN?)"))
    with tf.control_dependencies(checks):
        return tf.identity(xf)
