"""The clipped update that is skipped when the gradient is non-finite or huge, under any
`tf.distribute` strategy (`GenerativeModel.train_step` calls it).

With g the gradients, n = ||g|| their global norm, c `clip_norm` and T `skip_threshold`:

    ok = isfinite(n) and n <= T
    update with g * c * min(1/n, 1/c)   if ok  (tf.clip_by_global_norm's scaling)
    leave every weight and slot as it is, count the step   otherwise

Keras' legacy Adam (the optimizer runs use) skips without a conditional: its own update
runs with coefficients that make it the identity where not ok (beta_1 = beta_2 = 1, so
m and v keep their values, and learning rate 0), on gradients zeroed by `multiply_no_nan`
(which gives 0 even for inf or NaN). Where ok, the coefficients and gradients are exactly
the conditional's, so the numbers are the same; a traced step holds one update instead of
a `tf.cond` with two branch functions over every variable, slot and gradient (about 1 s
less tracing for Flow++'s 286 variables). Other optimizers run their update in `tf.cond`.

A step whose loss is NaN or inf has a non-finite gradient, so its update is skipped; its
loss is left out of the epoch's running means too (`StepMean.update_finite`), so one bad batch is counted in `skipped_steps` and does not
turn the epoch's `bits_per_dim` into NaN.

Example:

    grad_norm, skipped = apply_gradients_or_skip(optimizer, grads, variables,
                                                 clip_norm=1.0, skip_threshold=100.0)
"""

import tensorflow as tf


class _NoUnwrap:
    """Keeps distributed variables wrapped when passed through `merge_call`."""

    def __init__(self, value):
        self.value = value


class StepMean(tf.keras.metrics.Mean):
    """`tf.keras.metrics.Mean` of the train steps' finite values: `update_finite(value)` adds
    a finite value and leaves out a NaN or inf one (its step's update was skipped), and the
    result is NaN, not Keras' 0, while nothing has been added.

    Example:

        mean = StepMean("bits_per_dim")
        mean.update_finite(tf.constant(float("nan")))
        mean.result()  # nan: no finite loss yet
        mean.update_finite(tf.constant(3.0))
        mean.result()  # 3.0
    """

    def update_finite(self, value):
        """Adds `value` with weight 1 where it is finite, else weight 0 (as 0, since 0 x NaN
        would still be NaN)."""
        finite = tf.math.is_finite(value)
        return self.update_state(tf.where(finite, value, tf.zeros_like(value)),
                                 sample_weight=tf.cast(finite, self.dtype))

    @tf.autograph.experimental.do_not_convert  # no tensor control flow: nothing to convert
    def result(self):
        return tf.where(self.count > 0, tf.math.divide_no_nan(self.total, self.count),
                        tf.constant(float("nan"), self.dtype))


def _is_legacy(optimizer):
    return isinstance(optimizer, tf.keras.optimizers.legacy.Optimizer)


def build_optimizer(optimizer, variables):
    """Creates optimizer state outside the conditional update (cond cannot create it)."""
    with tf.init_scope():
        if _is_legacy(optimizer):
            optimizer._create_all_weights(variables)  # pylint: disable=protected-access
        else:
            optimizer.build(variables)


def _apply(optimizer, grads, variables):
    pairs = list(zip(grads, variables))
    if _is_legacy(optimizer):
        optimizer.apply_gradients(pairs, experimental_aggregate_gradients=False)
    else:
        optimizer.apply_gradients(pairs, skip_gradients_aggregation=True)


def _skips_by_coefficients(optimizer, grads):
    """Whether `optimizer` is Keras' legacy Adam, unmodified, and `grads` are dense."""
    adam = tf.keras.optimizers.legacy.Adam
    return (
        isinstance(optimizer, adam)
        and all(getattr(type(optimizer), name) is getattr(adam, name)
                for name in ("_prepare", "_prepare_local", "_resource_apply_dense", "_resource_apply_sparse"))
        and all(isinstance(g, tf.Tensor) for g in grads)
    )


# Legacy Adam's coefficients (`_prepare_local`) and their values in a skipped step.
_IDENTITY_COEFFICIENTS = {"beta_1_t": 1.0, "beta_2_t": 1.0, "one_minus_beta_1_t": 0.0,
                          "one_minus_beta_2_t": 0.0, "lr_t": 0.0, "lr": 0.0}


def _apply_or_identity(optimizer, grads, variables, ok):
    """Legacy Adam's `apply_gradients`, the identity on weights and slots where not `ok`."""
    prepare = optimizer._prepare  # pylint: disable=protected-access

    def prepare_or_identity(var_list):
        apply_state = prepare(var_list)
        for coefficients in apply_state.values():
            for name, identity in _IDENTITY_COEFFICIENTS.items():
                value = coefficients[name]
                coefficients[name] = tf.where(ok, value, tf.constant(identity, value.dtype))
        return apply_state

    own = vars(optimizer).get("_prepare")
    optimizer._prepare = prepare_or_identity  # pylint: disable=protected-access
    try:
        _apply(optimizer, grads, variables)
    finally:
        if own is None:
            del optimizer._prepare  # the class's method again
        else:
            optimizer._prepare = own


def apply_gradients_or_skip(optimizer, grads, variables, clip_norm, skip_threshold):
    """Clips `grads` to global norm `clip_norm` and applies them, unless their norm is
    non-finite or above `skip_threshold`. Call in replica context (e.g. in train_step).

    Returns:
      (grad_norm, skipped): the pre-clip global norm and 1.0 if the step was skipped.
    """
    strategy = tf.distribute.get_strategy()
    replica_ctx = tf.distribute.get_replica_context()
    if strategy.num_replicas_in_sync > 1:
        grads = replica_ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    norm = tf.linalg.global_norm(grads)
    ok = tf.math.is_finite(norm) & (norm <= skip_threshold)
    build_optimizer(optimizer, variables)
    if _skips_by_coefficients(optimizer, grads):
        clip_norm = tf.cast(clip_norm, norm.dtype)
        scale = tf.where(ok, clip_norm * tf.minimum(1.0 / norm, 1.0 / clip_norm), tf.zeros([], norm.dtype))
        clipped = [tf.math.multiply_no_nan(g, tf.cast(scale, g.dtype)) for g in grads]
        _apply_or_identity(optimizer, clipped, variables, ok)
        return norm, 1.0 - tf.cast(ok, tf.float32)
    clipped, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)

    def skip():
        optimizer.iterations.assign_add(1, read_value=False)

    if tf.__internal__.distribute.strategy_supports_no_merge_call() or (
        strategy.num_replicas_in_sync == 1 and not tf.distribute.has_strategy()
    ):
        tf.__internal__.smart_cond.smart_cond(
            ok, lambda: _apply(optimizer, clipped, variables), skip
        )
    else:

        def cross_replica(distribution, grads, wrapped):
            def apply():
                distribution.extended.call_for_each_replica(
                    lambda g, w: _apply(optimizer, g, w.value), args=(grads, wrapped)
                )

            tf.__internal__.smart_cond.smart_cond(ok, apply, skip)

        replica_ctx.merge_call(cross_replica, args=(clipped, _NoUnwrap(variables)))
    return norm, 1.0 - tf.cast(ok, tf.float32)
