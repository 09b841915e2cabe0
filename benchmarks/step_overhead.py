r"""Training-step time of itop_tf against dense Keras and TF-MOT.

For each network, three variants of the same model are compiled with XLA
(`jit_compile=True`; `--nojit` for graph mode, the faster one for ResNet-50
on a CPU): dense tf_keras, TF-MOT `prune_low_magnitude`
(ConstantSparsity) and itop_tf RigL-ITOP (its update as `ITOPCallback`
defaults it, `jit_compile="auto"`: NumPy on a CPU, XLA on a GPU/TPU). They
are timed interleaved: every round runs --steps steps of each variant in
turn (in the reverse order every other round), one synthetic batch
repeated, each step driven with its callbacks as `model.fit` drives it.

Both sparse variants update their masks once every --steps steps during the
measurement, so each round holds one update step and --steps - 1 plain
steps. For Delta T in --update_intervals the amortized step time is

    plain + (update - plain) / Delta T

with `plain` the median plain step and `update` the median update step
(itop_tf: the step that captures the dense gradient plus the prune/grow
update after it; TF-MOT: the step whose graph recomputes the mask). The
script prints each variant's medians and the amortized ratio to the dense
median of the same run.

  python benchmarks/step_overhead.py
  python benchmarks/step_overhead.py --models=resnet50 \
      --resnet50_batch_size=64 --image_size=128 --rounds=10
  python benchmarks/step_overhead.py --models=resnet50 --nojit  # graph-mode steps
  python benchmarks/step_overhead.py --models=lenet_300_100 --steps=100 \
      --rounds=20     # the quickstart's network, an update every 100 steps
"""

import json
import os
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import itop_tf  # (first: sets TF_USE_LEGACY_KERAS before TF loads)
from absl import flags
import numpy as np

from benchmarks import harness
from launchers import launcher_flags

def define_flags(flag_values=flags.FLAGS):
  """Defines the benchmark's flags on `flag_values`."""

  harness.define_network_flags(flag_values)
  define = launcher_flags.flag_definer(flag_values)
  define("float", "sparsity", 0.9, "Sparsity of both sparse variants.")
  define("integer", "steps", 10, "Steps per variant per round (one of them "
         "updates the masks).")
  define("integer", "rounds", 5, "Measured rounds (after one warm-up round).")
  define("list", "update_intervals", ["100", "1000"],
         "Delta T values to amortize the update over.")
  define("bool", "jit", True, "jit_compile the training steps.")
  define("enum", "distribution", "erk", "itop_tf's layer densities "
         "(uniform: every layer at --sparsity, as TF-MOT).",
         list(itop_tf.distributions.DISTRIBUTIONS))
  define("list", "keras3_backends", ["tensorflow", "jax"],
         "Keras 3 backends to measure too, each in a child process; empty "
         "for none.")
  define("string", "keras3_child", None, "Internal: measure Keras 3 rows in "
         "this process (its KERAS_BACKEND) and print them as JSON.")

  def validate(f):
    if not 0.0 < f["sparsity"] < 1.0:
      raise flags.ValidationError("--sparsity must be in (0, 1).")
    if f["steps"] < 3 or f["rounds"] < 1:
      raise flags.ValidationError(
          "--steps must be >= 3 (an update step, the step after it and a "
          "plain one), --rounds >= 1.")
    if any(not s.isdigit() or int(s) < 1 for s in f["update_intervals"]):
      raise flags.ValidationError(
          "--update_intervals must be positive integers.")
    return True

  flags.register_multi_flags_validator(
      ["sparsity", "steps", "rounds", "update_intervals"], validate,
      flag_values=flag_values)


def interleaved(kinds, round_):
  """The order of `kinds` in round `round_`: as given, then reversed.

  Alternating (ABC, CBA, ...) gives every variant the same mean position,
  so a machine that speeds up or slows down steadily over a round does not
  favour the variant timed first.
  """
  return kinds if round_ % 2 == 0 else kinds[::-1]


