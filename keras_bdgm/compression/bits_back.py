"""Bits-back ANS coding of images with the ResNet VAE (Townsend et al. 2019; "HiLLoC").

Latents are discretized into K buckets of equal mass under each latent's conditional
prior (`keras_bdgm.compression.buckets`), pixels are coded with the model's discretized
logistic (`keras_bdgm.compression.pixels`), all on one ANS stack
(`keras_bdgm.compression.stack`). Images are coded a batch of B at a time, top-down
("bits-back with the top-down order" of the bidirectional model):

    encode a batch x (stack S):
        (q_mean, q_raw)_l = bottom_up(x)
        d = 0
        for l = L..1:   p_l, r_l = top_down_params(l, d)
                        k_l = pop from S with Q(k | x, z_>l)      (posterior; "bits back")
                        z_l = centre of bucket k_l under p_l;  d = top_down_update(l, d, z_l)
        push x with P(x | z)                                     (pixels)
        push k_1, ..., k_L with the uniform prior over the K buckets (bottom first)

    decode a batch (the exact reverse):
        pop k_L, ..., k_1 (uniform); run the top-down pass through the bucket centres
        pop x with P(x | z); (q_mean, q_raw)_l = bottom_up(x)
        push k_1, ..., k_L back with their posteriors (restoring the stack for the batch below)

Bucket indices and pixel values are coded digit by digit (`intervals.IntervalCoder`);
a push undoes a pop exactly. Each image costs, in expectation over the popped bits,

    -log P(x | z) + sum_l [ log2 K * n_l - (-log Q(k_l)) ]  ~  -ELBO (in bits)

(n_l latents in layer l): bits-back returns the posterior's information. Batches go on
the stack in order (the decoder meets the last batch first); each batch's pops are paid
for by the batches pushed before it.

Initial bits. The first pops find an empty stack, so the stack starts with fixed
pseudo-random words (`stack.seed_words`), as many as a full batch's pops could need (24
bits per popped symbol). Words at the bottom that no pop ever reached are left out of the
file (the decoder regenerates them), so the initial bits reported
(`CodingStats.initial_bits`) are the seed words actually consumed. To keep those to about
one image's posterior information instead of a batch's, the batches ramp up: the first
holds one image, and each next one as many as the bits pushed since the stack's lowest
point pay for (`_encode_all`); the file records the ramp's sizes. Pops never run the stack
dry: a pop that would is detected (`stack.StackUnderflow`) and encoding restarts with 4x
the initial words.

Padding and determinism. The networks run as `tf.function`s with fixed input shapes
[B, ...], compiled once; the last batch is padded with zero images (and the padded rows'
latents set to the prior bucket K/2) identically in encoder and decoder, and the file
records B. Encoder and decoder must compute bit-identical probabilities: TensorFlow's op
determinism is on while coding, every table is computed in numpy float64 from the same
float32 network outputs by the same expressions, and decoding checks that it ends on
exactly the initial stack (a ValueError otherwise). Decoding in another process or with
another thread count on the same machine gives the same result (tested). Decoding on
another CPU architecture is NOT guaranteed: the network's float32 results depend on which
kernels run (oneDNN/Eigen pick different code paths and summation orders for AVX2,
AVX-512, ARM, GPUs), and numpy's float64 exp/log may differ by an ulp between SIMD
implementations; a single differing bit in a probability table makes the decoder pop
different symbols. Decode on the same kind of machine (and software versions) as encoded.

File parameters (in the container's "params"): num_buckets K, bucket_radices and
pixel_radices (the digits), batch_size B, ramp (the first batches' sizes), seed_words
(initial stack size), seed_prefix_words (initial words left out of the file),
initial_bits, keras_bdgm (the version, whose network arithmetic must be the same when
decoding: 0.2.0 folds the weight-norm scale into the conv kernels, which rounds differently
from 0.1.0) and constriction (the coder's version, which must quantize probabilities the same
way when decoding).

Example:

    codec = BitsBackCodec(vae, num_buckets=1024, batch_size=16)
    data = codec.compress(images)            # uint8 [N, 28, 28, 1] -> bytes
    codec.last_stats.net_bits_per_dim        # ~ the model's -ELBO in bits/dim
    assert (codec.decompress(data) == images).all()
"""

from importlib import metadata

import numpy as np
import tensorflow as tf

from keras_bdgm import __version__  # set before keras_bdgm/__init__ imports this package
from keras_bdgm.compression import stack as ans
from keras_bdgm.compression.buckets import BucketGrid, LogisticParams, latent_params
from keras_bdgm.compression.codec import ImageCodec
from keras_bdgm.compression.intervals import IntervalCoder
from keras_bdgm.compression.pixels import PIXEL_CODER, PIXEL_GRID, pixel_params

