"""Lossless image compression with keras_bdgm's models (bits-back ANS with the ResNet VAE).

    data = compress(model, images)          # uint8 [N, H, W, C] -> bytes
    images = decompress(model, data)        # bytes -> uint8 [N, H, W, C], bit-exact

A trained `ResNetVAE` codes images at about its negative ELBO (`BitsBackCodec`, bits-back
coding with ANS, on the `constriction` library), plus a one-off cost of initial bits for
the first batch, reported separately. The file is self-describing (magic, version, image
shape and count, the model's fingerprint, codec parameters, CRC-32;
`keras_bdgm.compression.container`); decoding a truncated, corrupt or unknown-version
file, or decoding with another model, raises a ValueError that says which.

Decoding must run on the same kind of machine as encoding (see
`keras_bdgm.compression.bits_back`: the network's float results differ between CPU
architectures and kernels).

Modules, one job each:

* `codec`: the `ImageCodec` interface (images <-> file bytes) and `CodingStats`.
* `bits_back`: `BitsBackCodec`, the ResNet VAE codec.
* `buckets`, `pixels`, `logistic`: the float64 probability tables.
* `stack`: the ANS stack on constriction (array pushes/pops, underflow guard, initial words).
* `container`: the file format; `model_fingerprint`: the model hash.

Example:

    from keras_bdgm import compression
    codec = compression.BitsBackCodec(model, num_buckets=1024, batch_size=16)
    data = codec.compress(images, progress=True)
    print(codec.last_stats.summary())        # bits/dim net and with initial bits, images/s
    compression.write_atomic("images.kbc", data)
    assert (compression.decompress(model, open("images.kbc", "rb").read()) == images).all()
"""

import numpy as np

from keras_bdgm.compression import container
from keras_bdgm.compression.autoregressive import AutoregressiveCodec
from keras_bdgm.compression.bits_back import DEFAULT_BATCH_SIZE, DEFAULT_NUM_BUCKETS, BitsBackCodec
from keras_bdgm.compression.codec import CodingStats, ImageCodec, stored_file
from keras_bdgm.compression.container import write_atomic
from keras_bdgm.compression.model_fingerprint import fingerprint

# Codec name (as stored in files) -> class.
CODECS = {BitsBackCodec.name: BitsBackCodec, AutoregressiveCodec.name: AutoregressiveCodec}


def codec_for(model, **kwargs):
    """The codec for `model`: an AutoregressiveCodec for a PixelCNN, a BitsBackCodec for a
    ResNetVAE; kwargs go to its constructor (e.g. batch_size)."""
    if hasattr(model, "top_down_params"):
        return BitsBackCodec(model, **kwargs)
    if hasattr(model, "pixel_params") and getattr(model, "num_latent_layers", None) == 0:
        kwargs.pop("num_buckets", None)  # a bits-back setting: no latents here
        return AutoregressiveCodec(model, **kwargs)
    raise ValueError(
        f"No lossless codec for {type(model).__name__}; keras_bdgm.compression codes with a PixelCNN "
        "(directly) or a ResNetVAE (bits-back)."
    )


def compress(model, images, progress=None, allow_stored=True, **kwargs):
    """uint8 images [N, H, W, C] -> compressed bytes (kwargs: the codec's, e.g. batch_size).

    The file holds the model's code, or the raw pixels where those are smaller
    (`allow_stored=False`: always the model's code; see `keras_bdgm.compression.codec`).

    Raises ValueError for images of the wrong dtype or shape, before anything is coded.
    """
    return codec_for(model, **kwargs).compress(images, progress=progress, allow_stored=allow_stored)


def decompress(model, data, progress=None):
    """Compressed bytes -> uint8 images [N, H, W, C]; the codec parameters come from the file.

    Raises ValueError for a file that is truncated, corrupt, of an unknown version or
    format, or that was written with another model.
    """
    header, payload = container.unpack(data)
    if header["codec"] == container.STORED:
        return np.array(payload)
    codec_class = CODECS.get(header["codec"])
    if codec_class is None:
        raise ValueError(f"The data was written by an unknown codec {header['codec']!r}; known: {sorted(CODECS)}.")
    codec = codec_class.from_params(model, header["params"])
    return codec.decompress(data, progress=progress)


__all__ = [
    "AutoregressiveCodec", "BitsBackCodec", "CODECS", "CodingStats", "DEFAULT_BATCH_SIZE", "DEFAULT_NUM_BUCKETS", "ImageCodec",
    "codec_for", "compress", "container", "decompress", "fingerprint", "stored_file", "write_atomic",
]