def measure(name, f):
  """Times the three variants of network `name`; returns one row each."""
  build, batch = harness.network(name, f)
  timers = {}
  for kind in harness.VARIANTS:
    variant = harness.make_variant(kind, build, sparsity=f.sparsity,
                                   update_interval=f.steps,
                                   jit_compile=f.jit,
                                   distribution=f.distribution)
    timers[kind] = harness.StepTimer(variant, batch)
    timers[kind].run(f.steps)  # warm-up: compiles the step and the update
  samples = {kind: [] for kind in timers}
  for round_ in range(f.rounds):
    for kind in interleaved(list(timers), round_):
      samples[kind] += timers[kind].run(f.steps)

  rows = summarize(samples, [int(s) for s in f.update_intervals])
  for row in rows:
    row.update(model=name, batch=batch,
               image_size=harness.input_shape(name, f)[0])
  return rows


def measure_keras3(name, f):
  """Times Keras 3 dense and itop_tf variants of network `name` (this backend).

  Returns:
    One row per variant, as `summarize_keras3` makes them.
  """
  import keras  # pylint: disable=g-import-not-at-top
  from launchers import models  # pylint: disable=g-import-not-at-top

  model_name, _, classes = harness.NETWORKS[name]
  shape = harness.input_shape(name, f)
  batch = f.resnet50_batch_size if name == "resnet50" else f.batch_size
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch,) + shape).astype(np.float32)
  y = rng.integers(0, classes, size=(batch,)).astype(np.int32)
  per_round = 3 * f.steps

  class Timer(keras.callbacks.Callback):

    def __init__(self):
      super().__init__()
      self.times = []

    def on_train_batch_begin(self, batch, logs=None):
      self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
      float(logs["loss"])  # wait for the step
      self.times.append(time.perf_counter() - self._start)

  variants = {}
  for kind in ("dense", "itop"):
    model, callbacks = harness.make_keras3_model(
        kind, lambda: models.build(model_name, shape, classes,
                                   keras_module=keras),
        sparsity=f.sparsity, update_interval=f.steps, jit_compile=f.jit,
        distribution=f.distribution)
    timer = Timer()
    variants[kind] = (model, callbacks + [timer], timer)

  def one_round(kind):
    model, callbacks, timer = variants[kind]
    start = len(timer.times)
    model.fit(np.repeat(x, per_round, 0), np.repeat(y, per_round, 0),
              batch_size=batch, epochs=1, shuffle=False, verbose=0,
              callbacks=callbacks)
    return timer.times[start:]

  for kind in variants:
    one_round(kind)  # warm-up: compiles the step and the update
  rounds = {kind: [] for kind in variants}
  for round_ in range(f.rounds):
    for kind in interleaved(list(variants), round_):
      rounds[kind].append(one_round(kind))
  rows = summarize_keras3(rounds, f.steps, [int(s) for s in f.update_intervals])
  for row in rows:
    row.update(model=name, batch=batch,
               image_size=harness.input_shape(name, f)[0],
               frontend=f"keras3/{keras.backend.backend()}")
  return rows


def summarize_keras3(rounds, interval, intervals):
  """Amortized Keras 3 step times from whole `fit` rounds.

  Args:
    rounds: `{variant: [[seconds per step of one fit call], ...]}` with a
      "dense" entry; steps `interval`, `2 interval`, ... of every round
      (1-based) end with an update in the sparse variants. The first step
      of a round (it includes the `fit` call's start) is not used.
    interval: steps between the updates in the rounds.
    intervals: the Delta T values to amortize over.

  Returns:
    One row per variant: "variant", "plain_s" (median of the steps that are
    neither first, an update step nor the step after one), "update_step_s"
    (plain + median extra cost of an update: update step + the step after
    it - 2 plain) and `ratio_dt<Delta T>` = `(plain + extra / Delta T) /
    dense plain`.
  """

  def split(times):
    plain, extra = [], []
    for r in times:
      for i, t in enumerate(r[1:], start=2):
        if i % interval and (i - 1) % interval:
          plain.append(t)
    p = float(np.median(plain))
    for r in times:
      for u in range(interval, len(r), interval):  # u: 1-based update step
        extra.append(r[u - 1] + r[u] - 2 * p)
    return p, float(np.median(extra)) if extra else 0.0

  dense, _ = split(rounds["dense"])
  rows = []
  for kind, times in rounds.items():
    plain, extra = split(times)
    if kind == "dense":
      extra = 0.0  # it has no update; its "extra" is noise
    row = {"variant": kind, "plain_s": plain, "update_step_s": plain + extra}
    for dt in intervals:
      row[f"ratio_dt{dt}"] = (plain + extra / dt) / dense
    rows.append(row)
  return rows


