"""`tf.distribute` strategies by name, for `train` and examples/train.py's --strategy.

    strategy = get_strategy("mirrored")   # every local GPU, else every logical CPU device
    with strategy.scope():
        model = build_model(...)

"multi_worker" reads the cluster from the TF_CONFIG environment variable (README.md,
"Scaling out"); "tpu" connects to the TPU named by `tpu`.

#### Multi-worker training

* Chief: the task of type "chief", or "worker" 0 when the cluster has no chief
  (`is_chief`, `task_role`). Only the chief writes the run's files; the other workers take
  part in every collective step of `fit` and exit when the chief is done.
* Collective timeout: every all-reduce of a multi-worker step gives up after
  `collective_timeout_s()` seconds (env KERAS_BDGM_COLLECTIVE_TIMEOUT_S, default
  `DEFAULT_COLLECTIVE_TIMEOUT_S`), so a worker that hangs cannot hang its peers forever. A
  worker that dies is found sooner: TensorFlow's coordination service misses its heartbeats
  (about 10 s) and aborts the collectives. Either way the survivors raise `WorkerLostError`
  (`worker_lost`).
* `KERAS_BDGM_LOGICAL_CPUS=N` splits a CPU-only machine into N logical devices for
  "mirrored", so one process can stand in for N single-CPU workers (the same replicas, hence
  the same per-replica noise seeds and batches; tests/test_multi_worker.py).
"""

import json
import os

import tensorflow as tf

from keras_bdgm.runs.errors import ConfigError, UserError
from keras_bdgm.runs.recipes import check_choice

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
LOGICAL_CPUS_ENV = "KERAS_BDGM_LOGICAL_CPUS"
COLLECTIVE_TIMEOUT_ENV = "KERAS_BDGM_COLLECTIVE_TIMEOUT_S"
# Long enough for what the chief does alone between two steps (sample grids, validation
# curve, checkpoints) and for the slowest worker's first trace of the train step.
DEFAULT_COLLECTIVE_TIMEOUT_S = 600.0


class WorkerLostError(UserError, RuntimeError):
    """A multi-worker run lost a peer (it died, hung, or stopped on an error of its own)."""


def _positive_number(env, default, cast):
    raw = os.environ.get(env)
    if raw in (None, ""):
        return default
    try:
        value = cast(raw)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise ConfigError(f"{env}={raw!r} must be a number > 0.")
    return value


def collective_timeout_s():
    """Seconds a multi-worker collective waits for its peers (KERAS_BDGM_COLLECTIVE_TIMEOUT_S)."""
    return _positive_number(COLLECTIVE_TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT_S, float)


def _split_cpu():
    """Splits the CPU into KERAS_BDGM_LOGICAL_CPUS logical devices (if set)."""
    count = _positive_number(LOGICAL_CPUS_ENV, None, int)
    if count is None:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as err:  # TensorFlow already started
        raise ConfigError(f"{LOGICAL_CPUS_ENV}={count} came too late: {err}") from None


def task_role(cluster_resolver=None):
    """(multi_worker, chief) for this process, from TF_CONFIG or `cluster_resolver`.

    multi_worker: the cluster has more than one task of type chief/worker. chief: this task
    writes the run's files: type "chief", or "worker" 0 when there is no chief; True
    outside a multi-worker cluster. Reads no TensorFlow state (safe before the runtime starts).
    """
    resolver = cluster_resolver or tf.distribute.cluster_resolver.TFConfigClusterResolver()
    jobs = resolver.cluster_spec().as_dict()
    tasks = sum(len(jobs.get(job, ())) for job in ("chief", "worker"))
    if tasks <= 1:
        return False, True
    task_type, task_id = resolver.task_type, resolver.task_id
    if "chief" in jobs:
        return True, task_type == "chief"
    return True, task_type == "worker" and int(task_id or 0) == 0


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and task_role(strategy.cluster_resolver)[0]


def is_chief(strategy):
    """Whether this process writes the run's files under `strategy` (module docstring)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return task_role(strategy.cluster_resolver)[1]


def task_name():
    """"chief:0", "worker:1", ... for this process (from TF_CONFIG), or "local"."""
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    return f"{task['type']}:{task.get('index', 0)}" if "type" in task else "local"


def worker_lost(err):
    """A WorkerLostError for a collective that failed with `err` (a tf.errors.OpError)."""
    reason = "timed out" if isinstance(err, tf.errors.DeadlineExceededError) else "was aborted"
    detail = " ".join(str(getattr(err, "message", err)).split())
    unhealthy = detail.find("unhealthy")
    detail = detail[max(0, unhealthy - 20):][:300] if unhealthy >= 0 else detail[:300]
    return WorkerLostError(
        f"Multi-worker training stopped on {task_name()}: a collective with the other workers "
        f"{reason} (a worker died, hung for more than {collective_timeout_s():g} s, or stopped on "
        f"an error; TensorFlow says: {detail}). The state after the last finished epoch is kept; "
        "start every worker again with the same flags to resume."
    )


# The errors a collective raises when a peer is gone or too slow.
COLLECTIVE_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                     tf.errors.CancelledError, tf.errors.InternalError)


def barrier(strategy, timeout_s=None, raise_errors=True):
    """Returns when every worker of multi-worker `strategy` has called it (a host all-reduce).

    timeout_s: None, the strategy's collective timeout; 0, wait as long as it takes (a
    worker that dies is still found by TensorFlow's heartbeats). A failed barrier raises
    WorkerLostError, or is ignored with raise_errors=False.
    """
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)

    def one():
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, 1.0, options=options)

    try:  # in a tf.function: MultiWorkerMirroredStrategy warns about eager `run`
        for tensor in strategy.experimental_local_results(tf.function(lambda: strategy.run(one))()):
            tensor.numpy()
    except COLLECTIVE_ERRORS as err:
        if raise_errors:
            raise worker_lost(err) from None


def get_strategy(name="default", tpu=None):
    """A `tf.distribute` strategy by name: default | mirrored | multi_worker | tpu."""
    check_choice("strategy", name, STRATEGIES)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        _split_cpu()
        if not tf.config.list_logical_devices("GPU"):
            # Without GPUs, mirror over every logical CPU device (one unless configured).
            return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout_s())
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)  # reads TF_CONFIG
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
        raise ValueError(f"No TPU could be reached ({e}); pass --tpu=<name or grpc address> on a TPU host.") from e
    return tf.distribute.TPUStrategy(resolver)
