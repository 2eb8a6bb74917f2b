"""Train and sample throughput per model and precision, eager vs tf.function vs XLA; where a
train step's time goes; and the before/after of the optimization of its biggest part.

    python bench/speed.py [--steps 10] [--out bench/speed_output.txt]

"small" presets at 28x28x1, batch 64, random uint8 images (speed does not depend on
content). A train step is the model's compiled Keras train function (as `fit` runs it);
eager is `run_eagerly=True`. Sampling draws 16 and 64 images with `model.sample`, eagerly
(`compiled=False`) and compiled (its tf.function graph, traced in a warm-up call per size).
"""

import argparse
import contextlib
import statistics
import time

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

import profile_step
from keras_bdgm import experiment

BATCH = 64
MODES = {"eager": dict(run_eagerly=True), "tf.function": dict(), "XLA": dict(jit_compile=True)}


def train_rate(model_name, precision, mode, steps):
    tf.keras.backend.clear_session()
    model = experiment.build_model(model_name, (28, 28, 1), precision, "small")
    x = np.random.default_rng(0).integers(0, 256, (BATCH, 28, 28, 1), dtype=np.uint8)
    keras_bdgm.initialize(model, x)
    model.compile(tf.keras.optimizers.Adam(1e-3), **MODES[mode])
    train = model.make_train_function()
    data = iter(tf.data.Dataset.from_tensors(x).repeat())
    warmup = 1 if mode == "eager" else 2
    for _ in range(warmup):
        train(data)
    start = time.perf_counter()
    for _ in range(steps):
        logs = train(data)
    float(logs["bits_per_dim"])
    return steps * BATCH / (time.perf_counter() - start), model


SAMPLE_SIZES = (16, 64)


def sample_rates(model, sizes=SAMPLE_SIZES):
    """Sample img/s for each size, eager then compiled: [(n, "eager" | "compiled", rate)]."""
    rates = []
    for n in sizes:
        for compiled in (False, True):
            model.sample(n, seed=0, compiled=compiled)  # warm up (traces the graph for this n)
            start = time.perf_counter()
            np.asarray(model.sample(n, seed=1, compiled=compiled))
            rates.append((n, "compiled" if compiled else "eager", n / (time.perf_counter() - start)))
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eager_steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="before/after repeats (median)")
    parser.add_argument("--out", default="bench/speed_output.txt")
    args = parser.parse_args()
    out = open(args.out, "w")

    def log(line=""):
        print(line, flush=True)
        out.write(line + "\n")

    log(f"# bench/speed.py --steps={args.steps} --eager_steps={args.eager_steps} --repeats={args.repeats}")
    log("")
    sample_cols = [f"sample img/s {mode} n={n}" for n in SAMPLE_SIZES for mode in ("eager", "compiled")]
    log("| model | precision | train img/s eager | train img/s tf.function | train img/s XLA | "
        + " | ".join(sample_cols) + " |")
    log("|---" * (5 + len(sample_cols)) + "|")
    for model_name in ("flowpp", "resnet_vae"):
        for precision in ("w32a32", "w1a32", "w1a1"):
            rates = {}
            for mode in MODES:
                steps = args.eager_steps if mode == "eager" else args.steps
                try:
                    rates[mode], model = train_rate(model_name, precision, mode, steps)
                except Exception as e:  # noqa: BLE001  (report, keep benchmarking)
                    rates[mode] = f"fails: {type(e).__name__}"
                if mode == "tf.function":
                    sampled = sample_rates(model)
            cells = [f"{r:.0f}" if isinstance(r, float) else r for r in rates.values()]
            cells += [f"{r:.1f}" for *_, r in sampled]
            log(f"| {model_name} | {precision} | {' | '.join(cells)} |")

    log("")
    log("## Profile of one train step (tf.function, w1a1), 3 steps traced")
    for model_name in ("flowpp", "resnet_vae"):
        tf.keras.backend.clear_session()
        _, step = profile_step.train_step_fn(model_name, "w1a1", BATCH)
        log(f"### {model_name}")
        log(profile_step.summarize(profile_step.profile(step, 3), depth=2))

    log("")
    log("## Before/after: Flow++ w1a1 gated blocks with the fused negation (tf.function)")
    before, after = [], []
    for _ in range(args.repeats):
        with profile_step.unfused_negation():
            before.append(train_rate("flowpp", "w1a1", "tf.function", args.steps)[0])
        after.append(train_rate("flowpp", "w1a1", "tf.function", args.steps)[0])
    b, a = statistics.median(before), statistics.median(after)
    log(f"before (concat [x, -x] then conv): {', '.join(f'{r:.1f}' for r in before)} img/s, median {b:.1f}")
    log(f"after  (conv of x with K1 - K2):   {', '.join(f'{r:.1f}' for r in after)} img/s, median {a:.1f}")
    log(f"speed-up: {a / b:.2f}x")
    for label, ctx in (("before", profile_step.unfused_negation()), ("after", contextlib.nullcontext())):
        with ctx:
            tf.keras.backend.clear_session()
            _, step = profile_step.train_step_fn("flowpp", "w1a1", BATCH)
            events = profile_step.profile(step, 3)
        total = sum(d for *_, d in events)
        blocks_time = sum(d for op, _, d in events if "/block_" in op or op.startswith("block_"))
        log(f"{label}: op time per step {total / 3e9:.0f} ms, of which gated blocks {blocks_time / 3e9:.0f} ms "
            f"({blocks_time / total:.0%})")


if __name__ == "__main__":
    main()
