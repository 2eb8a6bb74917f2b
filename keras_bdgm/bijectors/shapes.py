"""Shapes as Python lists where TensorFlow knows them statically, tensors where it does not.

A traced graph then holds no `Shape` / `StridedSlice` / `ConcatV2` ops (and none of their
gradients' bookkeeping) for shapes known while tracing, which is most of them: tracing
time and the first call's graph set-up grow with the number of ops.

#### Examples

    shape(tf.zeros([2, 3]))                     # [2, 3]
    flatten_batch(x)                            # x: [A, B, H, W, C] -> [A * B, H, W, C]
    shape_then(x, 5)                            # [A, B, H, W, C, 5]
"""

import tensorflow as tf


def shape(t):
    """t's shape: a list of ints where fully known, else `tf.shape(t)`."""
    return t.shape.as_list() if t.shape.is_fully_defined() else tf.shape(t)


def batch_shape(t, event_ndims):
    """The leading dims of t before its last `event_ndims` (a list where known)."""
    rank = t.shape.rank
    if rank is not None and t.shape[: rank - event_ndims].is_fully_defined():
        return t.shape[: rank - event_ndims].as_list()
    return tf.shape(t)[: tf.rank(t) - event_ndims]


def flatten_batch(t, event_ndims=3):
    """t reshaped to [-1] + its last `event_ndims` dims (one batch axis)."""
    event = t.shape[-event_ndims:]
    if event.is_fully_defined():
        return tf.reshape(t, [-1, *event.as_list()])
    return tf.reshape(t, tf.concat([[-1], tf.shape(t)[-event_ndims:]], axis=0))


def shape_then(t, *dims):
    """t's shape followed by `dims` (ints): a list where t's shape is known."""
    known = shape(t)
    if isinstance(known, list):
        return known + list(dims)
    return tf.concat([known, list(dims)], axis=0)
