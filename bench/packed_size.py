"""Packed 1-bit file size against the 1-bit floor (bits / 8) for a model with >= 1M binary weights.

    python bench/packed_size.py [--width 256] [--convs 2] [--out bench/packed_size_output]

Prints a markdown table with one row per model (and writes it to <--out>.json, through
bench/harness.py's `write_results`); the goal is packed / floor <= 1.01.
"""

import argparse
import os
import tempfile

import harness

tf = harness.tensorflow()  # after keras_bdgm, which selects Keras 2

from keras_bdgm import layers, memory


def bwn_stack(width, convs):
    model = tf.keras.Sequential([tf.keras.Input((16, 16, width))])
    for i in range(convs):
        model.add(layers.BWNConv2D(width, 3, padding="same", input_quantizer="ste_sign" if i else None))
    model.add(layers.WNConv2D(3, 1))
    return model


def measure(model):
    fp = memory.footprint(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.bdgm")
        size = memory.save_packed(model, path)
        assert size == os.path.getsize(path)
    return fp, size


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--convs", type=int, default=2)
    parser.add_argument("--out", default="bench/packed_size_output", help="output prefix (writes <out>.json)")
    args = parser.parse_args()
    fp, size = measure(bwn_stack(args.width, args.convs))
    harness.write_results([{
        "model": f"{args.convs} x BWNConv2D 3x3 {args.width}->{args.width} + WNConv2D 1x1",
        "binary weights": fp.binary_weights, "real params": fp.real_parameters, "1-bit floor (bytes)": fp.bytes,
        "packed file (bytes)": size, "packed / floor": size / fp.bytes, "float32 (bytes)": fp.float32_bytes,
    }], args.out, formats={"packed / floor": "{:.4f}"})


if __name__ == "__main__":
    main()
