r"""Keras 3: what each part of itop_tf costs a plain training step.

For one network on the backend KERAS_BACKEND names, this times `model.fit`
per step (wall time of whole epochs over --steps batches, so the host may
queue steps ahead as Keras lets it) for five variants trained alike, with no
mask update inside the timed steps:

- dense: the plain Keras model;
- set_nocb, rigl_nocb: `itop_tf.sparsify` (grow="random"/"gradient") with no
  callback: the masked step alone (RigL's step also captures the dense
  gradient, as every step does without the callback);
- set, rigl: the same with `itop_tf.ITOPCallback`, as users train: the
  difference to *_nocb is the callback's per-step cost (for RigL less the
  capture, which the callback arms only for the step before an update).

Then the median time of one `MaskUpdater.update` of the RigL model, in the
default mode (`jit_compile="auto"`), and with --profile its cProfile.

  python benchmarks/keras3_steps.py --model=lenet_300_100
  KERAS_BACKEND=jax python benchmarks/keras3_steps.py --model=resnet20 \
      --steps=100 --rounds=3
"""

import cProfile
import os
import pstats
import sys
import time

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import itop_tf
from absl import flags
import numpy as np

from benchmarks import harness
from launchers import launcher_flags
from launchers import models

VARIANTS = ("dense", "set_nocb", "set", "rigl_nocb", "rigl")


def define_flags(flag_values=flags.FLAGS):
  """Defines the benchmark's flags on `flag_values`."""
  define = launcher_flags.flag_definer(flag_values)
  define("enum", "model", "lenet_300_100", "Network.",
         sorted(harness.NETWORKS))
  define("integer", "image_size", 224, "ResNet-50 image size.")
  for name, default, help_text in (
      ("batch_size", 128, "Batch size."),
      ("steps", 200, "Steps per variant per round."),
      ("rounds", 3, "Measured rounds, after one warm-up round."),
      ("updates", 5, "Timed mask updates, after one warm-up.")):
    flags.DEFINE_integer(name, default, help_text, lower_bound=1,
                         flag_values=flag_values)
  define("float", "sparsity", 0.9, "Sparsity.")
  define("bool", "profile", False, "Print the cProfile of the timed updates.")


def make_variants(f):
  """{variant: (compiled model, callbacks)}, no update in 10**8 steps."""
  import keras  # pylint: disable=g-import-not-at-top
  model_name, _, classes = harness.NETWORKS[f.model]
  shape = harness.input_shape(f.model, f)
  out = {}
  for kind in VARIANTS:
    model, callbacks = harness.make_keras3_model(
        "dense" if kind == "dense" else "itop",
        lambda: models.build(model_name, shape, classes, keras_module=keras),
        sparsity=f.sparsity, update_interval=10**8, total_steps=10**9,
        grow="gradient" if kind.startswith("rigl") else "random",
        jit_compile=keras.backend.backend() != "torch")
    out[kind] = (model, [] if kind.endswith("_nocb") else callbacks)
  return out


def run(f):
  """Times the variants and the update; prints and returns the row."""
  import keras  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  n = f.batch_size * f.steps
  _, _, classes = harness.NETWORKS[f.model]
  x = rng.standard_normal((n,) + harness.input_shape(f.model, f))
  x = x.astype(np.float32)
  y = rng.integers(0, classes, size=(n,)).astype(np.int32)
  variants = make_variants(f)

  def epoch(kind):
    model, callbacks = variants[kind]
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=f.batch_size, epochs=1,
                        shuffle=False, verbose=0, callbacks=callbacks)
    float(history.history["loss"][-1])
    return (time.perf_counter() - start) / f.steps

  for kind in variants:
    epoch(kind)  # warm-up: compiles
  times = {kind: [] for kind in variants}
  for round_ in range(f.rounds):
    order = list(variants) if round_ % 2 == 0 else list(variants)[::-1]
    for kind in order:
      times[kind].append(epoch(kind))
  step_s = {kind: float(np.median(t)) for kind, t in times.items()}

  updater = itop_tf.MaskUpdater(variants["rigl"][0])
  updater.initialize(0)
  updater.update(1)  # compiles
  update_s = []
  profile = cProfile.Profile() if f.profile else None
  for i in range(f.updates):
    if profile:
      profile.enable()
    start = time.perf_counter()
    updater.update(2 + i)
    update_s.append(time.perf_counter() - start)
    if profile:
      profile.disable()
  row = {"model": f.model, "backend": keras.backend.backend(),
         "step_s": step_s, "update_s": float(np.median(update_s)),
         "update_jit_compile": updater.jit_compile}
  dense = step_s["dense"]
  print(f"machine: {harness.machine()}; Keras 3 {row['backend']}; "
        f"{f.model}, batch {f.batch_size}, sparsity {f.sparsity}; median of "
        f"{f.rounds} rounds x {f.steps} steps")
  print("| " + " | ".join(VARIANTS) + " | update (ms) |")
  print("|---" * (len(VARIANTS) + 1) + "|")
  print("| " + " | ".join(f"{1e3 * step_s[k]:.3f} ms ({step_s[k] / dense:.2f}x)"
                          for k in VARIANTS)
        + f" | {1e3 * row['update_s']:.1f} "
        f"({'backend' if updater.jit_compile else 'NumPy'}) |")
  if profile:
    pstats.Stats(profile).sort_stats("tottime").print_stats(15)
  return row


if __name__ == "__main__":
  harness.main(define_flags, run)
