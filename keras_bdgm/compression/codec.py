"""The codec interface: images <-> a self-describing compressed file, for any model.

An `ImageCodec` turns uint8 images [N, H, W, C] into ANS words and back
(`encode_words` / `decode_words`, implemented per model family: bits-back coding for the
ResNet VAE in `keras_bdgm.compression.bits_back`; local bits-back for Flow++ would be
another subclass). This base class does the rest, the same for every codec: checking the
images before anything is coded, the container (`keras_bdgm.compression.container`) with
the model's fingerprint, the model check on decoding, timing, and the `CodingStats`
of the last call.

Never expanding. `compress` writes the model's code only when it is smaller than the
images stored as raw pixels; otherwise (unusual images the model predicts badly, or a
model whose numbers are not finite on them) it writes the pixels, stored
(`container.STORED`). So a file is never larger than the raw pixels plus a header of 17
to 24 bytes, and `decompress` reads stored files without running the model.

Example:

    codec = BitsBackCodec(model, num_buckets=1024, batch_size=16)
    data = codec.compress(images, progress=True)     # bytes
    print(codec.last_stats.summary())
    images_back = codec.decompress(data)             # uint8 [N, H, W, C]
"""

import abc
import contextlib
import dataclasses
import math
import time

import numpy as np
import tensorflow as tf

from keras_bdgm.compression import container
from keras_bdgm.compression.logistic import NonFiniteModelError
from keras_bdgm.compression.model_fingerprint import fingerprint


@dataclasses.dataclass
class CodingStats:
    """Sizes and speed of one compress or decompress call.

    payload_bits: the ANS words in the file (32 per word).
    initial_bits: the part of the payload that pays for the first pops (the initial
      bits of bits-back coding; 0 for codecs without them).
    net_bits = payload_bits - initial_bits: what the images themselves cost.
    file_bytes: the whole file (header, payload, CRC).
    information: the summed -log2 probabilities of the coded symbols by part (e.g.
      "pixels", "latent_prior", "latent_posterior"), from the codec's own tables.
    """

    images: int
    dims_per_image: int
    payload_bits: int
    initial_bits: int
    file_bytes: int
    seconds: float
    direction: str = "encode"
    information: dict = dataclasses.field(default_factory=dict)
    stored: bool = False

    @property
    def net_bits(self):
        return self.payload_bits - self.initial_bits

    def _per_dim(self, bits):
        return bits / (self.images * self.dims_per_image)

    @property
    def net_bits_per_dim(self):
        return self._per_dim(self.net_bits)

    @property
    def bits_per_dim_with_initial(self):
        return self._per_dim(self.payload_bits)

    @property
    def file_bits_per_dim(self):
        return self._per_dim(8 * self.file_bytes)

    @property
    def images_per_second(self):
        return self.images / self.seconds if self.seconds > 0 else math.inf

    def as_dict(self):
        out = dataclasses.asdict(self)
        for name in ("net_bits", "net_bits_per_dim", "bits_per_dim_with_initial", "file_bits_per_dim",
                     "images_per_second"):
            out[name] = getattr(self, name)
        return out

    def summary(self):
        return (
            f"{self.images} images, {self.file_bytes} bytes: {self.net_bits_per_dim:.4f} bits/dim net, "
            f"{self.bits_per_dim_with_initial:.4f} with {self.initial_bits} initial bits, "
            f"{self.file_bits_per_dim:.4f} for the whole file"
            f"{' (stored as raw pixels: smaller than the model code)' if self.stored else ''}; "
            f"{self.direction} {self.images_per_second:.1f} images/s"
        )


def progress_callback(progress, total):
    """A callable(done) from progress: None, True (a Keras Progbar) or callable(done, total)."""
    if progress is None or progress is False:
        return lambda done: None
    if progress is True:
        bar = tf.keras.utils.Progbar(total, unit_name="image")
        return lambda done: bar.update(done)
    return lambda done: progress(done, total)


