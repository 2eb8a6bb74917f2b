"""Direct ANS coding of images with an autoregressive model (the PixelCNN): no bits-back.

An autoregressive model gives every pixel a distribution given the pixels before it,

    p(x) = prod_{i, j} p(x_ij | x_<ij),   p(x_ij | x_<ij) a discretized logistic mixture,

so the pixels are coded one after another with those distributions, and a file costs the
model's negative log-likelihood -log2 p(x) plus the container: there are no latents, no
initial bits, and a file of one image costs what that image costs.

Order. ANS is a stack, so the encoder pushes the last pixel first: batches in reverse
order, and in a batch the pixels in reverse raster order (each push of a pixel codes it for
all the batch's images). The decoder pops pixel (0, 0) of the first batch first, and so on.

Exact parameters. The decoder must compute every pixel's distribution from the pixels it
has decoded, bit for bit as the encoder did. Both run the same computation:
`keras_bdgm.models.pixelcnn_raster.RasterDecoder`, which evaluates the network pixel by
pixel in raster order (only the new position each step), on batches of the same size
(the last batch padded with zero images, whose pixels are not coded), with TensorFlow's op
determinism on. The tables are numpy float64 from those float32 parameters
(`pixels.mixture_params`, `intervals.IntervalCoder` with mixture weights, two digits of 16
per pixel). As for the bits-back codec, decode on the same kind of machine and software
versions as encoded (the file records both versions); decoding checks that it ends on an
empty stack and raises ValueError otherwise.

One file per image (`compress_each`) runs the network on batches of `EACH_BATCH_SIZE`
images but codes each image on a stack of its own. The network's float results may depend
on the batch's shape and an image's row in it (kernels pick their code paths by shape), so
each such file records both ("b", "r"), and decoding puts the image in that row of a batch
of that size: `decompress_each` decodes many files together, one batch per set of rows.

File parameters, short to keep a one-image file small: "b", the images evaluated together
(absent when it equals the file's image count), "v" and "c", the keras_bdgm and
constriction versions. A one-image file's header is about 50 bytes.

Example:

    codec = AutoregressiveCodec(pixelcnn)          # batch_size=2000: about 2 GB at peak
    data = codec.compress(images)               # uint8 [N, 28, 28, 1] -> bytes
    codec.last_stats.net_bits_per_dim           # ~ the model's -log2 p(x) / D
    assert (codec.decompress(data) == images).all()
"""

import numpy as np

from keras_bdgm import __version__  # set before keras_bdgm/__init__ imports this package
from keras_bdgm.compression import stack as ans
from keras_bdgm.compression.codec import ImageCodec, op_determinism, progress_callback
from keras_bdgm.compression.pixels import PIXEL_CODER, mixture_params

DEFAULT_BATCH_SIZE = 2000
EACH_BATCH_SIZE = 64


def _constriction_version():
    from importlib import metadata  # pylint: disable=import-outside-toplevel

    try:
        return metadata.version("constriction")
    except metadata.PackageNotFoundError:
        return "unknown"


def _pixel_tables(params, values):
    """The digit tables and digits of pixels with known values, all at once.

    Args:
      params: (logits, means, log_scales), [m, K] each, one row per coded pixel.
      values: int [m], the pixels.

    Returns:
      (tables [m, D, R], digits [m, D]): PIXEL_CODER's digits, most significant first.
    """
    a, b, weights = mixture_params(*params)
    digits = PIXEL_CODER.digits(values)
    tables, prefix = [], np.zeros(len(values), np.int64)
    for d, radix in enumerate(PIXEL_CODER.radices):
        tables.append(PIXEL_CODER.digit_table(d, a, b, prefix, weights))
        prefix = prefix * radix + digits[d]
    return np.stack(tables, axis=1), np.stack(digits, axis=1)


