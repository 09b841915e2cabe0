r"""Memory of training with itop_tf against dense Keras and TF-MOT.

Two measures for each variant (see `benchmarks/harness.py`) of a network:

1. State: the bytes of every model and optimizer variable. What a variant
   adds over dense, divided by the number of weights in its sparse kernels,
   is its extra bytes per weight; the table also gives it in float32
   equivalents (bytes / 4). itop_tf keeps a bool mask and a bool union per
   weight (2 bytes) and, for RigL, the captured dense gradient in the weight's
   dtype (4 bytes for float32): 1.5 float32 equivalents. TF-MOT keeps a
   float32 mask (1).
2. Peak: each variant trains --steps steps in a fresh process; the peak is
   the GPU allocator's peak (`tf.config.experimental.get_memory_info`) on a
   GPU, else the process's peak resident memory (`ru_maxrss`), which also
   holds the TF runtime, XLA's compiler and the input batch, so only the
   difference to dense means something, and only roughly.
3. Update peak: in the itop_tf process, after those steps, what one mask
   update adds over the memory resident just before it: the peak is reset
   before each update (`/proc/self/clear_refs`, or the GPU allocator's
   `reset_memory_stats`) and read after. The first update includes
   compiling it; the second is the steady state. Divided by the sparse
   weights, it is the update's float32 per weight (issue 12: <= 4).

  python benchmarks/memory.py
  python benchmarks/memory.py --models=resnet20 --steps=5
"""

import json
import os
import resource
import subprocess
import sys

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import itop_tf
from absl import flags
import numpy as np
import tensorflow as tf

from benchmarks import harness
from launchers import launcher_flags


def define_flags(flag_values=flags.FLAGS):
  """Defines the benchmark's flags on `flag_values`."""

  harness.define_network_flags(flag_values)
  define = launcher_flags.flag_definer(flag_values)
  define("float", "sparsity", 0.9, "Sparsity.")
  define("integer", "steps", 3, "Training steps of the peak measurement "
         "(0 skips it).")
  define("bool", "update_jit", None, "Compile itop_tf's mask update with "
         "XLA (--noupdate_jit: the update in NumPy on the host; unset: "
         "jit_compile=\"auto\", the library's default).")
  define("enum", "rank_method", "threshold", "itop_tf's rank method "
         "(`itop_tf.MaskUpdater`).", list(itop_tf.core.RANK_METHODS))
  define("integer", "group_entries", itop_tf.updaters.GROUP_ENTRIES,
         "itop_tf's update group bound in entries (a huge value updates the "
         "whole model in one call, as before groups).")
  define("string", "child", None, "Internal: measure one variant "
         "(model:variant) and print its peak as JSON.")

  flags.register_validator("steps", lambda n: n >= 0,
                           "--steps must be >= 0.", flag_values=flag_values)


def _variant(name, kind, f, grow="gradient"):
  build, _ = harness.network(name, f)
  # No update during the --steps steps: update_peaks forces them after.
  return harness.make_variant(kind, build, sparsity=f.sparsity, grow=grow,
                              update_interval=10**9, total_steps=10**10,
                              update_jit_compile=update_jit_compile(f),
                              rank_method=f.rank_method,
                              group_entries=f.group_entries)


def update_jit_compile(f):
  """`ITOPCallback(jit_compile=...)` for --update_jit (unset: "auto")."""
  return "auto" if f.update_jit is None else f.update_jit


def _bytes(variables):
  seen, total = set(), 0
  for v in variables:
    if id(v) in seen:
      continue
    seen.add(id(v))
    total += int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size
  return total


def state_bytes(variant):
  """Bytes of all model and optimizer variables of a `Variant`."""
  model = variant.model
  return _bytes(list(model.variables) + list(model.optimizer.variables()))


def sparse_weight_count(variant):
  """Entries of the kernels a sparse variant masks (0 for dense)."""
  if variant.kind == "itop":
    return sum(r["size"] for r in itop_tf.sparsity_report(variant.model))
  if variant.kind == "tfmot":
    return sum(int(np.prod(m.shape))
               for m in harness.tfmot_masks(variant.model))
  return 0


def state_rows(name, f):
  """Extra state per sparse weight of every sparse variant over dense."""
  variants = [("dense", _variant(name, "dense", f)),
              ("tfmot", _variant(name, "tfmot", f)),
              ("itop (RigL)", _variant(name, "itop", f, "gradient")),
              ("itop (SET)", _variant(name, "itop", f, "random"))]
  dense = state_bytes(variants[0][1])
  rows = []
  for label, v in variants:
    total = state_bytes(v)
    n = sparse_weight_count(v)
    extra = (total - dense) / n if n else 0.0
    rows.append({"model": name, "variant": label, "state_mib": total / 2**20,
                 "sparse_weights": n, "extra_bytes_per_weight": extra,
                 "extra_float32_per_weight": extra / 4})
  return rows


def peak_bytes():
  """Peak memory so far: the GPU allocator's on a GPU, else the RSS peak."""
  if tf.config.list_physical_devices("GPU"):
    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _proc_status_bytes(field):
  with open("/proc/self/status") as status:
    for line in status:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024
  raise RuntimeError(f"/proc/self/status has no {field}")


