"""The clipped update that is skipped when the gradient is non-finite or huge, under any
`tf.distribute` strategy (`GenerativeModel.train_step` calls it).

Example:

    grad_norm, skipped = apply_gradients_or_skip(optimizer, grads, variables,
                                                 clip_norm=1.0, skip_threshold=100.0)
"""

import tensorflow as tf


class _NoUnwrap:
    """Keeps distributed variables wrapped when passed through `merge_call`."""

    def __init__(self, value):
        self.value = value


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
    clipped, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)
    build_optimizer(optimizer, variables)

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
