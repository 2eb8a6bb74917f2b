"""Where one training step's time goes: the TF profiler's op events, grouped.

    python bench/profile_step.py --model=flowpp --precision=w1a1 [--steps=3] [--mode=compiled]
    python bench/profile_step.py --model=flowpp --precision=w32a32 --overrides='{"dropout": 0.2}'
    python bench/profile_step.py --model=resnet_vae --precision=w1a1 --serial \
        --image_shape=32,32,3 --batch_size=16 --overrides='{"width": 64, "latent_layers": 4, "processing_blocks": 1}'

Traces `--steps` train steps of the "small" preset (compiled as `fit` runs them, through
bench/harness.py's `train_step`; one untimed step first) with `tf.profiler`, reads the XSpace
it writes (TensorFlow's own xplane proto) and prints the share of op time by op type, by the
op's top name scope (the model's parts) and by sub-part, as one table (also written to
<--out>.json). `--unfused` builds Flow++'s w1a1 gated blocks without the fused negation,
through the model's `CouplingConfig` (the preset field `fuse_negation=False`, i.e. the
`UNFUSED` overrides). Under `--mode=XLA` the executor runs fused XLA clusters, so the op
names no longer name the model's parts.

It also times max(`--steps`, 10) steps without the profiler ("wall", ms per step) and sums
the convolutions' op time apart ("kernel class"). With `--serial` the executor runs one op
at a time (inter-op parallelism 1), so op times add up to the step instead of overlapping:
the convolutions' ms per step is what they cost one after another. A step as trained
(ops overlapping on the cores) that takes about that long is bound by its conv kernels;
making the other ops cheaper cannot speed it up much.
"""

import argparse
import collections
import glob
import json
import os
import re
import tempfile
import time

import harness

# Flow++ overrides for gated blocks without the w1a1 fused-negation fast path (the 'before'):
# the preset's fuse_negation goes into the CouplingConfig of every coupling and context network.
UNFUSED = {"fuse_negation": False}
GROUPS = ("op type", "kernel class", "model part", "sub-part")
CONV_OP = re.compile(r"Conv2D")  # Conv2D, its gradients and oneDNN's fused/native variants


def kernel_class(op_type):
    """'convolutions' for the conv kernels (forward, gradients, fused), else 'other ops'."""
    return "convolutions" if CONV_OP.search(op_type) else "other ops"


def train_step_fn(model_name, precision, batch_size, overrides=None, jit_compile=False, image_shape=(28, 28, 1)):
    """(model, one-step function) of the "small" preset on random images (harness.train_step)."""
    x = harness.random_images(batch_size, image_shape)
    model = harness.build(model_name, image_shape, precision, "small", overrides)
    harness.initialize(model, x)
    return model, harness.train_step(model, x, "XLA" if jit_compile else "compiled")


def op_events(logdir):
    """(op name, op type, duration ps) of every TF op the host ran."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

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
    """The op events of `steps` calls of `run_step`, after one untimed call (tracing)."""
    tf = harness.tensorflow()
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


def shares(events, depth=2, top=8):
    """{group: [(key, op time ps)], the `top` largest} for the groups in `GROUPS`, and the total."""
    total = sum(d for _, _, d in events) or 1
    counters = {group: collections.Counter() for group in GROUPS}
    for op, op_type, d in events:
        counters["op type"][op_type] += d
        counters["kernel class"][kernel_class(op_type)] += d
        counters["model part"][model_part(op, op_type, 1)] += d
        counters["sub-part"][model_part(op, op_type, depth)] += d
    return {group: c.most_common(top) for group, c in counters.items()}, total


def wall_ms(run_step, steps):
    """Milliseconds per call of `run_step` (already warm), timed without the profiler."""
    start = time.perf_counter()
    for _ in range(steps):
        logs = run_step()
    float(logs["bits_per_dim"])  # waits for the last step
    return 1000 * (time.perf_counter() - start) / steps


def summary_rows(events, steps, depth=2, top=8, wall=None, **labels):
    """Table rows of `shares`: labels, group, part, share of op time, ms per step (and the
    step's `wall` ms, if given)."""
    groups, total = shares(events, depth, top)
    rows = [{**labels, "group": "total", "part": "all ops", "share": 1.0, "ms/step": total / steps / 1e9}]
    if wall is not None:
        rows.append({**labels, "group": "total", "part": "wall (no profiler)", "share": None, "ms/step": wall})
    for group, items in groups.items():
        rows += [{**labels, "group": group, "part": key, "share": d / total, "ms/step": d / steps / 1e9}
                 for key, d in items]
    return rows


def summarize(events, depth=2, top=8):
    """Shares of op time by op type, by model part (depth 1) and by sub-part (depth `depth`),
    as text."""
    groups, total = shares(events, depth, top)
    lines = [f"total op time {total / 1e9:.1f} ms"]
    for group, items in groups.items():
        lines.append(f"  by {group}:")
        lines += [f"    {d / total:6.1%}  {key}" for key, d in items]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flowpp", choices=["flowpp", "resnet_vae"])
    parser.add_argument("--precision", default="w1a1")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--top", type=int, default=8, help="rows per group")
    parser.add_argument("--mode", default="compiled", help="compiled (tf.function) or XLA")
    parser.add_argument("--unfused", action="store_true",
                        help="w1a1 gated blocks without the fused negation (the 'before' of BENCHMARKS.md)")
    parser.add_argument("--overrides", default="{}", help='preset fields as JSON, e.g. \'{"dropout": 0.2}\'')
    parser.add_argument("--image_shape", default="28,28,1", help="H,W,C of the random images")
    parser.add_argument("--serial", action="store_true",
                        help="one op at a time (inter-op parallelism 1): op times add up to the step")
    parser.add_argument("--out", default="bench/profile_output", help="output prefix (writes <out>.json)")
    args = parser.parse_args()
    if args.unfused and args.model != "flowpp":
        parser.error("--unfused applies to --model=flowpp (the only model with gated blocks)")
    mode = harness.mode_name(args.mode)
    if mode == "eager":
        parser.error("--mode: compiled or XLA (the profile reads the graph executor's op events)")
    overrides = {**json.loads(args.overrides), **(UNFUSED if args.unfused else {})}
    image_shape = tuple(int(n) for n in args.image_shape.split(","))
    if args.serial:
        harness.tensorflow().config.threading.set_inter_op_parallelism_threads(1)
    _, step = train_step_fn(args.model, args.precision, args.batch_size, overrides, jit_compile=mode == "XLA",
                            image_shape=image_shape)
    variant = "unfused negation" if args.unfused else "as built"
    events = profile(step, args.steps)
    rows = summary_rows(events, args.steps, args.depth, args.top, wall=wall_ms(step, max(args.steps, 10)),
                        model=args.model, precision=args.precision, variant=variant)
    executor = "serial executor" if args.serial else "default executor"
    harness.write_results(
        rows, args.out, title=f"{args.model} {args.precision} ({variant}), {mode}, {executor}, batch "
                              f"{args.batch_size} of {image_shape}: op time of {args.steps} traced steps",
        columns=["group", "part", "share", "ms/step"], formats={"share": "{:.1%}", "ms/step": "{:.1f}"},
        meta=vars(args))


if __name__ == "__main__":
    main()
