"""What the benchmarks share: the variants they compare and a step timer.

A variant is the same network trained three ways, each compiled with
`jit_compile` as the benchmark says:
- "dense": plain tf_keras.
- "tfmot": TF-MOT's `prune_low_magnitude` with `ConstantSparsity` (mask
  updated in the graph every `update_interval` steps) and its
  `UpdatePruningStep` callback.
- "itop": `itop_tf.sparsify` (ERK, RigL growth unless told otherwise) and
  `itop_tf.ITOPCallback`, updating every `update_interval` steps.

`StepTimer` runs a model's Keras train function one step at a time under its
callbacks exactly as `model.fit` does (batch-begin hooks, step, batch-end
hooks) and returns the wall time of each step, synchronised on its loss.

Example:

>>> v = make_variant("itop", lambda: models.build("resnet20_cifar",
...                  (32, 32, 3), 10), sparsity=0.9, update_interval=10)
>>> timer = StepTimer(v, batch_size=128)
>>> times = timer.run(10)   # the 10th step ends with a mask update
"""

# The annotations name tf_keras classes: not evaluated, not imported.
from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Callable, List

from absl import app
from absl import flags
from absl import logging
import itop_tf
import numpy as np

from launchers import launcher_flags
from launchers import lazy_imports
from launchers import models

# Imported where the tf_keras variants use them: the Keras 3 benchmarks
# run on JAX and PyTorch hosts without TensorFlow.
tf = lazy_imports.TENSORFLOW
tfmot = lazy_imports.TFMOT
keras = lazy_imports.TF_KERAS

VARIANTS = ("dense", "tfmot", "itop")

NETWORKS = {
    # name: (launchers.models name, input shape from --image_size, classes)
    "lenet_300_100": ("lenet_300_100", lambda size: (28, 28, 1), 10),
    "resnet20": ("resnet20_cifar", lambda size: (32, 32, 3), 10),
    "resnet50": ("resnet50", lambda size: (size, size, 3), 1000),
}


def define_network_flags(flag_values):
  """--models, --batch_size, --resnet50_batch_size, --image_size."""
  define = launcher_flags.flag_definer(flag_values)
  define("list", "models", ["resnet20", "resnet50"],
         f"Networks, of {sorted(NETWORKS)}.")
  define("integer", "batch_size", 128, "Batch size of the networks but "
         "ResNet-50.")
  define("integer", "resnet50_batch_size", 32, "ResNet-50 batch size.")
  define("integer", "image_size", 64, "ResNet-50 image size (224 in the "
         "paper; smaller keeps a CPU run short).")
  flags.register_validator(
      "models", lambda names: not set(names) - set(NETWORKS),
      f"--models must be some of {sorted(NETWORKS)}.", flag_values=flag_values)


def input_shape(name, f):
  """The input shape of network `name` under flags `f` (no batch axis)."""
  return NETWORKS[name][1](f.image_size)


def network(name, f):
  """(build function, batch size) of network `name` under flags `f`."""
  model_name, _, classes = NETWORKS[name]
  shape = input_shape(name, f)
  batch = f.resnet50_batch_size if name == "resnet50" else f.batch_size
  return (lambda: models.build(model_name, shape, classes)), batch


def keras_of(frontend):
  """The Keras a benchmark's --frontend names: tf_keras, or Keras 3.

  Args:
    frontend: "tf_keras", or "keras3" (on the backend KERAS_BACKEND names).

  Returns:
    The `tf_keras` or `keras` module.
  """
  if frontend == "tf_keras":
    return keras.load()
  import keras as keras3  # pylint: disable=g-import-not-at-top
  return keras3


def main(define_flags, run):
  """Script entry point: defines the flags, then runs `run(FLAGS)` quietly."""
  define_flags()

  def _main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    run(flags.FLAGS)

  app.run(_main)


@dataclasses.dataclass
class Variant:
  """A compiled model, the callbacks `fit` would run, and which it is."""
  kind: str
  model: keras.Model
  callbacks: List[keras.callbacks.Callback]
  update_interval: int

  def is_update_step(self, step_before):
    """Whether the step starting at optimizer step `step_before` updates.

    Both sparse variants update in (TF-MOT) or right after (itop_tf) the
    step that brings the optimizer step to a multiple of the interval: TF-MOT
    sets its pruning step to the optimizer step at batch begin and adds one
    in the layer call before checking the frequency.
    """
    if self.kind == "dense":
      return False
    return (step_before + 1) % self.update_interval == 0


