"""Calling a `tf.function` with TensorFlow's graph optimizer (Grappler) off.

Before a `tf.function`'s graph first runs, Grappler rewrites it (constant folding, the
remapper's fused ops, layout and arithmetic passes). For a large graph on a CPU this costs
more than it saves: Flow++'s train step (about 14,500 ops at the issue configuration of
BENCHMARKS.md) spends 4-7 s in its first call with Grappler, 2.0-2.5 s without, and its
later steps run as fast either way. On a GPU the layout pass matters, so there it stays.

`without_grappler(f)` returns a function that calls `f` with Grappler off for that call
only: TensorFlow takes a function call's session options from the calling thread
(`context().function_call_options`), which the wrapper sets for the call and then restores,
so other functions, other threads and later calls elsewhere are untouched. The graph is the
same program, not rewritten: results agree with Grappler's up to float rounding (its fused
ops add in another order).

Example:

    train = without_grappler(model.make_train_function())  # as GenerativeModel does for Flow++
    logs = train(iterator)
"""

import functools

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.eager import context


def _options_without_grappler(current):
    """`current` call options (threads, soft placement, executor) with Grappler off."""
    config = config_pb2.ConfigProto()
    config.ParseFromString(current.config_proto_serialized)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return context.FunctionCallOptions(executor_type=current.executor_type, config_proto=config)


def grappler_off_helps():
    """True on a host whose TensorFlow sees no GPU or TPU: Grappler's start-up cost is not
    repaid there (BENCHMARKS.md, "Start-up")."""
    return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def without_grappler(function):
    """`function` (a `tf.function` or a Python function calling one), called with Grappler
    off in the calling thread; the thread's own call options come back after each call."""
    cache = {}

    @functools.wraps(function)
    def call(*args, **kwargs):
        ctx = context.context()
        local = ctx._thread_local_data  # noqa: SLF001 (the raw options: None until first read)
        saved = local.function_call_options
        current = ctx.function_call_options  # the thread's options (its defaults when unset)
        key = (current.executor_type, current.config_proto_serialized)
        if key not in cache:
            cache.clear()
            cache[key] = _options_without_grappler(current)
        local.function_call_options = cache[key]
        try:
            return function(*args, **kwargs)
        finally:
            local.function_call_options = saved

    call.grappler_off = True
    return call
