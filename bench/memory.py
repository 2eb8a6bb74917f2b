"""Parameters and memory of the "paper" presets in every precision, beside the paper's Table 1.

    python bench/memory.py [--out bench/memory_output.txt]

For ResNet VAE (width 256 and 336) and Flow++ at 32x32x3: parameters, binary share, float32
MB, 1-bit MB from `keras_bdgm.memory.footprint`, and the size of an actual packed file
(`save_packed`). MB = 10^6 bytes; MiB = 2^20 bytes.
"""

import argparse
import os
import tempfile

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

from keras_bdgm import experiment, memory

# Table 1 of Bird et al. (2021): (parameters, binary share, memory MB) per (model, width, precision).
PAPER = {
    ("resnet_vae", 256, "w32a32"): ("56M", "0%", 255),
    ("resnet_vae", 256, "w1a32"): ("56M", "97.1%", 13),
    ("resnet_vae", 256, "w1a1"): ("56M", "97.1%", 13),
    ("resnet_vae", 336, "w1a32"): ("96M", "97.7%", 20),
    ("resnet_vae", 336, "w1a1"): ("96M", "97.7%", 20),
    ("flowpp", 120, "w32a32"): ("34M", "0%", 129),
    ("flowpp", 120, "w1a32"): ("34M", "90.1%", 14),
    ("flowpp", 120, "w1a1"): ("34M", "90.1%", 14),
}
ROWS = [("resnet_vae", 256), ("resnet_vae", 336), ("flowpp", 120)]


def build(model, width, precision):
    tf.keras.backend.clear_session()
    net = experiment.build_model(model, (32, 32, 3), precision, "paper", width=width)
    if not net.built:
        net.log_prob(np.zeros((1, 32, 32, 3), np.uint8), seed=0)  # builds lazily created layers
    return net


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/memory_output.txt")
    args = parser.parse_args()
    lines = [
        "| model | width | precision | parameters | binary | float32 MB | 1-bit MB (footprint) | packed file MB | packed / 1-bit | paper: params, binary, MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, width in ROWS:
        for precision in ("w32a32", "w1a32", "w1a1"):
            net = build(model, width, precision)
            fp = memory.footprint(net)
            with tempfile.TemporaryDirectory() as tmp:
                size = memory.save_packed(net, os.path.join(tmp, "m.bdgm"))
            paper = PAPER.get((model, width, precision))
            paper = "-" if paper is None else f"{paper[0]}, {paper[1]}, {paper[2]} MB"
            lines.append(
                f"| {model} | {width} | {precision} | {fp.parameters:,} | {fp.binary_share:.2%} | "
                f"{fp.float32_bytes / 1e6:.1f} | {fp.bytes / 1e6:.2f} | {size / 1e6:.2f} | {size / fp.bytes:.4f} | {paper} |"
            )
            print(lines[-1], flush=True)
            del net
    with open(args.out, "w") as f:
        f.write("# python bench/memory.py\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
