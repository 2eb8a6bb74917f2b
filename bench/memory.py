"""Parameters and memory of the "paper" presets in every precision, beside the paper's Table 1.

    python bench/memory.py [--out bench/memory_output]

For ResNet VAE (width 256 and 336) and Flow++ at 32x32x3: parameters, binary share, float32
MB, 1-bit MB from `keras_bdgm.memory.footprint`, and the size of an actual packed file
(`save_packed`). MB = 10^6 bytes; MiB = 2^20 bytes. The table goes to stdout and to
<--out>.json (bench/harness.py's `write_results`); progress to stderr.
"""

import argparse
import os
import sys
import tempfile

import harness
import numpy as np

from keras_bdgm import memory

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
    net = harness.build(model, (32, 32, 3), precision, "paper", {"width": width})
    if not net.built:
        net.log_prob(np.zeros((1, 32, 32, 3), np.uint8), seed=0)  # builds lazily created layers
    return net


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default=",".join(f"{m}:{w}" for m, w in ROWS), help="model:width,...")
    parser.add_argument("--precisions", default="w32a32,w1a32,w1a1")
    parser.add_argument("--out", default="bench/memory_output", help="output prefix (writes <out>.json)")
    args = parser.parse_args()
    rows = []
    for model, width in (item.split(":") for item in args.rows.split(",")):
        width = int(width)
        for precision in args.precisions.split(","):
            net = build(model, width, precision)
            fp = memory.footprint(net)
            with tempfile.TemporaryDirectory() as tmp:
                size = memory.save_packed(net, os.path.join(tmp, "m.bdgm"))
            paper = PAPER.get((model, width, precision))
            rows.append({
                "model": model, "width": width, "precision": precision, "parameters": fp.parameters,
                "binary": fp.binary_share, "float32 MB": fp.float32_bytes / 1e6, "1-bit MB (footprint)": fp.bytes / 1e6,
                "packed file MB": size / 1e6, "packed / 1-bit": size / fp.bytes,
                "paper: params, binary, MB": "-" if paper is None else f"{paper[0]}, {paper[1]}, {paper[2]} MB",
            })
            print(f"{model} {width} {precision}: {fp.parameters:,} parameters, packed {size:,} bytes",
                  file=sys.stderr, flush=True)
            del net
    harness.write_results(rows, args.out, formats={
        "binary": "{:.2%}", "float32 MB": "{:.1f}", "1-bit MB (footprint)": "{:.2f}", "packed file MB": "{:.2f}",
        "packed / 1-bit": "{:.4f}"})


if __name__ == "__main__":
    main()
