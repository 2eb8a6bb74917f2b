"""`shared_in_graphs`: one traced function for every call of a pure tensor function made
while a graph is built.

A Flow++ graph calls the same mixture-logistic math once per coupling, mostly on a few
shapes. Traced into the graph at each call, its operations (and, under a gradient tape,
their gradients) are built again per coupling; as a `tf.function` (no variables, autograph
off, `reduce_retracing`) it is traced for the first shape and once more for any shape, its
gradient built once per trace, and each coupling adds one call op. TensorFlow inlines the
calls when it runs the graph: the same operations run, with the same numbers. Executing
eagerly, the function runs as it is.

#### Examples

    @shared_in_graphs
    def log_cdf(x, logits, means, log_scales): ...

    tf.function(lambda x: log_cdf(x, *params) + log_cdf(2 * x, *params))  # log_cdf traced once
"""

import functools

import tensorflow as tf


def shared_in_graphs(fn):
    """`fn` as is when executing eagerly, else through one shared `tf.function` of it."""
    traced = tf.function(fn, autograph=False, reduce_retracing=True)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if tf.executing_eagerly():
            return fn(*args, **kwargs)
        return traced(*args, **kwargs)

    call.traced = traced
    return call