DEFAULT_NUM_BUCKETS = 2**10
DEFAULT_BATCH_SIZE = 16
MAX_RAMP_BATCHES = 96
_MAX_ATTEMPTS = 4


def _constriction_version():
    try:
        return metadata.version("constriction")
    except metadata.PackageNotFoundError:
        return "unknown"


def _rows(params, count):
    """The first `count` latents of flat LogisticParams."""
    return LogisticParams(params.mean[:count], params.scale[:count])


def _compiled(fn, input_signature):
    """tf.function(fn) for one fixed input signature: traced once, on its first call.

    Each codec compiles one function per layer and step from the same lambdas, so
    TensorFlow's "frequent retracing" warning (keyed by the Python code) would fire for
    what are first traces of distinct functions; it is switched off for these, as Keras
    does for its own functions."""
    function = tf.function(fn, input_signature=input_signature)
    function._omit_frequent_tracing_warning = True  # pylint: disable=protected-access
    return function


def _information(tables):
    """Summed -log2 probabilities of the coded digits, from (table, digit) pairs."""
    return sum(ans.table_bits(table, digit) for table, digit in tables)


class BitsBackCodec(ImageCodec):
    """Bits-back ANS codec for `keras_bdgm.models.ResNetVAE`.

    Args:
      model: a ResNetVAE (any precision), trained.
      num_buckets: K, buckets per latent (a power of two; 2^10 by default).
      bucket_radices, pixel_radices: the digits latent bucket indices and pixel values
        are coded in (default: `intervals.split_radices`, (16, 8, 8) and (16, 16)).
      batch_size: images coded (and run through the networks) at once. Larger is faster
        but needs more initial bits (about one batch's posterior information).
      ramp: start with one image per batch and grow the batches as the stack fills (see
        `_encode_all`), so the initial bits are about one image's worth, not a batch's.
        The sizes are stored in the file. The ramp's batches still run the networks at
        [batch_size, ...] (padded), so it costs some speed at the start.
      trace: if a list, every push and pop of the last compress/decompress is recorded
        there (`stack.Stack`), for accounting checks.
    """

    name = "bits-back-resnet-vae"

    def __init__(self, model, num_buckets=DEFAULT_NUM_BUCKETS, batch_size=DEFAULT_BATCH_SIZE, ramp=True,
                 trace=None, bucket_radices=None, pixel_radices=None):
        super().__init__(model)
        for method in ("bottom_up", "initial_state", "top_down_params", "top_down_update", "pixel_means"):
            if not hasattr(model, method):
                raise ValueError(f"BitsBackCodec needs a ResNetVAE; {type(model).__name__} has no {method}().")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.grid = BucketGrid(num_buckets, bucket_radices)
        self.pixel_coder = IntervalCoder(PIXEL_GRID, pixel_radices) if pixel_radices else PIXEL_CODER
        self.batch_size = int(batch_size)
        self.ramp = bool(ramp)
        self.trace = trace
        self.num_layers = int(model.num_latent_layers)
        h2, w2, zc = model.latent_shape
        self.latent_shape = (h2, w2, zc)
        self.latents_per_image = h2 * w2 * zc  # per layer
        self._build_steps()

    # ------------------------------------------------------------ configuration

    def params(self):
        return {
            "num_buckets": self.grid.num_buckets,
            "bucket_radices": list(self.grid.radices),
            "pixel_radices": list(self.pixel_coder.radices),
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_params(cls, model, params):
        try:
            return cls(model, num_buckets=int(params["num_buckets"]), batch_size=int(params["batch_size"]),
                       bucket_radices=params["bucket_radices"], pixel_radices=params["pixel_radices"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"The file's codec parameters are incomplete: {params}.") from e

    def _build_steps(self):
        """The model's per-layer steps as tf.functions with fixed [B, ...] signatures."""
        model, b = self.model, self.batch_size
        h2, w2, zc = self.latent_shape
        width = int(model.initial_state(1).shape[-1])
        x_spec = tf.TensorSpec([b, *self.image_shape], tf.float32)
        d_spec = tf.TensorSpec([b, h2, w2, width], tf.float32)
        z_spec = tf.TensorSpec([b, h2, w2, zc], tf.float32)
        self._bottom_up = _compiled(lambda x: model.bottom_up(x), [x_spec])
        self._params = [_compiled(lambda d, l=l: model.top_down_params(l, d), [d_spec])
                        for l in range(self.num_layers)]
        self._update = [_compiled(lambda d, z, l=l: model.top_down_update(l, d, z), [d_spec, z_spec])
                        for l in range(self.num_layers)]
        self._pixel_means = _compiled(lambda d: model.pixel_means(d), [d_spec])
        self._initial_state = tf.zeros(d_spec.shape, tf.float32)

    # ------------------------------------------------------------ network helpers

    def _scaled_batch(self, images):
        """uint8 [n, H, W, C] -> float32 [B, H, W, C] in [-1, 1], zero-padded (as the model scales)."""
        x = np.zeros((self.batch_size, *self.image_shape), np.float32)
        x[: len(images)] = images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        return tf.constant(x)

    def _posterior_inputs(self, images):
        """[(q_mean, q_raw)] per layer, numpy float32 [B, h, w, z]."""
        return [(m.numpy(), r.numpy()) for m, r in self._bottom_up(self._scaled_batch(images))]

    def _layer_params(self, l, d):
        """Layer l's prior (all B rows, flat float64) and (r_mean, r_raw) float32 arrays."""
        p_mean, p_raw, r_mean, r_raw = (t.numpy() for t in self._params[l](d))
        return latent_params(p_mean, p_raw), (r_mean, r_raw)

    def _posterior(self, r, q, n):
        """q(z_l | x, z_>l) of the first n images: Logistic(r_mean + q_mean, 0.01 + softplus(r_raw + q_raw))."""
        (r_mean, r_raw), (q_mean, q_raw) = r, q
        return latent_params(np.add(r_mean[:n], q_mean[:n], dtype=np.float64),
                             np.add(r_raw[:n], q_raw[:n], dtype=np.float64))

    def _descend(self, l, d, prior, k):
        """Runs layer l's update with z = bucket centres; rows beyond len(k) use bucket K/2."""
        index = np.full(prior.mean.shape, self.grid.num_buckets // 2, np.int64)
        index[: len(k)] = k
        z = self.grid.centres(prior, index).astype(np.float32).reshape(self.batch_size, *self.latent_shape)
        return self._update[l](d, tf.constant(z))

    def _pixel_params(self, d, n):
        """(a, b) of the first n images' pixels (see `pixels.pixel_params`)."""
        return pixel_params(self._pixel_means(d).numpy()[:n], self.model.log_scale.numpy())

    # ------------------------------------------------------------ latent coding

    def _pop_latents(self, stack, prior, posterior, info):
        a, b = self.grid.standardize(prior, posterior)
        tables = []
        k = self.grid.coder.pop(stack, a, b, tables)
        info["latent_posterior"] += _information(tables)
        return k

    def _push_latents(self, stack, prior, posterior, k):
        a, b = self.grid.standardize(prior, posterior)
        self.grid.coder.push(stack, a, b, k)

    # ------------------------------------------------------------ one batch

    def _encode_batch(self, stack, images, info):
        n, m = len(images), len(images) * self.latents_per_image
        q = self._posterior_inputs(images)
        d = self._initial_state
        ks = [None] * self.num_layers
        for l in reversed(range(self.num_layers)):
            prior, r = self._layer_params(l, d)
            ks[l] = self._pop_latents(stack, _rows(prior, m), self._posterior(r, q[l], n), info)
            d = self._descend(l, d, prior, ks[l])
        lowest = stack.num_bits()  # after the pops, before the pushes: the batch's low point
        a, b = self._pixel_params(d, n)
        tables = []
        self.pixel_coder.push(stack, a, b, images.reshape(-1), tables)
        info["pixels"] += _information(tables)
        stack.push_uniform(np.concatenate(ks[::-1]), self.grid.num_buckets)  # k_1 pushed first, k_L on top
        info["latent_prior"] += self.num_layers * m * np.log2(self.grid.num_buckets)
        return lowest

    def _decode_batch(self, stack, n):
        m = n * self.latents_per_image
        ks = np.split(stack.pop_uniform(self.grid.num_buckets, self.num_layers * m), self.num_layers)[::-1]
        d = self._initial_state
        priors, rs = [None] * self.num_layers, [None] * self.num_layers
        for l in reversed(range(self.num_layers)):
            prior, rs[l] = self._layer_params(l, d)
            priors[l] = _rows(prior, m)
            d = self._descend(l, d, prior, ks[l])
        a, b = self._pixel_params(d, n)
        pixels = self.pixel_coder.pop(stack, a, b)
        images = pixels.astype(np.uint8).reshape(n, *self.image_shape)
        q = self._posterior_inputs(images)
        for l in range(self.num_layers):  # the reverse of the encoder's pops, L..1
            self._push_latents(stack, priors[l], self._posterior(rs[l], q[l], n), ks[l])
        return images

    # ------------------------------------------------------------ whole files

    def _batches(self, count, ramp):
        """(start, stop) of each batch: the ramp's sizes, then batch_size until count."""
        bounds, start = [], 0
        for size in ramp:
            bounds.append((start, start + int(size)))
            start += int(size)
        while start < count:
            bounds.append((start, min(start + self.batch_size, count)))
            start = bounds[-1][1]
        return bounds

    def initial_words(self):
        """Seed words enough for a full batch's pops (24 bits per popped symbol)."""
        digits = len(self.grid.radices)
        symbols = digits * self.num_layers * self.latents_per_image * self.batch_size
        return -(-ans.PRECISION * symbols // ans.WORD_BITS) + 2

    def _encode_all(self, stack, images, progress, info):
        """Codes every batch; returns the ramp's batch sizes.

        The ramp: a batch's pops are paid first by the bits pushed since the stack's low
        point and only then by untouched initial words. The first batch is one image;
        each next batch takes as many images as the bits above the low point pay for at
        the last batch's posterior bits per image, until batch_size is reached. So the
        initial bits are about one image's posterior information instead of a batch's.
        The ramp ends after MAX_RAMP_BATCHES batches (each runs the networks at the full
        batch shape), which bounds its cost for models whose net rate is tiny next to
        their posterior information.
        """
        ramp, start, count = [], 0, len(images)
        low, per_image = stack.num_bits(), None
        while start < count:
            if not self.ramp or (ramp and ramp[-1] == self.batch_size) or len(ramp) >= MAX_RAMP_BATCHES:
                break
            size = 1 if per_image is None else int((stack.num_bits() - low) // max(per_image, 1.0))
            size = min(max(size, 1), self.batch_size, count - start)
            before = stack.num_bits()
            lowest = self._encode_batch(stack, images[start:start + size], info)
            per_image, low = (before - lowest) / size, min(low, lowest)
            ramp.append(size)
            start += size
            progress(start)
        for start, stop in self._batches(count, ramp)[len(ramp):]:
            self._encode_batch(stack, images[start:stop], info)
            progress(stop)
        return ramp

    def encode_words(self, images, progress):
        seed_count = self.initial_words()
        for _ in range(_MAX_ATTEMPTS):
            seed = ans.seed_words(seed_count)
            if self.trace is not None:
                self.trace.clear()
            stack = ans.Stack(seed, trace=self.trace)
            info = {"pixels": 0.0, "latent_prior": 0.0, "latent_posterior": 0.0}
            try:
                ramp = self._encode_all(stack, images, progress, info)
            except ans.StackUnderflow:
                seed_count *= 4
                continue
            break
        else:
            raise RuntimeError("Bits-back coding kept running out of initial bits; this is a bug.")
        final = stack.words()
        common = min(len(final), len(seed))
        differs = np.flatnonzero(final[:common] != seed[:common])
        prefix = int(differs[0]) if differs.size else common
        file_params = {
            "keras_bdgm": __version__,
            "constriction": _constriction_version(),
            "ramp": ramp,
            "seed_words": int(seed_count),
            "seed_prefix_words": prefix,
            "initial_bits": ans.WORD_BITS * (seed_count - prefix),
        }
        return final[prefix:], file_params, file_params["initial_bits"], info

    def decode_words(self, words, count, file_params, progress):
        try:
            seed_count, prefix = int(file_params["seed_words"]), int(file_params["seed_prefix_words"])
            ramp = [int(size) for size in file_params["ramp"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"The file's codec parameters are incomplete: {file_params}.") from e
        if (not 2 <= seed_count or not 0 <= prefix <= seed_count or sum(ramp) > count
                or any(not 1 <= size <= self.batch_size for size in ramp)):
            raise ValueError(f"The file's codec parameters are invalid: {file_params}.")
        seed = ans.seed_words(seed_count)
        try:
            stack = ans.Stack(np.concatenate([seed[:prefix], words]), trace=self.trace)
        except ValueError as e:  # constriction: "ANS compressed data never ends in a zero word"
            raise ValueError(f"The compressed data is corrupt: {e}") from e
        batches = self._batches(count, ramp)
        images = np.empty((count, *self.image_shape), np.uint8)
        done = 0
        try:
            for start, stop in reversed(batches):
                images[start:stop] = self._decode_batch(stack, stop - start)
                done += stop - start
                progress(done)
        except ans.StackUnderflow as e:
            raise ValueError("The compressed data is corrupt: it ran out of bits while decoding.") from e
        final = stack.words()
        if len(final) != len(seed) or np.any(final != seed):
            other = "".join(
                f" or with {name} {written} (this is {current})"
                for name, written, current in (
                    ("keras_bdgm", file_params.get("keras_bdgm"), __version__),
                    ("constriction", file_params.get("constriction"), _constriction_version()))
                if written not in (None, current))
            raise ValueError(
                "Decoding did not end on the initial stack, so the images may be wrong: the file is corrupt, "
                "or it was encoded on a machine whose network arithmetic differs from this one "
                "(another CPU architecture or TensorFlow build, or another TF_ENABLE_ONEDNN_OPTS setting: "
                f"keras_bdgm before 0.3.1 used Eigen's kernels on CPUs without AVX-512){other}."
            )
        return images
