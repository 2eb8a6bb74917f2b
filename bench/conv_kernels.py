"""How fast TensorFlow's convolution kernels run at the models' shapes, in GFLOP/s.

    python bench/conv_kernels.py                     # the ResNet VAE's convs (issue, small)
    python bench/conv_kernels.py --filter_alternatives --bfloat16 --out=bench/conv_kernels

For each shape (batch, size, channels in, out, kernel; stride 1, "same" padding) it times
the three kernels a train step runs per conv: the forward conv, the gradient for its
input (`Conv2DBackpropInput`) and for its kernel (`Conv2DBackpropFilter`), each as its own
`tf.function` on random float32 data (median of `--repeats` rounds of `--calls` calls,
after warm-up), and prints milliseconds and GFLOP/s (2 * N * H * W * C_in * C_out * k * k
per kernel). The kernels are whatever this TensorFlow runs: oneDNN's where it is on
(`keras_bdgm` turns it on; `TF_ENABLE_ONEDNN_OPTS=0` gives Eigen's). Set against the
machine's peak, the figures say how much a faster conv kernel could still gain.

`--bfloat16` also times the three kernels in bfloat16 (faster arithmetic, other numbers).
`--filter_alternatives` also times the kernel gradient computed as matrix products, with
the error against the kernel's result: as k * k matmuls of shifted input windows by the
output gradient, and as one matmul of the input's patches (`tf.image.extract_patches`).
"""

import argparse
import os
import statistics
import time

import harness

# (label, batch, size, channels in, channels out, kernel): the ResNet VAE's large convs at
# bench/speed.py's "issue" configuration (32x32x3 images, width 64: 16x16 latents) and at
# the "small" preset (28x28x1, width 48: 14x14), 3x3 in the latent blocks, 5x5 in the
# processing blocks.
SHAPES = [
    ("issue 3x3", 16, 16, 64, 64, 3),
    ("issue 5x5", 16, 16, 64, 64, 5),
    ("small 3x3", 64, 14, 48, 48, 3),
    ("small 5x5", 64, 14, 48, 48, 5),
]


def _ms_per_call(function, args, calls, repeats):
    """Median over `repeats` rounds of the milliseconds per call of `function(*args)`."""
    for _ in range(3):
        function(*args).numpy()
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            result = function(*args)
        result.numpy()  # waits for the last call
        rounds.append(1000 * (time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def kernels(tf, batch, size, c_in, c_out, k, dtype="float32"):
    """{name: (tf.function, args)} of the three conv kernels at one shape in `dtype`; and
    the kernel gradient's oracle inputs (x, dy)."""
    x = tf.cast(tf.random.stateless_normal([batch, size, size, c_in], seed=[1, 2]), dtype)
    w = tf.cast(tf.random.stateless_normal([k, k, c_in, c_out], seed=[3, 4]), dtype)
    dy = tf.cast(tf.random.stateless_normal([batch, size, size, c_out], seed=[5, 6]), dtype)
    strides = [1, 1, 1, 1]
    forward = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"))
    backprop_input = tf.function(lambda dy, w: tf.raw_ops.Conv2DBackpropInput(
        input_sizes=x.shape, filter=w, out_backprop=dy, strides=strides, padding="SAME"))
    backprop_filter = tf.function(lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=w.shape, out_backprop=dy, strides=strides, padding="SAME"))
    return {"forward": (forward, (x, w)), "backprop input": (backprop_input, (dy, w)),
            "backprop filter": (backprop_filter, (x, dy))}, (x, dy)


def filter_alternatives(tf, k):
    """{name: tf.function(x, dy) -> the kernel gradient [k, k, C_in, C_out]} as matmuls."""
    pad = (k - 1) // 2

    @tf.function
    def shifted_matmuls(x, dy):
        _, size, _, c_in = x.shape
        padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        dy_rows = tf.reshape(dy, [-1, dy.shape[-1]])
        taps = [tf.matmul(tf.reshape(padded[:, i:i + size, j:j + size, :], [-1, c_in]), dy_rows, transpose_a=True)
                for i in range(k) for j in range(k)]
        return tf.reshape(tf.stack(taps), [k, k, c_in, dy.shape[-1]])

    @tf.function
    def patches_matmul(x, dy):
        c_in = x.shape[-1]
        patches = tf.image.extract_patches(x, [1, k, k, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
        product = tf.matmul(tf.reshape(patches, [-1, k * k * c_in]), tf.reshape(dy, [-1, dy.shape[-1]]),
                            transpose_a=True)
        return tf.reshape(product, [k, k, c_in, dy.shape[-1]])

    return {"filter as k*k matmuls": shifted_matmuls, "filter as patches matmul": patches_matmul}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50, help="calls per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (the median is kept)")
    parser.add_argument("--filter_alternatives", action="store_true",
                        help="also time the kernel gradient as matmuls (and its error)")
    parser.add_argument("--bfloat16", action="store_true",
                        help="also time the three kernels in bfloat16 (not the float32 step's numbers)")
    parser.add_argument("--out", default=None, help="output prefix (writes <out>.json)")
    args = parser.parse_args()
    tf = harness.tensorflow()
    import keras_bdgm._onednn as onednn  # pylint: disable=import-outside-toplevel

    rows = []
    for label, batch, size, c_in, c_out, k in SHAPES:
        flops = 2 * batch * size * size * c_in * c_out * k * k
        found, (x, dy) = kernels(tf, batch, size, c_in, c_out, k)
        shape = {"shape": label, "batch": batch, "size": size, "c_in": c_in, "c_out": c_out, "kernel": k}
        timed = list(found.items())
        if args.bfloat16:
            halves, _ = kernels(tf, batch, size, c_in, c_out, k, "bfloat16")
            timed += [(f"{name}, bfloat16", kernel) for name, kernel in halves.items()]
        for name, (function, inputs) in timed:
            ms = _ms_per_call(function, inputs, args.calls, args.repeats)
            rows.append({**shape, "computation": name, "ms": ms, "GFLOP/s": flops / ms / 1e6, "max abs error": None})
            print(rows[-1], flush=True)
        if args.filter_alternatives:
            reference = found["backprop filter"][0](x, dy)
            for name, function in filter_alternatives(tf, k).items():
                ms = _ms_per_call(function, (x, dy), args.calls, args.repeats)
                error = float(tf.reduce_max(tf.abs(function(x, dy) - reference)))
                rows.append({**shape, "computation": name, "ms": ms, "GFLOP/s": flops / ms / 1e6, "max abs error": error})
                print(rows[-1], flush=True)
    harness.write_results(
        rows, args.out,
        title=f"conv kernels (oneDNN {'on' if onednn.enabled() else 'off'}, "
              f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})",
        columns=["shape", "computation", "ms", "GFLOP/s", "max abs error"],
        formats={"ms": "{:.3f}", "GFLOP/s": "{:.0f}", "max abs error": "{:.2g}"}, meta=vars(args))


if __name__ == "__main__":
    main()
