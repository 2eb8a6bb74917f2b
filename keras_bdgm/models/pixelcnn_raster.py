"""A PixelCNN evaluated pixel by pixel in raster order, computing only what each pixel needs.

Decoding an autoregressive model is sequential: pixel (i, j) can be decoded only once every
pixel before it is known. Running the whole network once per pixel costs H * W full passes;
`RasterDecoder` instead caches each layer's activations and computes, per pixel, only the
new position (Ramachandran et al. [1]), so a whole image costs about one full pass plus the
per-step overhead. For the PixelCNN's two streams (`keras_bdgm.models.pixelcnn`):

* the down stream u_b (b = 0..B) at row i depends only on rows above i: at the start of
  row i, each of its blocks computes row i alone from the two rows i - 1, i of its input
  (`GatedResidualBlock.last_row`; the row above is cached), for the whole width at once;
* the down-right stream ul_b at (i, j) reads its input at rows i - 1, i and columns
  j - 1, j (a 2x2 causal conv) and the down stream at (i, j): per pixel, each block is run
  on that 2x2 patch, with the row above cached and the left neighbour kept from the
  previous step; away from the first row and column only the patch's last position is
  computed (`GatedResidualBlock.last_position`), at the borders the block runs on the
  patch with its own causal padding and its output is read at the last position.

The layers are the model's own, called on patches; their causal padding handles the image
borders (a patch at row 0 or column 0 has one row or column), so every number is the
model's up to float rounding (the tests compare against `pixel_params`).

`params()` is a generator: it yields (i, j, (logits, means, log_scales)) for each pixel in
raster order, [n, K] float32 numpy each, and takes the pixel's uint8 values [n] back
through `send` before computing the next one. An encoder sends the image's pixels and a
decoder the pixels it decoded; both then run exactly the same computations on the same
inputs, so they see bit-identical parameters.

#### Examples

    decoder = RasterDecoder(model, batch_size=64)
    steps = decoder.params()
    i, j, params = next(steps)
    while True:
        values = choose(params)                    # uint8 [64]: decode, or the image's pixels
        try:
            i, j, params = steps.send(values)
        except StopIteration:
            break

#### References
[1] Ramachandran, Le Paine, Khorrami, Babaeizadeh, Chang, Zhang, Hasegawa-Johnson,
    Campbell, Huang. Fast Generation for Convolutional Autoregressive Models. 2017.
    https://arxiv.org/abs/1704.06001
"""

import numpy as np
import tensorflow as tf

from keras_bdgm.models.pixelcnn import MIN_LOG_SCALE


