"""Where a launcher run trains: `tf.distribute` or `keras.distribution`.

- tf_keras, and Keras 3 on TensorFlow: the `tf.distribute` strategy of
  --strategy (default, mirrored, multi_worker from TF_CONFIG, tpu).
- Keras 3 on JAX: `keras.distribution.DataParallel` over every device of
  the job (all local devices; with --strategy=multi_worker, every host's,
  after `keras.distribution.initialize` starts JAX's distributed runtime with
  --coordinator_address, --num_processes and --process_id). Each process
  feeds its own slice of every global batch.
- Keras 3 on PyTorch: one device (--strategy=default only).

Imports neither TensorFlow nor JAX until a placement needs it.

Example:

>>> place = placement(f, "jax")
>>> with place.scope():
...   model = build(...)
"""

import contextlib
import dataclasses
import os

from absl import app

from launchers import lazy_imports

tf = lazy_imports.TENSORFLOW


def make_strategy(f):
  """The `tf.distribute` strategy of --strategy."""
  if f.strategy == "mirrored":
    return tf.distribute.MirroredStrategy()
  if f.strategy == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if f.strategy == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=f.tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  return tf.distribute.get_strategy()


@dataclasses.dataclass
class Placement:
  """How a Keras 3 run is spread over devices and processes.

  Attributes:
    replicas: devices a global batch is split over.
    process_index / num_processes: this process among the job's (JAX hosts).
    strategy: the `tf.distribute` strategy (TensorFlow backend), else None.
  """

  replicas: int = 1
  process_index: int = 0
  num_processes: int = 1
  strategy: object = None

  @property
  def is_chief(self):
    """Whether this process writes the run's checkpoints and results."""
    if self.strategy is not None:
      resolver = getattr(self.strategy, "cluster_resolver", None)
      task_type = getattr(resolver, "task_type", None)
      task_id = getattr(resolver, "task_id", None)
      return (task_type in (None, "chief") or
              (task_type == "worker" and task_id == 0 and
               "chief" not in resolver.cluster_spec().as_dict()))
    return self.process_index == 0

  @property
  def name(self):
    """This process's name in a multi-process job (for its scratch dir)."""
    if self.strategy is not None:
      resolver = getattr(self.strategy, "cluster_resolver", None)
      return (f"{getattr(resolver, 'task_type', None)}_"
              f"{getattr(resolver, 'task_id', None)}")
    return f"process_{self.process_index}"

  def scope(self):
    """The context to build and compile the model in."""
    if self.strategy is not None:
      return self.strategy.scope()
    return contextlib.nullcontext()

  def local_batch(self, global_batch):
    """(start, stop) of this process's rows in a global batch."""
    per = global_batch // self.num_processes
    return self.process_index * per, (self.process_index + 1) * per


def placement(f, backend):
  """Sets up the devices of a Keras 3 run as --strategy says.

  On JAX it sets the global `keras.distribution` (DataParallel over all
  devices) when there is more than one device.

  Args:
    f: the parsed flags.
    backend: Keras' backend ("jax", "tensorflow", "torch").

  Returns:
    A `Placement`.

  Raises:
    app.UsageError: --strategy cannot run on this backend.
  """
  if backend == "tensorflow":
    if f.strategy == "multi_worker":
      raise app.UsageError(
          "--strategy=multi_worker: Keras 3's TensorFlow backend fails in "
          "fit under MultiWorkerMirroredStrategy (PerReplica inputs, "
          "keras-team/keras#20585): use KERAS_BACKEND=jax (several hosts "
          "through keras.distribution), or --frontend=tf_keras.")
    strategy = make_strategy(f)
    return Placement(replicas=strategy.num_replicas_in_sync,
                     strategy=strategy)
  if backend == "torch":
    if f.strategy != "default":
      raise app.UsageError(
          f"--strategy={f.strategy} is not available on Keras' PyTorch "
          "backend: use KERAS_BACKEND=jax (keras.distribution) or tensorflow "
          "(tf.distribute), or --strategy=default.")
    return Placement()
  import jax  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  if f.strategy == "multi_worker":
    if not f.coordinator_address or f.num_processes < 1:
      raise app.UsageError(
          "--strategy=multi_worker on JAX needs --coordinator_address "
          "(host:port of process 0), --num_processes and --process_id.")
    keras.distribution.initialize(f.coordinator_address, f.num_processes,
                                  f.process_id)
  devices = jax.devices()
  if len(devices) > 1:
    distribution = keras.distribution.DataParallel(devices=devices)
    # Each process feeds its own slice of every global batch (`datasets`).
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
  return Placement(replicas=len(devices), process_index=jax.process_index(),
                   num_processes=jax.process_count())


def worker_dir(model_dir, place):
  """(is_chief, directory this process writes to): a non-chief process of
  a multi-process job writes under <model_dir>/workers/<its name>."""
  if place.is_chief:
    return True, model_dir
  return False, os.path.join(model_dir, "workers", place.name)


def check_batch(f, replicas):
  """Stops before training when the global batch does not split evenly.

  Raises:
    app.UsageError: --batch_size is not a multiple of `replicas`.
  """
  if f.batch_size % replicas:
    raise app.UsageError(
        f"--batch_size={f.batch_size} is not divisible by the "
        f"{replicas} replicas: use a multiple of {replicas}.")


def check_distribution(f, strategy):
  """Stops before training when the batch or --jit cannot run on the
  `tf.distribute` `strategy`.

  Raises:
    app.UsageError: the batch does not split over the replicas, or --jit
      asks for XLA on several CPU replicas.
  """
  replicas = strategy.num_replicas_in_sync
  check_batch(f, replicas)
  if (f.jit and replicas > 1 and not tf.config.list_logical_devices("GPU")
      and f.strategy != "tpu"):
    raise app.UsageError(
        f"--jit with {replicas} CPU replicas fails in TensorFlow (XLA has no "
        "CPU collectives, b/194942685): pass --nojit (the mask updates stay "
        "XLA-compiled), or run on GPUs/TPUs.")
