r"""The quickstart flag file per front-end and backend, timed in one run.

Runs `launchers/train_cifar.py --flagfile=launchers/configs/
fashion_mnist_rigl_itop.cfg --epochs=--epochs` (the README's main command,
one epoch by default) once per --runs entry, each a fresh child process
(Keras 3 picks its backend at import): tf_keras (TF-MOT), and Keras 3 on
TensorFlow, JAX and PyTorch. The runs are interleaved over --repeats rounds,
so a drift of the machine hits every variant alike. It prints, per variant,
the median wall time of the whole command (imports, data, compilation,
training, evaluation), its ratio to tf_keras in the same run, the launcher's
own time of the training steps (`train_seconds`) and images/second over
them, test accuracy and R_s.

  python benchmarks/quickstart.py                      # about 5 minutes
  python benchmarks/quickstart.py --runs=keras3:jax,tf_keras --repeats=3
"""

import json
import os
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import numpy as np

from benchmarks import harness
from launchers import launcher_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "launchers", "configs",
                          "fashion_mnist_rigl_itop.cfg")
RUNS = ("tf_keras", "keras3:tensorflow", "keras3:jax", "keras3:torch")


def define_flags(flag_values=flags.FLAGS):
  define = launcher_flags.flag_definer(flag_values)
  define("list", "runs", list(RUNS),
         f"Variants: front-end, or keras3:<backend>; from {RUNS}.")
  define("integer", "epochs", 1, "Epochs of each run (the flag file's: 5).")
  define("integer", "repeats", 1, "Rounds; the table gives medians.")
  define("list", "extra", [], "More launcher flags for every run, e.g. "
         "--extra=--manual_dir=/data/fashion,--update_interval=10.")
  define("string", "out", None, "Also write the rows as JSON here.")


def command(run, epochs, model_dir, extra=()):
  """(argv, environment) of one launcher run of variant `run`."""
  frontend = run.split(":")[0]
  env = harness.child_environment(
      run.split(":")[1] if frontend == "keras3" else None)
  argv = [sys.executable, os.path.join(ROOT, "launchers", "train_cifar.py"),
          f"--flagfile={QUICKSTART}", f"--frontend={frontend}",
          f"--epochs={epochs}", f"--model_dir={model_dir}", "--verbose=0",
          *extra]
  return argv, env


def measure(run, f):
  """One timed launcher run of `run`: its results.json plus wall seconds."""
  with tempfile.TemporaryDirectory() as model_dir:
    argv, env = command(run, f.epochs, model_dir, f.extra)
    began = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env,
                         check=False)
    wall = time.perf_counter() - began
    if out.returncode:
      raise RuntimeError(f"{run} failed:\n{out.stderr[-3000:]}")
    results = json.load(open(os.path.join(model_dir, "results.json")))
  return {"run": run, "wall_seconds": wall,
          "train_seconds": results["train_seconds"],
          "images_per_second": results["images_per_second"],
          "test_accuracy": results["test_accuracy"],
          "exploration_rate": results["exploration_rate"],
          "backend": results["backend"], "frontend": results["frontend"]}


def summarize(measured):
  """Rows per variant: medians, and wall time over tf_keras's."""
  by_run = {}
  for m in measured:
    by_run.setdefault(m["run"], []).append(m)
  median = {run: float(np.median([m["wall_seconds"] for m in ms]))
            for run, ms in by_run.items()}
  rows = []
  for run, ms in by_run.items():
    base = median.get("tf_keras")
    rows.append({
        "run": run, "wall_seconds": median[run],
        "all_wall_seconds": [m["wall_seconds"] for m in ms],
        "over_tf_keras": median[run] / base if base else None,
        "train_seconds": float(np.median([m["train_seconds"] for m in ms])),
        "images_per_second": float(np.median(
            [m["images_per_second"] for m in ms])),
        "test_accuracy": float(np.mean([m["test_accuracy"] for m in ms])),
        "exploration_rate": ms[0]["exploration_rate"]})
  return rows


def format_rows(rows):
  lines = ["| run | wall (s), median [all] | / tf_keras | training steps (s) "
           "| images/s | test accuracy | R_s |", "|---" * 7 + "|"]
  for r in rows:
    ratio = f"{r['over_tf_keras']:.2f}x" if r["over_tf_keras"] else "-"
    every = ", ".join(f"{s:.1f}" for s in r["all_wall_seconds"])
    lines.append(
        f"| {r['run']} | {r['wall_seconds']:.1f} [{every}] | {ratio} | "
        f"{r['train_seconds']:.1f} | {r['images_per_second']:.0f} | "
        f"{r['test_accuracy']:.4f} | {r['exploration_rate']:.4f} |")
  return "\n".join(lines)


def run(f):
  unknown = [r for r in f.runs if r not in RUNS]
  if unknown:
    raise ValueError(f"--runs: unknown {unknown}; use some of {RUNS}.")
  measured = [measure(r, f) for _ in range(f.repeats) for r in f.runs]
  rows = summarize(measured)
  print(harness.machine())
  print(f"Quickstart flag file, --epochs={f.epochs}, {f.repeats} round(s):")
  print(format_rows(rows))
  if f.out:
    with open(f.out, "w") as out:
      json.dump(rows, out, indent=1)
  return rows


if __name__ == "__main__":
  harness.main(define_flags, run)