def update_peaks(updater, step, count=2):
  """Bytes each of `count` forced updates adds to the memory before it.

  Returns:
    A list of `count` ints (the first update compiles), or None where the
    peak cannot be reset (no GPU and no /proc/self/clear_refs).
  """
  gpu = bool(tf.config.list_physical_devices("GPU"))
  out = []
  for i in range(count):
    if gpu:
      tf.config.experimental.reset_memory_stats("GPU:0")
      before = tf.config.experimental.get_memory_info("GPU:0")["current"]
    else:
      try:
        with open("/proc/self/clear_refs", "w") as refs:
          refs.write("5")  # resets VmHWM to the current resident size
      except OSError:
        return None
      before = _proc_status_bytes("VmRSS")
    updater.update(step + i)
    peak = (tf.config.experimental.get_memory_info("GPU:0")["peak"] if gpu
            else _proc_status_bytes("VmHWM"))
    out.append(max(0, peak - before))
  return out


def child(spec, f):
  """Trains one variant for --steps steps.

  Returns:
    (peak bytes, sparse weights, update peaks or None): `update_peaks` of
    the itop_tf variant after its steps.
  """
  name, kind = spec.split(":")
  variant = _variant(name, kind, f)
  _, batch = harness.network(name, f)
  timer = harness.StepTimer(variant, batch)
  timer.run(f.steps)
  peak = peak_bytes()
  updates = None
  if kind == "itop":
    updates = update_peaks(variant.callbacks[0].updater, timer.step + 1)
  return peak, sparse_weight_count(variant), updates


def peak_rows(name, f):
  """Peak of every variant, each trained in a fresh process."""
  rows, dense = [], None
  for kind in harness.VARIANTS:
    args = [sys.executable, os.path.abspath(__file__),
            f"--child={name}:{kind}", f"--steps={f.steps}",
            f"--sparsity={f.sparsity}", f"--batch_size={f.batch_size}",
            f"--resnet50_batch_size={f.resnet50_batch_size}",
            f"--image_size={f.image_size}",
            f"--rank_method={f.rank_method}",
            f"--group_entries={f.group_entries}"]
    if f.update_jit is not None:
      args.append(f"--{'' if f.update_jit else 'no'}update_jit")
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    peak = reply["peak_bytes"]
    dense = peak if dense is None else dense
    n = reply["sparse_weights"]
    row = {"model": name, "variant": kind, "pid": reply["pid"],
           "measured": reply["variant"], "peak_mib": peak / 2**20,
           "over_dense_mib": (peak - dense) / 2**20, "sparse_weights": n,
           "over_dense_float32_per_weight":
               (peak - dense) / 4 / n if n else 0.0}
    if reply.get("update_peaks"):
      first, second = reply["update_peaks"]
      row.update(update_first_mib=first / 2**20,
                 update_mib=second / 2**20,
                 update_first_float32_per_weight=first / 4 / n,
                 update_float32_per_weight=second / 4 / n)
    rows.append(row)
  return rows


def run(f):
  """Measures every network of --models; prints and returns the rows."""
  state, peaks = [], []
  for name in f.models:
    state += state_rows(name, f)
    if f.steps:
      peaks += peak_rows(name, f)
  where = "GPU allocator peak" if tf.config.list_physical_devices(
      "GPU") else "process peak RSS"
  print(f"machine: {harness.machine()}; sparsity={f.sparsity}")
  print("| model | variant | model + optimizer state (MiB) | sparse weights "
        "| extra bytes / weight | extra float32 / weight |")
  print("|---|---|---|---|---|---|")
  for r in state:
    print(f"| {r['model']} | {r['variant']} | {r['state_mib']:.1f} | "
          f"{r['sparse_weights'] / 1e6:.2f}M | "
          f"{r['extra_bytes_per_weight']:.2f} | "
          f"{r['extra_float32_per_weight']:.2f} |")
  if peaks:
    print(f"\nitop_tf update: jit_compile={update_jit_compile(f)!r}, "
          f"rank_method={f.rank_method}, group_entries={f.group_entries}")
    print(f"| model | variant | peak, {where} (MiB) | over dense (MiB) | "
          "over dense, float32 / sparse weight |")
    print("|---|---|---|---|---|")
    for r in peaks:
      print(f"| {r['model']} | {r['variant']} | {r['peak_mib']:.0f} | "
            f"{r['over_dense_mib']:+.0f} | "
            f"{r['over_dense_float32_per_weight']:+.2f} |")
    updates = [r for r in peaks if "update_mib" in r]
    if updates:
      print("\n| model | one update over resident, first (compiles) "
            "(MiB) | float32 / sparse weight | second (MiB) | "
            "float32 / sparse weight |")
      print("|---|---|---|---|---|")
      for r in updates:
        print(f"| {r['model']} | {r['update_first_mib']:.0f} | "
              f"{r['update_first_float32_per_weight']:.2f} | "
              f"{r['update_mib']:.0f} | "
              f"{r['update_float32_per_weight']:.2f} |")
  return state, peaks


def run_or_child(f):
  """Runs the benchmark, or with --child one variant's peak measurement."""
  if f.child:
    peak, n, updates = child(f.child, f)
    print(json.dumps({"peak_bytes": peak, "sparse_weights": n,
                      "update_peaks": updates, "pid": os.getpid(),
                      "variant": f.child.split(":")[1]}))
    return None
  return run(f)


if __name__ == "__main__":
  harness.main(define_flags, run_or_child)
