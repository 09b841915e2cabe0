r"""Training-step time of itop_tf against dense Keras and TF-MOT.

For each network, three variants of the same model are compiled with XLA
(`jit_compile=True`): dense tf_keras, TF-MOT `prune_low_magnitude`
(ConstantSparsity) and itop_tf RigL-ITOP. They are timed interleaved: every
round runs --steps steps of each variant in turn, one synthetic batch
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
  python benchmarks/step_overhead.py --models=resnet50 --batch_size=64 \
      --image_size=128 --rounds=10
"""

import os
import sys

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import itop_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
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

  def validate(f):
    if not 0.0 < f["sparsity"] < 1.0:
      raise flags.ValidationError("--sparsity must be in (0, 1).")
    if f["steps"] < 2 or f["rounds"] < 1:
      raise flags.ValidationError("--steps must be >= 2, --rounds >= 1.")
    if any(not s.isdigit() or int(s) < 1 for s in f["update_intervals"]):
      raise flags.ValidationError(
          "--update_intervals must be positive integers.")
    return True

  flags.register_multi_flags_validator(
      ["sparsity", "steps", "rounds", "update_intervals"], validate,
      flag_values=flag_values)


def measure(name, f):
  """Times the three variants of network `name`; returns one row each."""
  build, batch = harness.network(name, f)
  timers = {}
  for kind in harness.VARIANTS:
    variant = harness.make_variant(kind, build, sparsity=f.sparsity,
                                   update_interval=f.steps,
                                   jit_compile=f.jit)
    timers[kind] = harness.StepTimer(variant, batch)
    timers[kind].run(f.steps)  # warm-up: compiles the step and the update
  samples = {kind: [] for kind in timers}
  for _ in range(f.rounds):
    for kind, timer in timers.items():
      samples[kind] += timer.run(f.steps)

  rows = summarize(samples, [int(s) for s in f.update_intervals])
  for row in rows:
    row.update(model=name, batch=batch,
               image_size=32 if name == "resnet20" else f.image_size)
  return rows


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
  head = ("| model (batch, px) | variant | plain step (ms) | update step (ms) |"
          + "".join(f" amortized / dense, ΔT={dt} |" for dt in intervals))
  lines = [head, "|---" * (4 + len(intervals)) + "|"]
  for r in rows:
    lines.append(
        f"| {r['model']} ({r['batch']}, {r['image_size']}) | {r['variant']} | "
        f"{1e3 * r['plain_s']:.1f} | {1e3 * r['update_step_s']:.1f} |"
        + "".join(f" {r[f'ratio_dt{dt}']:.3f} |" for dt in intervals))
  return "\n".join(lines)


def run(f):
  """Measures every network of --models; prints and returns the rows."""
  rows = []
  for name in f.models:
    rows += measure(name, f)
  intervals = [int(s) for s in f.update_intervals]
  print(f"machine: {harness.machine()}; jit_compile={f.jit}; "
        f"sparsity={f.sparsity}; {f.rounds} rounds x {f.steps} steps")
  print(format_rows(rows, intervals))
  for name in f.models:
    by = {r["variant"]: r for r in rows if r["model"] == name}
    for dt in intervals:
      key = f"ratio_dt{dt}"
      print(f"{name} ΔT={dt}: itop_tf {by['itop'][key]:.3f}x dense, "
            f"TF-MOT {by['tfmot'][key]:.3f}x dense, itop_tf / TF-MOT "
            f"{by['itop'][key] / by['tfmot'][key]:.3f}")
  return rows


if __name__ == "__main__":
  harness.main(define_flags, run)
