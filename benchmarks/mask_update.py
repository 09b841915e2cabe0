r"""Time of one prune/grow update against the number of parameters.

For MLPs of 1024-wide Dense layers with about --params million weights, and
for the real ResNet-50, this times `itop_tf.MaskUpdater.update` (the update
`ITOPCallback` runs every Delta T steps: rank, prune, grow, zero the grown
weights and their momentum, update the union, count R_s) with XLA on and off,
and one training step of the same sparse model (XLA-compiled), and prints
the ratio of one update to one step.

  python benchmarks/mask_update.py
  python benchmarks/mask_update.py --params=1,5 --noresnet50 --repeats=10
"""

import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import itop_tf
from absl import flags
import numpy as np
import tf_keras as keras

from benchmarks import harness
from launchers import launcher_flags
from launchers import models

WIDTH = 1024


def define_flags(flag_values=flags.FLAGS):
  """Defines the benchmark's flags on `flag_values`."""

  define = launcher_flags.flag_definer(flag_values)
  define("list", "params", ["1", "2.5", "5", "10", "25"],
         "MLP sizes in millions of weights (1024-wide Dense layers).")
  define("bool", "resnet50", True, "Also time the real ResNet-50.")
  define("integer", "image_size", 224, "ResNet-50 image size of its step.")
  define("integer", "batch_size", 32, "ResNet-50 batch of its step.")
  define("integer", "mlp_batch_size", 128, "MLP batch of their steps.")
  define("float", "sparsity", 0.9, "Sparsity.")
  define("enum", "grow", "gradient", "gradient (RigL) or random (SET).",
         ["gradient", "random"])
  define("integer", "repeats", 5, "Timed updates (after one warm-up).")
  define("integer", "steps", 3, "Timed training steps (after one warm-up).")

  def validate(f):
    if any(float(p) <= 0 for p in f["params"]):
      raise flags.ValidationError("--params must be positive (millions).")
    if f["repeats"] < 1 or f["steps"] < 1:
      raise flags.ValidationError("--repeats and --steps must be >= 1.")
    return True

  flags.register_multi_flags_validator(["params", "repeats", "steps"],
                                       validate, flag_values=flag_values)


def mlp(millions):
  """A build function for an MLP of about `millions` x 1e6 weights."""
  depth = max(1, int(round(millions * 1e6 / (WIDTH * WIDTH))))

  def build():
    inputs = keras.Input((WIDTH,))
    x = inputs
    for i in range(depth):
      x = keras.layers.Dense(WIDTH, activation="relu", name=f"fc{i}")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))

  return build


def time_updates(model, jit_compile, repeats):
  """Median seconds of `MaskUpdater.update` over `repeats` calls."""
  updater = itop_tf.MaskUpdater(model, jit_compile=jit_compile)
  updater.initialize(0)
  updater.update(1)  # compiles
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    updater.update(2 + i)  # returns once counts and R_s are on the host
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def measure(name, build, batch, f):
  """One row: weights, update time (XLA on/off), step time, ratio."""
  # No update inside the timed steps: time_updates forces them by hand.
  variant = harness.make_variant("itop", build, sparsity=f.sparsity,
                                 update_interval=10**9, total_steps=10**10,
                                 grow=f.grow)
  model = variant.model
  weights = sum(r["size"] for r in itop_tf.sparsity_report(model))
  timer = harness.StepTimer(variant, batch)
  timer.run(1)
  step = float(np.median([t for t, _ in timer.run(f.steps)]))
  xla = time_updates(model, True, f.repeats)
  graph = time_updates(model, False, f.repeats)
  return {"model": name, "sparse_weights": weights, "batch": batch,
          "update_xla_s": xla, "update_graph_s": graph, "step_s": step,
          "update_over_step": xla / step}


def format_rows(rows):
  """Markdown table of `measure` rows."""
  lines = ["| model | sparse weights | update, XLA (ms) | update, no XLA (ms) "
           "| train step (ms, batch) | update / step |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['model']} | {r['sparse_weights'] / 1e6:.2f}M | "
        f"{1e3 * r['update_xla_s']:.1f} | {1e3 * r['update_graph_s']:.1f} | "
        f"{1e3 * r['step_s']:.1f} ({r['batch']}) | "
        f"{r['update_over_step']:.3f} |")
  return "\n".join(lines)


def run(f):
  """Times every model; prints and returns the rows."""
  rows = []
  for p in f.params:
    rows.append(measure(f"mlp_{p}M", mlp(float(p)), f.mlp_batch_size, f))
    keras.backend.clear_session()
  if f.resnet50:
    shape = (f.image_size, f.image_size, 3)
    rows.append(measure(f"resnet50 ({f.image_size}px)",
                        lambda: models.build("resnet50", shape, 1000),
                        f.batch_size, f))
  print(f"machine: {harness.machine()}; sparsity={f.sparsity}; "
        f"grow={f.grow}; median of {f.repeats} updates, {f.steps} steps")
  print(format_rows(rows))
  return rows


if __name__ == "__main__":
  harness.main(define_flags, run)
