r"""Time of one prune/grow update against the number of parameters.

For MLPs of 1024-wide Dense layers with about --params million weights, and
for the real ResNet-50, this times `itop_tf.MaskUpdater.update` (the update
`ITOPCallback` runs every Delta T steps: rank, prune, grow, zero the grown
weights and their momentum, update the union, count R_s) in the backend
(`jit_compile=True`: XLA on TensorFlow, `jax.jit` on JAX, eager torch ops on
PyTorch) and in NumPy on the host (`jit_compile=False`), for each rank
method of --rank_methods ("threshold" against "sort", the full sort it
replaced), and one training step of the same sparse model (compiled, but
eager on PyTorch). It prints the ratio of the default update
(`jit_compile="auto"`) to one step, and of each update of the first method
to the second's in the same mode. `--frontend=keras3` measures Keras 3 on
the backend that KERAS_BACKEND names.

  python benchmarks/mask_update.py
  python benchmarks/mask_update.py --params=1,5 --noresnet50 --repeats=10
  KERAS_BACKEND=torch python benchmarks/mask_update.py --frontend=keras3 \
      --params=0.27,5 --noresnet50 --rank_methods=threshold  # eager sort: slow
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

from benchmarks import harness
from launchers import launcher_flags
from launchers import lazy_imports
from launchers import models

keras = lazy_imports.TF_KERAS  # the tf_keras variant's

WIDTH = 1024
# (column name, jit_compile): in the backend, or in NumPy on the host.
MODES = (("backend", True), ("numpy", False))
# What "in the backend" is, per backend.
BACKEND_MODE = {"tensorflow": "XLA", "jax": "jax.jit", "torch": "torch ops"}


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
  define("list", "rank_methods", list(itop_tf.core.RANK_METHODS),
         "Rank methods to time (`itop_tf.MaskUpdater`).")
  define("integer", "repeats", 5, "Timed updates (after one warm-up).")
  define("integer", "steps", 3, "Timed training steps (after one warm-up).")
  define("enum", "frontend", "tf_keras", "tf_keras, or keras3 on the "
         "backend KERAS_BACKEND names.", ["tf_keras", "keras3"])

  def validate(f):
    if any(float(p) <= 0 for p in f["params"]):
      raise flags.ValidationError("--params must be positive (millions).")
    if f["repeats"] < 1 or f["steps"] < 1:
      raise flags.ValidationError("--repeats and --steps must be >= 1.")
    methods = itop_tf.core.RANK_METHODS
    if not f["rank_methods"] or not set(f["rank_methods"]) <= set(methods):
      raise flags.ValidationError(
          f"--rank_methods must be some of {','.join(methods)}.")
    return True

  flags.register_multi_flags_validator(["params", "repeats", "steps",
                                        "rank_methods"],
                                       validate, flag_values=flag_values)


def mlp(millions, keras_module=keras):
  """A build function for an MLP of about `millions` x 1e6 weights."""
  depth = max(1, int(round(millions * 1e6 / (WIDTH * WIDTH))))
  layers = keras_module.layers

  def build():
    inputs = keras_module.Input((WIDTH,))
    x = inputs
    for i in range(depth):
      x = layers.Dense(WIDTH, activation="relu", name=f"fc{i}")(x)
    return keras_module.Model(inputs, layers.Dense(10, name="logits")(x))

  return build


def backend(f):
  """The backend of --frontend: "tensorflow" for tf_keras."""
  return "tensorflow" if f.frontend == "tf_keras" else (
      harness.keras_of(f.frontend).backend.backend())


def sparse_model_and_step(build, batch, f):
  """The sparse model of `build` and the median time of its training step.

  tf_keras: `harness.make_variant` and its `StepTimer`. Keras 3:
  `harness.make_keras3_model` and `train_on_batch` on one synthetic batch
  (`jit_compile` except on PyTorch, where it is `torch.compile`).
  """
  if f.frontend == "tf_keras":
    # No update inside the timed steps: time_updates forces them by hand.
    variant = harness.make_variant("itop", build, sparsity=f.sparsity,
                                   update_interval=10**9, total_steps=10**10,
                                   grow=f.grow)
    timer = harness.StepTimer(variant, batch)
    timer.run(1)
    return variant.model, float(np.median([t for t, _ in timer.run(f.steps)]))
  # No ITOPCallback: time_updates forces the updates by hand.
  model, _ = harness.make_keras3_model(
      "itop", build, sparsity=f.sparsity, update_interval=10**9,
      grow=f.grow, total_steps=10**10, jit_compile=backend(f) != "torch")
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch,) + tuple(model.input_shape[1:]))
  x = x.astype(np.float32)
  y = rng.integers(0, model.output_shape[-1], size=(batch,))
  model.train_on_batch(x, y)  # builds and compiles
  times = []
  for _ in range(f.steps):
    start = time.perf_counter()
    model.train_on_batch(x, y)  # returns the loss on the host
    times.append(time.perf_counter() - start)
  return model, float(np.median(times))


def time_updates(model, jit_compile, repeats, rank_method="auto"):
  """Median seconds of `MaskUpdater.update` over `repeats` calls."""
  updater = itop_tf.MaskUpdater(model, jit_compile=jit_compile,
                                rank_method=rank_method)
  updater.initialize(0)
  updater.update(1)  # compiles
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    updater.update(2 + i)  # returns once counts and R_s are on the host
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def measure(name, build, batch, f):
  """One row: weights, update times (rank method x mode), step time."""
  model, step = sparse_model_and_step(build, batch, f)
  weights = sum(r["size"] for r in itop_tf.sparsity_report(model))
  row = {"model": name, "sparse_weights": weights, "batch": batch,
         "step_s": step}
  for method in f.rank_methods:
    for mode, jit in MODES:
      row[f"update_{method}_{mode}_s"] = time_updates(model, jit, f.repeats,
                                                      method)
  jit = itop_tf.updaters.resolve_jit_compile("auto", backend(f))
  default = "backend" if jit else "numpy"
  method = itop_tf.updaters.resolve_rank_method("auto")
  if method not in f.rank_methods:
    method = f.rank_methods[0]
  row["default_mode"], row["default_method"] = default, method
  row["update_over_step"] = row[f"update_{method}_{default}_s"] / step
  return row


def _ms(seconds):
  return f"{1e3 * seconds:.1f}"


def format_rows(rows, methods, backend_name="tensorflow"):
  """Markdown table of `measure` rows."""
  label = {"backend": BACKEND_MODE[backend_name], "numpy": "NumPy"}
  cols = [(m, mode) for m in methods for mode, _ in MODES]
  head = " | ".join(f"update, {m}, {label[mode]} (ms)" for m, mode in cols)
  ratio = len(methods) > 1 and methods[0] != methods[1]
  extra = "".join(f" | {methods[0]} / {methods[1]}, {label[mode]}"
                  for mode, _ in MODES) if ratio else ""
  lines = [f"| model | sparse weights | {head} | train step (ms, batch) | "
           f"default update / step{extra} |",
           "|---" * (4 + len(cols) + (2 if ratio else 0)) + "|"]
  for r in rows:
    times = " | ".join(_ms(r[f"update_{m}_{mode}_s"]) for m, mode in cols)
    line = (f"| {r['model']} | {r['sparse_weights'] / 1e6:.2f}M | {times} | "
            f"{1e3 * r['step_s']:.1f} ({r['batch']}) | "
            f"{r['update_over_step']:.3f}")
    if ratio:
      for mode, _ in MODES:
        new = r[f"update_{methods[0]}_{mode}_s"]
        old = r[f"update_{methods[1]}_{mode}_s"]
        line += f" | {new / old:.2f}x"
    lines.append(line + " |")
  return "\n".join(lines)


def run(f):
  """Times every model; prints and returns the rows."""
  k = harness.keras_of(f.frontend)
  rows = []
  for p in f.params:
    rows.append(measure(f"mlp_{p}M", mlp(float(p), k), f.mlp_batch_size, f))
    k.backend.clear_session()
  if f.resnet50:
    shape = (f.image_size, f.image_size, 3)
    rows.append(measure(f"resnet50 ({f.image_size}px)",
                        lambda: models.build("resnet50", shape, 1000,
                                             keras_module=k),
                        f.batch_size, f))
  print(f"machine: {harness.machine()}; front-end: {f.frontend} "
        f"({backend(f)}); sparsity={f.sparsity}; grow={f.grow}; median of "
        f"{f.repeats} updates, {f.steps} steps")
  print(format_rows(rows, f.rank_methods, backend(f)))
  return rows


if __name__ == "__main__":
  harness.main(define_flags, run)