class RasterDecoder:
    """Pixel-by-pixel evaluation of a `PixelCNN` for batches of `batch_size` images.

    Args:
      model: a `keras_bdgm.models.PixelCNN`.
      batch_size: n, the images evaluated together (every call uses this shape, so each
        compiled step is traced once).
    """

    def __init__(self, model, batch_size):
        self.model = model
        self.n = int(batch_size)
        self.height, self.width, _ = (int(d) for d in model.image_shape)
        self.blocks = len(model.down_blocks)
        self.channels = int(model.config["width"])
        self._row = tf.function(self._row_step, reduce_retracing=True, autograph=False)
        self._pixel = tf.function(self._pixel_step, reduce_retracing=True, autograph=False)

    # ------------------------------------------------------------------ compiled steps

    def _row_step(self, x_above, u_above):
        """The down stream's row i and the down-right input's row part.

        Args:
          x_above: x' (scaled pixels and the ones channel) of rows i - 2, i - 1 ([n, 2, W, 2];
            [n, 1, W, 2] for i = 1), or None for i = 0.
          u_above: [B + 1, n, W, C], the down stream's row i - 1, or None for i = 0.

        Returns:
          (u_row [B + 1, n, W, C], ul_row [n, W, C]): u_b's row i and down_shift of the 1x3
          input conv, the row-wise half of ul_0.
        """
        model = self.model
        shape = [self.n, 1, self.width, self.channels]
        if x_above is None:
            u = tf.zeros(shape)
            ul_row = tf.zeros(shape[:1] + shape[2:])
        else:
            u = model.in_down(x_above)[:, -1:]
            ul_row = model.in_down_row(x_above[:, -1:])[:, 0]
        rows = [u]
        for b, block in enumerate(model.down_blocks):
            if u_above is None:  # row 0: the block's own causal padding
                u = block(u)
            else:  # rows i - 1, i in, only row i computed
                u = block.last_row(tf.concat([u_above[b][:, None], u], axis=1))
            rows.append(u)
        return tf.stack([r[:, 0] for r in rows]), ul_row

    def _pixel_step(self, j, x_rows, ul_row, u_rows, ul_above, ul_left):
        """Every stream's value at (i, j) and the pixel's mixture parameters.

        Args:
          j: the column (int32 scalar).
          x_rows: x' of rows i - 1, i ([n, 2, W, 2]; [n, 1, W, 2] for i = 0); row i holds
            the pixels before (i, j).
          ul_row: [n, W, C], `_row_step`'s ul_row of row i.
          u_rows: [B + 1, n, r, W, C], the down stream's rows i - 1 (if i > 0) and i.
          ul_above: [B + 1, n, W, C], the down-right stream's row i - 1, or None for i = 0.
          ul_left: [B + 1, n, C], the down-right stream at (i, j - 1), or None for j = 0.

        Returns:
          (ul_here [B + 1, n, C], logits, means, log_scales [n, K]).
        """
        model = self.model
        first_column = ul_left is None
        cols = 1 if first_column else 2
        start = j if first_column else j - 1
        rows = x_rows.shape[1]
        if first_column:
            ul_0 = ul_row[:, j]
        else:  # right_shift of the 2x1 input conv: its output at (i, j - 1)
            patch = tf.slice(x_rows, [0, 0, j - 1, 0], [self.n, rows, 1, 2])
            ul_0 = ul_row[:, j] + model.in_down_right(patch)[:, -1, 0]
        here = [ul_0]
        interior = not first_column and ul_above is not None  # the 2x2 window needs no padding
        for b, block in enumerate(model.down_right_blocks):
            row_i = here[b][:, None, :] if first_column else tf.stack([ul_left[b], here[b]], axis=1)
            patch = row_i[:, None]                                      # [n, 1, cols, C]
            if ul_above is not None:
                above = tf.slice(ul_above[b], [0, start, 0], [self.n, cols, self.channels])
                patch = tf.concat([above[:, None], patch], axis=1)       # [n, 2, cols, C]
            if interior:  # only (i, j) itself: a quarter of the work
                context = tf.slice(u_rows[b + 1], [0, rows - 1, j, 0], [self.n, 1, 1, self.channels])
                here.append(block.last_position(patch, context=context)[:, 0, 0])
            else:  # the first row or column: the block's own causal padding
                context = tf.slice(u_rows[b + 1], [0, 0, start, 0], [self.n, rows, cols, self.channels])
                here.append(block(patch, context=context)[:, -1, -1])
        out = model.out_conv(tf.nn.elu(here[-1])[:, None, None, :])[:, 0, 0]
        logits, means, log_scales = tf.split(out, 3, axis=-1)
        return tf.stack(here), logits, means, tf.maximum(log_scales, MIN_LOG_SCALE)

    # ------------------------------------------------------------------ the driver

    def params(self):
        """Generator of (i, j, (logits, means, log_scales)) in raster order; send each
        pixel's uint8 values [n] back (see the module docstring)."""
        n, h, w = self.n, self.height, self.width
        x = np.zeros((n, h, w, 2), np.float32)  # x' = [pixel / 127.5 - 1, 1] of known pixels
        u_above = ul_above = None
        for i in range(h):
            above = None if i == 0 else tf.constant(x[:, max(0, i - 2):i])
            u_row, ul_row = self._row(above, u_above)
            u_rows = u_row[:, :, None] if i == 0 else tf.stack([u_above, u_row], axis=2)
            ul_left = None
            ul_cols = []
            for j in range(w):
                x_rows = tf.constant(x[:, max(0, i - 1):i + 1])
                ul_here, logits, means, log_scales = self._pixel(
                    tf.constant(j, tf.int32), x_rows, ul_row, u_rows, ul_above, ul_left)
                values = yield i, j, (logits.numpy(), means.numpy(), log_scales.numpy())
                values = np.asarray(values)
                if values.shape != (n,):
                    raise ValueError(f"Send {n} pixel values for ({i}, {j}), got shape {values.shape}.")
                x[:, i, j, 0] = values.astype(np.float32) / 127.5 - 1.0
                x[:, i, j, 1] = 1.0
                ul_left = ul_here
                ul_cols.append(ul_here)
            u_above = u_row
            ul_above = tf.stack(ul_cols, axis=2)  # [B + 1, n, W, C]

    def run(self, images):
        """The parameters of every pixel of `images` (uint8 [n, H, W, 1]) through the raster
        path: (logits, means, log_scales), float32 [n, H, W, K] each."""
        images = np.asarray(images)
        out = [np.zeros((self.n, self.height, self.width, self.model.num_components), np.float32)
               for _ in range(3)]
        steps = self.params()
        i, j, params = next(steps)
        while True:
            for target, value in zip(out, params):
                target[:, i, j] = value
            try:
                i, j, params = steps.send(images[:, i, j, 0])
            except StopIteration:
                return tuple(out)
