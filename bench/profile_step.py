"""Where one training step's time goes: the TF profiler's op events, grouped.

    python bench/profile_step.py --model=flowpp --precision=w1a1 [--steps=3]

Traces `--steps` compiled train steps of the "small" preset with `tf.profiler`, reads the
XSpace it writes (TensorFlow's own xplane proto) and prints the share of op time by op type
and by the op's top name scopes (the model's parts).
"""

import argparse
import collections
import contextlib
import glob
import os
import re
import tempfile

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from keras_bdgm import blocks, experiment


@contextlib.contextmanager
def unfused_negation():
    """Builds gated blocks without the w1a1 fused-negation fast path (the 'before')."""
    init = blocks.GatedResidualBlock.__init__

    def patched(self, *args, **kwargs):
        kwargs.setdefault("fuse_negation", False)
        init(self, *args, **kwargs)

    blocks.GatedResidualBlock.__init__ = patched
    try:
        yield
    finally:
        blocks.GatedResidualBlock.__init__ = init


def train_step_fn(model_name, precision, batch_size, overrides=None, jit_compile=False):
    model = experiment.build_model(model_name, (28, 28, 1), precision, "small", **(overrides or {}))
    x = np.random.default_rng(0).integers(0, 256, (batch_size, 28, 28, 1), dtype=np.uint8)
    keras_bdgm.initialize(model, x)
    model.compile(tf.keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    train = model.make_train_function()
    data = iter(tf.data.Dataset.from_tensors(x).repeat())
    return model, lambda: train(data)


def op_events(logdir):
    """(op name, op type, duration ps) of every TF op the host ran."""
    path = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))[0]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {i: m.name for i, m in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's op threads
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" in name and "::" not in name:  # "scope/op_name:OpType", not executor spans
                    op, op_type = name.rsplit(":", 1)
                    yield op, op_type, event.duration_ps


def profile(run_step, steps):
    run_step()  # trace and warm up outside the profile
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            run_step()
        tf.profiler.experimental.stop()
        return list(op_events(logdir))


def model_part(op, op_type, depth=2):
    """The model part an op belongs to: its first name scopes, forward and gradient together,
    with layer numbers dropped (coupling_3/block_1 -> coupling/block)."""
    parts = [re.sub(r"(_\d+)+$", "", p) for p in op.split("/") if p and p != "gradient_tape"]
    return "/".join(parts[:depth]) if len(parts) > 1 else f"(unscoped {op_type})"


def summarize(events, depth=2, top=8):
    """Shares of op time by op type, by model part (depth 1) and by sub-part (depth `depth`)."""
    total = sum(d for _, _, d in events) or 1
    by_type, by_part, by_sub = collections.Counter(), collections.Counter(), collections.Counter()
    for op, op_type, d in events:
        by_type[op_type] += d
        by_part[model_part(op, op_type, 1)] += d
        by_sub[model_part(op, op_type, depth)] += d
    lines = [f"total op time {total / 1e9:.1f} ms"]
    for title, counter in (("op type", by_type), ("model part (forward + gradient)", by_part),
                           ("sub-part", by_sub)):
        lines.append(f"  by {title}:")
        for key, d in counter.most_common(top):
            lines.append(f"    {d / total:6.1%}  {key}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="flowpp", choices=list(experiment.MODELS))
    parser.add_argument("--precision", default="w1a1")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--unfused", action="store_true",
                        help="w1a1 gated blocks without the fused negation (the 'before' of BENCHMARKS.md)")
    args = parser.parse_args()
    with unfused_negation() if args.unfused else contextlib.nullcontext():
        _, step = train_step_fn(args.model, args.precision, args.batch_size)
    label = " (unfused negation)" if args.unfused else ""
    print(f"{args.model} {args.precision}{label} batch {args.batch_size}, {args.steps} steps:")
    print(summarize(profile(step, args.steps), depth=args.depth))


if __name__ == "__main__":
    main()
