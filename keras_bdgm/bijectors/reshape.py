"""Volume-preserving rearrangements of image events [H, W, C], built from TFP bijectors.

A coupling acts on a pair of halves. Here a pair is one tensor whose channels hold the
first half then the second half ([..., :C'] and [..., C':]), so every split is a
rearrangement into that layout and every merge is its inverse (`tfb.Invert`):

* `stripe_split`: alternate columns (even, odd) become the two halves,
  [H, W, C] -> [H, W/2, 2C]. (Flow++'s stripe split takes every other column.)
* `channel_split`: the first and second half of the channels; already in pair layout,
  so it is the identity.
* `squeeze`: space-to-depth, [H, W, C] -> [H/2, W/2, 4C]; channel index
  (2 * dy + dx) * C + c, as `tf.nn.space_to_depth`.
* `swap_halves`: exchanges the halves (`SwapHalves`: a split and a concat, whose gradients
  are a concat and a split, where `tfb.Permute`'s gather has a gradient of some fifty ops).

All have log|det| = 0.

#### Examples

    split = stripe_split((28, 28, 1))            # [N, 28, 28, 1] -> [N, 28, 14, 2]
    merge = tfb.Invert(split)
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors


def _shape(event_shape, name):
    shape = tuple(int(d) for d in event_shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"{name} needs an event shape (H, W, C), got {event_shape!r}.")
    return shape


def stripe_split(event_shape, name="stripe_split"):
    """[H, W, C] -> [H, W/2, 2C]: even columns to channels [:C], odd ones to [C:]."""
    h, w, c = _shape(event_shape, "stripe_split")
    if w % 2:
        raise ValueError(f"stripe_split needs an even width, got event shape {event_shape!r}.")
    return tfb.Reshape(event_shape_out=(h, w // 2, 2 * c), event_shape_in=(h, w, c), name=name)


def channel_split(name="channel_split"):
    """Channels [:C/2] and [C/2:] as the two halves: the identity in pair layout."""
    return tfb.Identity(name=name)


def squeeze(event_shape, name="squeeze"):
    """Space-to-depth [H, W, C] -> [H/2, W/2, 4C] (tf.nn.space_to_depth's channel order)."""
    h, w, c = _shape(event_shape, "squeeze")
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs even height and width, got event shape {event_shape!r}.")
    return tfb.Chain(
        [
            tfb.Reshape(event_shape_out=(h // 2, w // 2, 4 * c), event_shape_in=(h // 2, w // 2, 2, 2, c)),
            tfb.Transpose(perm=[0, 2, 1, 3, 4]),
            tfb.Reshape(event_shape_out=(h // 2, 2, w // 2, 2, c), event_shape_in=(h, w, c)),
        ],
        name=name,
    )


class SwapHalves(tfb.Bijector):
    """y = [x[..., C/2:], x[..., :C/2]] on the channel axis of size C = `channels`; its own inverse.

    The permutation `tfb.Permute` would apply, as one split and one concat.
    """

    def __init__(self, channels, validate_args=False, name="swap_halves"):
        parameters = dict(locals())
        self.channels = int(channels)
        if self.channels % 2:
            raise ValueError(f"swap_halves needs an even channel count, got {channels}.")
        super().__init__(forward_min_event_ndims=1, is_constant_jacobian=True, validate_args=validate_args,
                         parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    def _swap(self, x):
        if x.shape[-1] is not None and x.shape[-1] != self.channels:
            raise ValueError(f"{self.name} swaps the halves of {self.channels} channels; got shape {x.shape}.")
        first, second = tf.split(x, 2, axis=-1)
        return tf.concat([second, first], axis=-1)

    _forward = _inverse = _swap

    def _forward_log_det_jacobian(self, x):
        return tf.zeros([], dtype=x.dtype)


def swap_halves(channels, name="swap_halves"):
    """Exchanges channels [:C/2] and [C/2:] of a pair with C = `channels` (a `SwapHalves`)."""
    return SwapHalves(channels, name=name)