class AutoregressiveCodec(ImageCodec):
    """Codes images pixel by pixel with a PixelCNN's mixtures (module docstring).

    Args:
      model: a trained `keras_bdgm.models.PixelCNN`.
      batch_size: images evaluated together (the last batch is padded; a call with fewer
        images uses that many).
    """

    name = "autoregressive-mixture"

    def __init__(self, model, batch_size=DEFAULT_BATCH_SIZE):
        super().__init__(model)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
        self.batch_size = int(batch_size)
        self._decoders = {}

    def params(self):
        return {"v": __version__, "c": _constriction_version()}

    @classmethod
    def from_params(cls, model, params):
        try:
            return cls(model, batch_size=int(params.get("b", DEFAULT_BATCH_SIZE)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"The file's codec parameters are damaged ({err}).") from None

    def decompress(self, data, progress=None, name="data"):
        """As `ImageCodec.decompress`, in the file's batch size ("b", else its image count);
        a one-image file of `compress_each` goes through `decompress_each`."""
        from keras_bdgm.compression import container  # pylint: disable=import-outside-toplevel

        header, _ = container.unpack(data, name=name)
        if header["codec"] != self.name:
            return super().decompress(data, progress=progress, name=name)
        if "r" in header["params"]:
            return self.decompress_each([data], [name])[0]
        size = int(header["params"].get("b", header["count"]))
        codec = self if size == self.batch_size else type(self)(self.model, batch_size=size)
        codec._fingerprint, codec._decoders = self._fingerprint, self._decoders  # pylint: disable=protected-access
        images = super(AutoregressiveCodec, codec).decompress(data, progress=progress, name=name)
        self.last_stats = codec.last_stats
        return images

    # ------------------------------------------------------------------ the network

    def _decoder(self, n):
        from keras_bdgm.models.pixelcnn_raster import RasterDecoder  # pylint: disable=import-outside-toplevel

        if n not in self._decoders:
            self._decoders[n] = RasterDecoder(self.model, n)
        return self._decoders[n]

    def _batches(self, count):
        size = min(self.batch_size, count)
        return size, [(start, min(start + size, count)) for start in range(0, count, size)]

    def _padded(self, images, size):
        if len(images) == size:
            return images
        return np.concatenate([images, np.zeros((size - len(images), *images.shape[1:]), np.uint8)])

    def _pixel_params(self, images, size):
        """Every pixel's parameters through the raster path: 3 x [len(images), H*W, K]."""
        params = self._decoder(size).run(self._padded(images, size))
        k = params[0].shape[-1]
        return [p[: len(images)].reshape(len(images), -1, k) for p in params]

    # ------------------------------------------------------------------ one stack

    def encode_words(self, images, progress):
        size, batches = self._batches(len(images))
        stack = ans.Stack()
        bits = 0.0
        for done, (start, stop) in enumerate(reversed(batches)):
            batch = images[start:stop]
            params = self._pixel_params(batch, size)
            values = batch.reshape(len(batch), -1)
            # pixel-major, then digit, then image: the order the decoder pops them
            tables, digits = _pixel_tables([p.transpose(1, 0, 2).reshape(-1, p.shape[-1]) for p in params],
                                           values.T.reshape(-1))
            pixels, d, r = values.shape[1], tables.shape[1], tables.shape[2]
            tables = tables.reshape(pixels, len(batch), d, r).transpose(0, 2, 1, 3).reshape(-1, r)
            digits = digits.reshape(pixels, len(batch), d).transpose(0, 2, 1).reshape(-1)
            stack.push(digits, tables)
            bits += ans.table_bits(tables, digits)
            progress(sum(b - a for a, b in batches[len(batches) - 1 - done:]))
        return stack.words(), ({"b": size} if size != len(images) else {}), 0, {"pixels": bits}

    def decode_words(self, words, count, file_params, progress):
        del file_params  # batch_size is the codec's (from_params)
        size, batches = self._batches(count)
        stack = ans.Stack(words, guard=False)
        out = np.zeros((count, *self.image_shape), np.uint8)
        try:
            for start, stop in batches:
                n = stop - start
                steps = self._decoder(size).params()
                i, j, params = next(steps)
                while True:
                    a, b, weights = mixture_params(*(p[:n] for p in params))
                    values = PIXEL_CODER.pop(stack, a, b, weights=weights)
                    out[start:stop, i, j, 0] = values
                    try:
                        i, j, params = steps.send(self._padded_values(values, size))
                    except StopIteration:
                        break
                progress(stop)
        except (ans.StackUnderflow, ValueError):
            raise ValueError(self._corrupt_message()) from None
        if stack.num_bits() != 0:
            raise ValueError(self._corrupt_message())
        return out

    @staticmethod
    def _padded_values(values, size):
        padded = np.zeros(size, np.uint8)
        padded[: len(values)] = values
        return padded

    @staticmethod
    def _corrupt_message():
        return ("The data is corrupt or was written by other arithmetic: decoding did not end on an empty "
                "stack. Decode on the same kind of machine and keras_bdgm/constriction versions that encoded it, "
                "with the same TF_ENABLE_ONEDNN_OPTS setting (keras_bdgm before 0.3.1 used Eigen's kernels on "
                "CPUs without AVX-512).")

    # ------------------------------------------------------------------ one stack per image

    def compress_each(self, images, names=None, progress=None, allow_stored=True):
        """One file per image, each on its own stack (the network runs on batches of
        `EACH_BATCH_SIZE`); each file is the model's code or, where smaller (unless
        `allow_stored=False`), the stored pixels."""
        images = self.check_images(images)
        if names is not None and len(names) != len(images):
            raise ValueError(f"{len(names)} names for {len(images)} images.")
        from keras_bdgm.compression import codec as codec_module  # pylint: disable=import-outside-toplevel

        size = min(EACH_BATCH_SIZE, len(images))
        update = progress_callback(progress, len(images))
        files = []
        with op_determinism():
            for start in range(0, len(images), size):
                batch = images[start:start + size]
                params = self._pixel_params(batch, size)
                for row in range(len(batch)):
                    tables, digits = _pixel_tables([p[row] for p in params], batch[row].reshape(-1))
                    stack = ans.Stack()
                    stack.push(digits.reshape(-1), tables.reshape(-1, tables.shape[-1]))
                    extra = {"names": [names[start + row]]} if names is not None else {}
                    slot = {"b": size, "r": row} if size > 1 else {}
                    files.append(self.pack_words(stack.words(), 1, slot, extra))
                    stored = codec_module.stored_file(batch[row:row + 1], extra)
                    if allow_stored and len(stored) < len(files[-1]):
                        files[-1] = stored
                update(start + len(batch))
        return files

    def decompress_each(self, blobs, names=("data",), progress=None):
        """Decodes files (a list of uint8 [N_i, H, W, C] arrays); the one-image files that
        `compress_each` writes are decoded together, each in its recorded row of a batch of
        its recorded size. Other files go through `decompress`."""
        from keras_bdgm.compression import container  # pylint: disable=import-outside-toplevel

        names = list(names) * len(blobs) if len(names) == 1 else list(names)
        out = [None] * len(blobs)
        groups = []  # [(size, {row: (index, words)})]: the batches to decode
        for index, blob in enumerate(blobs):
            header, words = container.unpack(blob, name=names[index])
            if header["codec"] != self.name or int(header["count"]) != 1:
                out[index] = self.decompress(blob, name=names[index])
                continue
            self.check_header(header, names[index])
            size, row = int(header["params"].get("b", 1)), int(header["params"].get("r", 0))
            if not 0 <= row < size:
                raise ValueError(f"{names[index]} is corrupt: row {row} of a batch of {size}.")
            group = next((g for s, g in groups if s == size and row not in g), None)
            if group is None:
                group = {}
                groups.append((size, group))
            group[row] = (index, words)
        update = progress_callback(progress, len(blobs))
        done = len(blobs) - sum(len(g) for _, g in groups)
        with op_determinism():
            for size, group in groups:
                for row, image in self._decode_slots(size, group, names).items():
                    out[group[row][0]] = image
                done += len(group)
                update(done)
        return out

    def _decode_slots(self, size, group, names):
        """{row: uint8 [1, H, W, C]} of one-image stacks in rows of a batch of `size`."""
        stacks = {row: ans.Stack(words, guard=False) for row, (_, words) in group.items()}
        rows = sorted(stacks)
        images = np.zeros((size, *self.image_shape), np.uint8)
        steps = self._decoder(size).params()
        i, j, params = next(steps)
        try:
            while True:
                a, b, weights = mixture_params(*(p[rows] for p in params))
                prefix = np.zeros(len(rows), np.int64)
                for d, radix in enumerate(PIXEL_CODER.radices):  # one table per digit for all rows
                    table = PIXEL_CODER.digit_table(d, a, b, prefix, weights)
                    digit = [stacks[row].pop(table[k:k + 1])[0] for k, row in enumerate(rows)]
                    prefix = prefix * radix + np.asarray(digit, np.int64)
                images[rows, i, j, 0] = prefix
                try:
                    i, j, params = steps.send(images[:, i, j, 0])
                except StopIteration:
                    break
        except (ans.StackUnderflow, ValueError):
            raise ValueError(self._corrupt_message()) from None
        for row in rows:
            if stacks[row].num_bits() != 0:
                raise ValueError(f"{names[group[row][0]]}: {self._corrupt_message()}")
        return {row: images[row:row + 1].copy() for row in rows}