@contextlib.contextmanager
def op_determinism():
    """Enables TensorFlow's op determinism for the block, then restores the previous setting.

    (Restoring matters: with determinism on, TensorFlow refuses unseeded random ops.) The
    public API can only enable it; reading and disabling it use TensorFlow's own
    `tensorflow.python.framework.config` functions where they exist, else it stays on.
    """
    try:
        from tensorflow.python.framework import config as tf_config  # pylint: disable=import-outside-toplevel
        was_enabled = tf_config.is_op_determinism_enabled()
        disable = tf_config.disable_op_determinism
    except (ImportError, AttributeError):
        was_enabled, disable = True, None
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled and disable is not None:
            disable()


class ImageCodec(abc.ABC):
    """Lossless codec of uint8 images with a trained model.

    Subclasses set `name` (stored in the file) and implement `params`, `from_params`,
    `encode_words` and `decode_words`.
    """

    name = None

    def __init__(self, model):
        self.model = model
        self.image_shape = tuple(int(d) for d in model.image_shape)
        self.dims_per_image = int(np.prod(self.image_shape))
        self.last_stats = None
        self._fingerprint = None

    # ------------------------------------------------------------ per-codec parts

    @abc.abstractmethod
    def params(self):
        """The codec's configuration (JSON-able dict) that decoding needs."""

    @classmethod
    @abc.abstractmethod
    def from_params(cls, model, params):
        """A codec for `model` configured as the file's `params` say."""

    @abc.abstractmethod
    def encode_words(self, images, progress):
        """uint8 [N, H, W, C] -> (uint32 words, per-file params dict, initial bits, information)."""

    @abc.abstractmethod
    def decode_words(self, words, count, file_params, progress):
        """The inverse of `encode_words`: uint8 [count, H, W, C] (ValueError if inconsistent)."""

    # ------------------------------------------------------------ shared

    @property
    def fingerprint(self):
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.model)
        return self._fingerprint

    def check_images(self, images):
        """Returns images as a C-contiguous uint8 array [N, H, W, C], or raises ValueError."""
        if not isinstance(images, np.ndarray):
            if tf.is_tensor(images):
                images = images.numpy()
            else:
                raise ValueError(f"images must be a uint8 numpy array [N, H, W, C], got {type(images).__name__}.")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (pixel values 0..255), got dtype {images.dtype}.")
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape or images.shape[0] < 1:
            raise ValueError(
                f"images must be [N >= 1, {', '.join(map(str, self.image_shape))}] for this model, "
                f"got shape {tuple(images.shape)}."
            )
        return np.ascontiguousarray(images)

    def compress(self, images, progress=None, extra_params=None, allow_stored=True):
        """uint8 images [N, H, W, C] -> the compressed file's bytes; sets `last_stats`.

        The file holds the model's code, or the pixels stored when those are smaller (see
        the module docstring; `allow_stored=False` always writes the model's code).
        `extra_params` (a JSON-able dict, e.g. {"names": [...]}) is stored in the file's
        parameters either way.
        """
        images = self.check_images(images)
        extra_params = dict(extra_params or {})
        start = time.perf_counter()
        try:
            with op_determinism():
                words, file_params, initial_bits, information = self.encode_words(
                    images, progress_callback(progress, len(images)))
        except NonFiniteModelError:
            if not allow_stored:
                raise
            words, file_params, initial_bits, information = None, {}, 0, {}
        stored = stored_file(images, extra_params)
        data = stored
        if words is not None:
            coded = self.pack_words(words, len(images), file_params, extra_params)
            data = coded if len(coded) <= len(stored) or not allow_stored else stored
        self.last_stats = CodingStats(
            images=len(images), dims_per_image=self.dims_per_image,
            payload_bits=32 * int(words.size) if data is not stored else 8 * images.size,
            initial_bits=int(initial_bits) if data is not stored else 0, file_bytes=len(data),
            seconds=time.perf_counter() - start, direction="encode", information=information,
            stored=data is stored)
        return data

    def pack_words(self, words, count, file_params, extra_params=None):
        """The file of `count` images coded as ANS `words` by this codec."""
        header = {
            "codec": self.name,
            "image_shape": list(self.image_shape),
            "count": int(count),
            "model": {"fingerprint": self.fingerprint},
            "params": {**self.params(), **file_params, **(extra_params or {})},
        }
        return container.pack(header, words)

    def compress_each(self, images, names=None, progress=None, allow_stored=True):
        """One file per image (each never larger than its raw pixels plus the header,
        unless `allow_stored=False`): a list of bytes. `names` (one per image) are stored
        in the files' parameters.

        A codec that can code images independently in one pass overrides this; here each
        image is compressed on its own."""
        images = self.check_images(images)
        if names is not None and len(names) != len(images):
            raise ValueError(f"{len(names)} names for {len(images)} images.")
        update = progress_callback(progress, len(images))
        files = []
        for i in range(len(images)):
            extra = {"names": [names[i]]} if names is not None else None
            files.append(self.compress(images[i:i + 1], extra_params=extra, allow_stored=allow_stored))
            update(i + 1)
        return files

    def decompress_each(self, blobs, names=("data",), progress=None):
        """Decodes several files: a list of uint8 [N_i, H, W, C] arrays (a codec that can
        decode single-image files together overrides this)."""
        names = list(names) * len(blobs) if len(names) == 1 else list(names)
        update = progress_callback(progress, len(blobs))
        out = []
        for i, blob in enumerate(blobs):
            out.append(self.decompress(blob, name=names[i]))
            update(i + 1)
        return out

    def check_header(self, header, name="data"):
        """Raises ValueError if the file was written by another codec or model."""
        if header["codec"] != self.name:
            raise ValueError(f"{name} was written by codec {header['codec']!r}; this model's codec is {self.name!r}.")
        file_model = header["model"]
        file_print = str(file_model.get("fingerprint"))
        same_model = (file_print == container.fingerprint_prefix(self.fingerprint) if header.get("format", 1) >= 2
                      else file_model.get("class") == type(self.model).__name__ and file_print == self.fingerprint)
        if not same_model or tuple(header["image_shape"]) != self.image_shape:
            raise ValueError(
                f"{name} was compressed with a different model: the file's model has images of shape "
                f"{tuple(header['image_shape'])} and fingerprint {file_print[:16]}..., this "
                f"{type(self.model).__name__} has {self.image_shape} and {self.fingerprint[:16]}... Decode it "
                "with the model (same weights and precision) that compressed it."
            )

    def decompress(self, data, progress=None, name="data"):
        """The compressed file's bytes -> uint8 images [N, H, W, C]; sets `last_stats`.

        Raises ValueError (and returns nothing) for a file that is not a compressed file,
        has an unknown version, is truncated or corrupt, or was written with another model.
        """
        header, words = container.unpack(data, name=name)
        if header["codec"] == container.STORED:
            return self._read_stored(header, words, data, name)
        self.check_header(header, name)
        codec = self
        own = self.params()
        if any(header["params"].get(key) != value for key, value in own.items()):
            codec = type(self).from_params(self.model, header["params"])
            codec._fingerprint = self._fingerprint  # pylint: disable=protected-access
        count = int(header["count"])
        start = time.perf_counter()
        with op_determinism():
            images = codec.decode_words(words, count, header["params"], progress_callback(progress, count))
        self.last_stats = CodingStats(
            images=count, dims_per_image=self.dims_per_image, payload_bits=32 * int(words.size),
            initial_bits=int(header["params"].get("initial_bits", 0)), file_bytes=len(data),
            seconds=time.perf_counter() - start, direction="decode")
        return images

    def _read_stored(self, header, pixels, data, name):
        if tuple(header["image_shape"]) != self.image_shape:
            raise ValueError(f"{name} holds images of shape {tuple(header['image_shape'])}; this model codes "
                             f"{self.image_shape}.")
        self.last_stats = CodingStats(
            images=len(pixels), dims_per_image=self.dims_per_image, payload_bits=8 * pixels.size, initial_bits=0,
            file_bytes=len(data), seconds=0.0, direction="decode", stored=True)
        return np.array(pixels)


def stored_file(images, extra_params=None):
    """The file of `images` (uint8 [N, H, W, C]) stored as raw pixels (no model needed)."""
    images = np.asarray(images, np.uint8)
    header = {"codec": container.STORED, "image_shape": list(images.shape[1:]), "count": int(len(images)),
              "params": dict(extra_params or {})}
    return container.pack(header, images)
