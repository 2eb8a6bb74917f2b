"""Encode and decode speed of the autoregressive codec, for before/after comparisons.

    python bench/codec_speed.py --num_images=4000 --batch_size=500 --label=after

Codes the first --num_images Fashion-MNIST test images as one file with a shipped PixelCNN
(`--pretrained`, default `pixelcnn/w1a1`, the model of the figures in BENCHMARKS.md) and `AutoregressiveCodec(batch_size=--batch_size)`, after one
warm-up batch (tracing), and prints images/s each way, the file's bits/dim and that the
round trip was exact. For the "before" side, run the same file against an older checkout
(it imports whatever `keras_bdgm` is first on the path):

    git worktree add /tmp/old <commit>
    (cd /tmp/old && PYTHONPATH=/tmp/old python /path/to/bench/codec_speed.py --label=before)
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_bdgm  # noqa: E402,F401  (Keras 2 before TensorFlow)
import numpy as np  # noqa: E402

from keras_bdgm import datasets, pretrained  # noqa: E402
from keras_bdgm.compression.autoregressive import AutoregressiveCodec  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_images", type=int, default=4000)
    parser.add_argument("--batch_size", type=int, default=2000)
    parser.add_argument("--label", default="")
    parser.add_argument("--pretrained", default="pixelcnn/w1a1", help="A shipped PixelCNN.")
    args = parser.parse_args()
    n, size = args.num_images, args.batch_size
    images = np.concatenate([np.asarray(b) for b in datasets.load(
        "fashion_mnist", f"test[:{n}]", 1000, shuffle=False)])
    codec = AutoregressiveCodec(pretrained.load(args.pretrained), batch_size=size)
    codec.decompress(codec.compress(images[:size], allow_stored=False))  # trace every step once
    start = time.perf_counter()
    data = codec.compress(images, allow_stored=False)
    encode = time.perf_counter() - start
    start = time.perf_counter()
    decoded = np.asarray(codec.decompress(data))
    decode = time.perf_counter() - start
    exact = bool(np.array_equal(decoded, images))
    print(f"{args.label}: {n} images, batch {size}: encode {n / encode:.1f} img/s, decode {n / decode:.1f} "
          f"img/s, {len(data) * 8 / images.size:.4f} bits/dim, exact {exact}", flush=True)
    if not exact:
        raise SystemExit("the round trip was not exact")


if __name__ == "__main__":
    main()