def make_variant(kind, build: Callable[[], keras.Model], sparsity=0.9,
                 update_interval=100, grow="gradient", jit_compile=True,
                 total_steps=10**6, seed=0, update_jit_compile="auto",
                 rank_method="auto",
                 group_entries=itop_tf.updaters.GROUP_ENTRIES,
                 distribution="erk"):
  """Builds, sparsifies (per `kind`) and compiles a fresh model.

  Args:
    kind: one of `VARIANTS`.
    build: returns a fresh dense tf_keras model (logits out).
    sparsity: target sparsity of the sparse variants.
    update_interval: steps between mask updates (TF-MOT: pruning frequency).
    grow: itop_tf growth ("gradient" = RigL, "random" = SET).
    jit_compile: compile the training step with XLA.
    total_steps: the itop_tf schedule's horizon (the prune fraction stays
      near its initial 0.5 over a benchmark's few hundred steps).
    seed: Keras seed for weights and masks.
    update_jit_compile: `ITOPCallback(jit_compile=...)`: "auto" (the
      library's default: NumPy on a CPU, XLA on a GPU/TPU), True (XLA) or
      False (NumPy on the host).
    rank_method, group_entries: itop_tf's update options (`ITOPCallback`).
    distribution: itop_tf's layer densities ("erk", "er" or "uniform", as
      TF-MOT's `ConstantSparsity` gives every layer).

  Returns:
    A `Variant`.

  Raises:
    ValueError: unknown `kind`.
  """
  if kind not in VARIANTS:
    raise ValueError(f"Unknown variant {kind!r}: use one of {VARIANTS}.")
  # seed + 1, as the launchers do: a global TF seed of 0 breaks tf.data
  # shuffles with tensor seeds (the launchers' pipelines) later in the process.
  keras.utils.set_random_seed(seed + 1)
  model = build()
  callbacks = []
  if kind == "tfmot":
    schedule = tfmot.sparsity.keras.ConstantSparsity(
        sparsity, begin_step=0, frequency=update_interval)
    model = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=schedule)
    callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
  elif kind == "itop":
    model = itop_tf.sparsify(
        model, sparsity=sparsity, grow=grow, seed=seed,
        distribution=distribution,
        schedule=itop_tf.RegrowthSchedule(update_interval=update_interval,
                                          total_steps=total_steps))
    callbacks.append(itop_tf.ITOPCallback(
        jit_compile=update_jit_compile, rank_method=rank_method,
        group_entries=group_entries))
  model.compile(
      keras.optimizers.SGD(0.01, momentum=0.9),
      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      jit_compile=jit_compile)
  model.optimizer.build(model.trainable_variables)
  return Variant(kind, model, callbacks, update_interval)


def synthetic_batches(model, batch_size, seed=0):
  """An endless dataset repeating one random batch for `model`'s inputs."""
  rng = np.random.default_rng(seed)
  shape = (batch_size,) + tuple(model.input_shape[1:])
  x = rng.standard_normal(shape).astype(np.float32)
  classes = model.output_shape[-1]
  y = rng.integers(0, classes, size=(batch_size,)).astype(np.int32)
  return tf.data.Dataset.from_tensors((x, y)).repeat()


def make_keras3_model(kind, build, sparsity=0.9, update_interval=100,
                      grow="gradient", jit_compile=True, total_steps=10**6,
                      distribution="erk"):
  """The Keras 3 twin of `make_variant`, dense or itop_tf only.

  Args:
    kind: "dense" or "itop".
    build: returns a fresh dense Keras 3 model (logits out).
    sparsity, update_interval, grow, total_steps, distribution: as in
      `make_variant`.
    jit_compile: `model.compile(jit_compile=...)`.

  Returns:
    (compiled model, callbacks): `[ITOPCallback()]` for "itop".
  """
  import keras as keras3  # pylint: disable=g-import-not-at-top
  keras3.utils.set_random_seed(1)
  model = build()
  callbacks = []
  if kind == "itop":
    model = itop_tf.sparsify(
        model, sparsity=sparsity, grow=grow, distribution=distribution,
        schedule=itop_tf.RegrowthSchedule(update_interval, total_steps))
    callbacks.append(itop_tf.ITOPCallback())
  model.compile(keras3.optimizers.SGD(0.01, momentum=0.9),
                keras3.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=jit_compile)
  return model, callbacks


class StepTimer:
  """Times single training steps of a `Variant` as `model.fit` runs them.

  Args:
    variant: what to time.
    batch_size: examples per step (one synthetic batch, repeated).
  """

  def __init__(self, variant, batch_size):
    self.variant = variant
    model = variant.model
    self._iterator = iter(synthetic_batches(model, batch_size))
    self._train = model.make_train_function()
    self._callbacks = keras.callbacks.CallbackList(
        variant.callbacks, add_history=False, add_progbar=False, model=model)
    self._callbacks.on_train_begin()
    self._callbacks.on_epoch_begin(0)
    self._batch = 0

  @property
  def step(self):
    return int(self.variant.model.optimizer.iterations.numpy())

  def run(self, steps):
    """Runs `steps` steps; returns [(seconds, was_update_step)]."""
    out = []
    for _ in range(steps):
      update = self.variant.is_update_step(self.step)
      start = time.perf_counter()
      self._callbacks.on_train_batch_begin(self._batch)
      logs = self._train(self._iterator)
      self._callbacks.on_train_batch_end(self._batch, logs)
      float(logs["loss"])  # wait for the step
      out.append((time.perf_counter() - start, update))
      self._batch += 1
    return out


def child_environment(keras_backend=None):
  """The environment for a child process on Keras backend `keras_backend`.

  This process's environment, with KERAS_BACKEND set (or removed for None)
  and without the TPU_ML_PLATFORM variables that importing TensorFlow sets:
  with them, a JAX child spends about 35 s more starting up on a CPU-only
  host (measured 2026-12-06: the quickstart, 94 s against 57 s).
  """
  env = {k: v for k, v in os.environ.items()
         if not k.startswith("TPU_ML_PLATFORM")}
  env["TF_CPP_MIN_LOG_LEVEL"] = env.get("TF_CPP_MIN_LOG_LEVEL", "2")
  if keras_backend:
    env["KERAS_BACKEND"] = keras_backend
  else:
    env.pop("KERAS_BACKEND", None)
  return env


def machine():
  """One line saying where the numbers were taken."""
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    device = f"{len(gpus)} x {details.get('device_name', 'GPU')}"
  else:
    device = f"CPU only, {os.cpu_count()} logical cores"
  return (f"{device}; {platform.processor() or platform.machine()}; "
          f"TF {tf.__version__}, tf_keras {keras.__version__}, "
          f"TF-MOT {tfmot.__version__ if hasattr(tfmot, '__version__') else '?'}")


def tfmot_masks(model):
  """The mask variables of a TF-MOT `prune_low_magnitude` model, nested too.

  Each has the shape of the kernel it masks.
  """
  return [mask for layer in model.submodules
          for _, mask, _ in getattr(layer, "pruning_vars", ())]
