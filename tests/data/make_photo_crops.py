"""Writes tests/data/photo_crops.npz: grayscale 28x28 crops of an ordinary photograph.

The codec tests need natural-photo content, which no image model trained on Fashion-MNIST
predicts well. The source is matplotlib's sample photograph `grace_hopper.jpg` (a U.S.
Navy portrait, in the public domain); matplotlib is only needed to run this script once:

    python tests/data/make_photo_crops.py

`crops`: uint8 [8, 28, 28, 1], from a regular grid over the photograph, converted to
grayscale with ITU-R 601 weights and rounded.
"""

import os

import numpy as np
from matplotlib import cbook, image


def main():
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        rgb = image.imread(f, format="jpg").astype(np.float64)  # [600, 512, 3]
    gray = np.round(rgb @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)
    rows = np.linspace(40, gray.shape[0] - 68, 4).astype(int)
    cols = np.linspace(40, gray.shape[1] - 68, 2).astype(int)
    crops = np.stack([gray[r:r + 28, c:c + 28] for r in rows for c in cols])[..., None]
    np.savez_compressed(os.path.join(os.path.dirname(__file__), "photo_crops.npz"), crops=crops)
    print(crops.shape, crops.dtype, crops.mean())


if __name__ == "__main__":
    main()
