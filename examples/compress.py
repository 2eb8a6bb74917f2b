"""Lossless image compression with a trained model: the `keras-bdgm-compress` command.

    python examples/compress.py --input=fashion_mnist:test[:1000] --output=test.kbc
    python examples/compress.py --decompress --input=test.kbc --output=decoded/
    python examples/compress.py --model_dir=runs/vae_w1a1 --input=pngs/ --output=kbc/ --per_image

The same program pip installs as `keras-bdgm-compress`; its flags and behaviour are
documented in `keras_bdgm.compression.cli`.
"""

from keras_bdgm.compression.cli import main

if __name__ == "__main__":
    main()
