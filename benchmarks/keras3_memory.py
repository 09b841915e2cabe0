r"""Keras 3: the accelerator memory one mask update adds (JAX, PyTorch).

The Keras 3 twin of `memory.py`'s update peak, for the backends whose
allocators it reads: builds the sparse (RigL) model of --model, then runs
`MaskUpdater.update` --updates times in the backend (`jit_compile=True`) and
in NumPy on the host (False), and prints for each update what it adds over
the memory in use just before it, in float32 per sparse weight (issue 12:
<= 4). PyTorch: `torch.cuda` resets its peak before each update. JAX cannot
reset its peak (`memory_stats()["peak_bytes_in_use"]`), so each JAX figure
is an upper bound: the most the process ever held over what was in use
before that update. Without a GPU there is no allocator to read and only the
times print.

  KERAS_BACKEND=torch python benchmarks/keras3_memory.py
  KERAS_BACKEND=jax python benchmarks/keras3_memory.py --image_size=224
"""

import json
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import itop_tf
from absl import flags

from benchmarks import harness
from launchers import launcher_flags
from launchers import models


def define_flags(flag_values=flags.FLAGS):
  """Defines the benchmark's flags on `flag_values`."""
  define = launcher_flags.flag_definer(flag_values)
  define("enum", "model", "resnet50", "Network.", sorted(harness.NETWORKS))
  define("integer", "image_size", 224, "ResNet-50 image size.")
  define("integer", "updates", 3, "Updates per mode (the first compiles).")
  define("float", "sparsity", 0.9, "Sparsity.")


def device_memory(backend):
  """(bytes in use, peak bytes) of the backend's accelerator, or None."""
  if backend == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    stats = jax.devices()[0].memory_stats()
    return (stats["bytes_in_use"], stats["peak_bytes_in_use"]) if stats else None
  if backend == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    if torch.cuda.is_available():
      return torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()
  return None


def reset_peak(backend):
  if backend == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    if torch.cuda.is_available():
      torch.cuda.reset_peak_memory_stats()


def run(f):
  """Measures the updates; prints one JSON row each and returns them."""
  import keras  # pylint: disable=g-import-not-at-top
  backend = keras.backend.backend()
  model_name, _, classes = harness.NETWORKS[f.model]
  shape = harness.input_shape(f.model, f)
  model, _ = harness.make_keras3_model(
      "itop", lambda: models.build(model_name, shape, classes,
                                   keras_module=keras),
      sparsity=f.sparsity, update_interval=10**8, total_steps=10**9,
      jit_compile=backend != "torch")
  weights = sum(r["size"] for r in itop_tf.sparsity_report(model))
  print(f"machine: {harness.machine()}; Keras 3 {backend}; {f.model}; "
        f"{weights} sparse weights")
  rows = []
  for jit in (True, False):
    updater = itop_tf.MaskUpdater(model, jit_compile=jit)
    updater.initialize(0)
    for i in range(f.updates):
      reset_peak(backend)
      before = device_memory(backend)
      start = time.perf_counter()
      updater.update(1 + i)
      row = {"backend": backend, "jit_compile": jit, "update": i + 1,
             "sparse_weights": weights,
             "seconds": round(time.perf_counter() - start, 4)}
      after = device_memory(backend)
      if before and after:
        extra = max(0, after[1] - before[0])
        row.update(in_use_mib=round(before[0] / 2**20, 1),
                   extra_mib=round(extra / 2**20, 1),
                   float32_per_weight=round(extra / 4 / weights, 3))
      print(json.dumps(row), flush=True)
      rows.append(row)
  return rows


if __name__ == "__main__":
  harness.main(define_flags, run)