# The flags a Keras 3 child process measures with.
_CHILD_FLAGS = ("models", "batch_size", "resnet50_batch_size", "image_size",
                "sparsity", "steps", "rounds", "update_intervals", "jit",
                "distribution")


def child_args(f):
  """The command-line flags that make a child measure what `f` says."""
  args = ["--keras3_child=1"]
  for name in _CHILD_FLAGS:
    value = f[name].value
    if isinstance(value, bool):
      args.append(f"--{'' if value else 'no'}{name}")
    elif isinstance(value, list):
      args.append(f"--{name}={','.join(value)}")
    else:
      args.append(f"--{name}={value}")
  return args


def _keras3_rows(backend, f):
  """Runs this script with --keras3_child in a KERAS_BACKEND=backend child."""
  env = dict(os.environ, KERAS_BACKEND=backend)
  cmd = [sys.executable, os.path.abspath(__file__)] + child_args(f)
  out = subprocess.run(cmd, env=env, check=True, capture_output=True,
                       text=True).stdout
  line = next(l for l in reversed(out.splitlines()) if l.startswith("ROWS "))
  return json.loads(line[5:])


def summarize(samples, intervals):
  """Median plain and update steps per variant, amortized against dense.

  Args:
    samples: `{variant: [(seconds, is_update_step), ...]}` with a "dense"
      entry.
    intervals: the Delta T values to amortize the update over.

  Returns:
    One row per variant: "variant", "plain_s", "update_step_s" (the plain
    step where a variant has no update step) and `ratio_dt<Delta T>` =
    `(plain + (update - plain) / Delta T) / dense plain`.
  """
  dense = float(np.median([t for t, _ in samples["dense"]]))
  rows = []
  for kind, times in samples.items():
    plain = float(np.median([t for t, u in times if not u]))
    updates = [t for t, u in times if u]
    update = float(np.median(updates)) if updates else plain
    row = {"variant": kind, "plain_s": plain, "update_step_s": update}
    for dt in intervals:
      row[f"ratio_dt{dt}"] = (plain + (update - plain) / dt) / dense
    rows.append(row)
  return rows


def format_rows(rows, intervals):
  """Markdown table of `measure` rows."""
  head = ("| model (batch, px) | front-end | variant | plain step (ms) | "
          "update step (ms) |"
          + "".join(f" amortized / dense, ΔT={dt} |" for dt in intervals))
  lines = [head, "|---" * (5 + len(intervals)) + "|"]
  for r in rows:
    lines.append(
        f"| {r['model']} ({r['batch']}, {r['image_size']}) | "
        f"{r.get('frontend', 'tf_keras')} | {r['variant']} | "
        f"{1e3 * r['plain_s']:.1f} | {1e3 * r['update_step_s']:.1f} |"
        + "".join(f" {r[f'ratio_dt{dt}']:.3f} |" for dt in intervals))
  return "\n".join(lines)


def run(f):
  """Measures every network of --models; prints and returns the rows."""
  intervals = [int(s) for s in f.update_intervals]
  if f.keras3_child:
    rows = [r for name in f.models for r in measure_keras3(name, f)]
    print("ROWS " + json.dumps(rows))
    return rows
  rows = []
  for name in f.models:
    rows += measure(name, f)
  for backend in f.keras3_backends:
    rows += _keras3_rows(backend, f)
  print(f"machine: {harness.machine()}; jit_compile={f.jit}; "
        f"sparsity={f.sparsity}; {f.rounds} rounds x {f.steps} steps")
  print(format_rows(rows, intervals))
  for name in f.models:
    by = {r["variant"]: r for r in rows
          if r["model"] == name and "frontend" not in r}
    k3 = {r["frontend"]: r for r in rows
          if r["model"] == name and r.get("variant") == "itop" and
          "frontend" in r}
    for dt in intervals:
      key = f"ratio_dt{dt}"
      print(f"{name} ΔT={dt}: itop_tf {by['itop'][key]:.3f}x dense, "
            f"TF-MOT {by['tfmot'][key]:.3f}x dense, itop_tf / TF-MOT "
            f"{by['itop'][key] / by['tfmot'][key]:.3f}"
            + "".join(f"; {fe} {r[key]:.3f}x its dense"
                      for fe, r in k3.items()))
  return rows


if __name__ == "__main__":
  harness.main(define_flags, run)
