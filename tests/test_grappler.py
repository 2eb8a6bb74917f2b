"""`keras_bdgm.models.grappler.without_grappler`: the call options it sets for one call and
gives back, and Flow++'s train step with Grappler off against the same step with it on."""

import threading

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.eager import context

import keras_bdgm
from keras_bdgm.models.grappler import without_grappler

import tiny


def _config():
    config = config_pb2.ConfigProto()
    config.ParseFromString(context.context().function_call_options.config_proto_serialized)
    return config


def _grappler_disabled():
    return _config().graph_options.rewrite_options.disable_meta_optimizer


def test_grappler_is_off_during_the_call_only_and_the_thread_options_come_back():
    ctx = context.context()
    seen = {}

    def inner(x):
        seen["off"] = _grappler_disabled()
        seen["threads"] = _config().inter_op_parallelism_threads
        return x + 1

    ctx._thread_local_data.function_call_options = None  # a fresh thread's: defaults on first read
    assert without_grappler(inner)(1) == 2
    assert seen["off"] is True
    assert ctx._thread_local_data.function_call_options is None  # given back as it was: unset
    assert not _grappler_disabled()

    config = _config()
    config.inter_op_parallelism_threads = 3  # a user's own options for this thread
    mine = context.FunctionCallOptions(executor_type="", config_proto=config)
    ctx.function_call_options = mine
    try:
        with pytest.raises(ZeroDivisionError):
            without_grappler(lambda: 1 / 0)()
        assert ctx._thread_local_data.function_call_options is mine  # restored after an error too
        without_grappler(inner)(1)
        assert seen == {"off": True, "threads": 3}  # the thread's settings kept, Grappler off
    finally:
        ctx._thread_local_data.function_call_options = None


def test_other_threads_keep_grappler_during_the_call():
    other = {}
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(10)

    def look():
        started.wait(10)
        other["off"] = _grappler_disabled()
        release.set()

    thread = threading.Thread(target=look)
    thread.start()
    without_grappler(hold)()
    thread.join()
    assert other == {"off": False}


def _steps(grappler, precision="w32a32", steps=3):
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    images = tiny.tiny_images(4)
    model = tiny.tiny_model("flowpp", precision, dropout=0.2)
    keras_bdgm.initialize(model, images)
    model.grappler_on_cpu = grappler  # the instance's choice for this comparison
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    train = model.make_train_function()
    assert getattr(train, "grappler_off", False) is (not grappler)
    data = iter(tf.data.Dataset.from_tensors(images).repeat())
    logs = [{k: float(v) for k, v in train(data).items()} for _ in range(steps)]
    return logs, [w.numpy() for w in model.weights]


@pytest.mark.parametrize("precision", ["w1a1", "w32a32"])
def test_flowpp_step_without_grappler_gives_the_rewritten_steps_numbers(precision):
    (logs, weights), (ref_logs, ref_weights) = _steps(False, precision), _steps(True, precision)
    for step, ref in zip(logs, ref_logs):
        assert step == pytest.approx(ref, rel=1e-5, abs=1e-6)
    for value, ref in zip(weights, ref_weights):
        np.testing.assert_allclose(value, ref, rtol=1e-4, atol=1e-6)


def test_only_flowpps_cpu_tf_function_step_and_sampling_run_without_grappler():
    images = tiny.tiny_images(4)
    for name, jit, expected in (("flowpp", False, True), ("flowpp", True, False), ("resnet_vae", False, False)):
        model = tiny.tiny_model(name, "w1a1", images=images, seed=0)
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), jit_compile=jit)
        assert getattr(model.make_train_function(), "grappler_off", False) is expected, (name, jit)
        assert model.make_train_function() is model.train_function  # wrapped once, kept
        assert getattr(model._sample_fn, "grappler_off", False) is (name == "flowpp"), name  # sampling too
