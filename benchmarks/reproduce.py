r"""The ITOP paper's claims in miniature, on offline Fashion-MNIST (CPU).

Trains every (model, sparsity, method, seed) of the grid with the Fashion-MNIST
launcher (`launchers.trainer.train`, the code path of `train_cifar.py`), then
writes a Markdown table (test accuracy mean +- std over seeds, final R_s,
training FLOPs against dense) and two PNG plots (R_s over training steps per
method; accuracy against final R_s) to --out.

Methods (steps_per_epoch = 60000 // batch_size = 468 at batch 128):
- dense: no sparsity.
- static: ERK random mask, never updated.
- set / rigl: the exploration of the original papers: one update per epoch
  (SET's Delta T), RigL stopping at 75% of training (RigL's end_step).
- set_itop / rigl_itop: the same growth criteria exploring more, as ITOP
  prescribes: an update every --itop_update_interval steps until the end of
  training, and --itop_multiplier times longer training (1 by default, to fit
  the time budget).

Finished runs are kept under --work_dir (results.json per run) and skipped on
a second invocation, so an interrupted reproduction continues where it
stopped; a run killed mid-way resumes from its checkpoint.

  python benchmarks/reproduce.py                 # 60-80 minutes on 2 CPUs
  python benchmarks/reproduce.py --models=lenet_300_100:5 --seeds=0

The default budget trains LeNet-300-100 for 5 epochs and the small CNN for 2.
The paper trains for 250. On 2 CPU cores the grid took 77 minutes
(docs/reproduction.md), about 60 when no run is slowed by the machine.
"""

import collections
import json
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make `launchers` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import itop_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras

from benchmarks import harness
from launchers import launcher_flags
from launchers import trainer
from launchers import datasets

METHODS = ("dense", "static", "set", "rigl", "set_itop", "rigl_itop")
RATE_TAG = "itop/exploration_rate"


def define_flags(flag_values=flags.FLAGS):
  """Defines the reproduction's flags on `flag_values`."""

  define = launcher_flags.flag_definer(flag_values)
  define("list", "models", ["lenet_300_100:5", "small_cnn:2"],
         "model:epochs pairs (lenet_300_100, small_cnn).")
  define("list", "sparsities", ["0.9", "0.95", "0.98"], "Sparsities.")
  define("list", "methods", list(METHODS), f"Subset of {METHODS}.")
  define("list", "seeds", ["0", "1", "2"], "Seeds.")
  define("integer", "batch_size", 128, "Batch size.")
  define("float", "lr", 0.05, "Peak SGD learning rate (x0.1 at 1/2, 3/4).")
  define("integer", "itop_update_interval", 100,
         "Delta T of set_itop / rigl_itop, in steps.")
  define("integer", "itop_multiplier", 1,
         "Training-length multiplier of set_itop / rigl_itop.")
  define("string", "data_dir", None, "TFDS data directory.")
  define("string", "manual_dir", None,
         "Fashion-MNIST IDX .gz files (default /usr/share/datasets/"
         "fashion-mnist).")
  define("string", "work_dir", "runs/reproduce",
         "One model_dir per run; finished runs are skipped.")
  define("string", "out", "docs",
         "Where reproduction.md, reproduction.json and the PNGs go.")
  define("integer", "verbose", 0, "Keras verbosity of each run.")

  def validate(f):
    for item in f["models"]:
      name, _, epochs = item.partition(":")
      if name not in ("lenet_300_100", "small_cnn") or not epochs.isdigit() \
          or int(epochs) < 1:
        raise flags.ValidationError(
            f"--models entry {item!r}: use lenet_300_100:EPOCHS or "
            "small_cnn:EPOCHS with EPOCHS >= 1.")
    for s in f["sparsities"]:
      if not 0.0 < float(s) < 1.0:
        raise flags.ValidationError(f"--sparsities: {s} is not in (0, 1).")
    unknown = set(f["methods"]) - set(METHODS)
    if unknown:
      raise flags.ValidationError(
          f"--methods: unknown {sorted(unknown)}; use some of {METHODS}.")
    if f["itop_update_interval"] < 1 or f["itop_multiplier"] < 1:
      raise flags.ValidationError(
          "--itop_update_interval and --itop_multiplier must be >= 1.")
    return True

  flags.register_multi_flags_validator(
      ["models", "sparsities", "methods", "itop_update_interval",
       "itop_multiplier"], validate, flag_values=flag_values)


def method_flags(method, steps_per_epoch, epochs, f):
  """Launcher flags that make `method` out of the generic ones."""
  if method in ("dense", "static"):
    return [f"--method={method}"]
  grow = "set" if method.startswith("set") else "rigl"
  if method.endswith("_itop"):
    return [f"--method={grow}", f"--update_interval={f.itop_update_interval}",
            "--end_step=0", f"--multiplier={f.itop_multiplier}"]
  end = int(0.75 * epochs * steps_per_epoch) if grow == "rigl" else 0
  return [f"--method={grow}", f"--update_interval={steps_per_epoch}",
          f"--end_step={end}"]


def grid(f):
  """(name, model, epochs, sparsity, method, seed) of every run."""
  runs = []
  for item in f.models:
    model, _, epochs = item.partition(":")
    for method in f.methods:
      for sparsity in ([0.0] if method == "dense"
                       else [float(s) for s in f.sparsities]):
        for seed in (int(s) for s in f.seeds):
          name = f"{model}_{method}_{sparsity:g}_seed{seed}"
          runs.append((name, model, int(epochs), sparsity, method, seed))
  return runs


def read_rate_curve(log_dir):
  """[(step, R_s)] from the ITOPCallback's TensorBoard events in log_dir."""
  points = {}
  if not tf.io.gfile.isdir(log_dir):
    return []
  for path in sorted(tf.io.gfile.glob(os.path.join(log_dir, "events.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == RATE_TAG:
          points[int(event.step)] = float(tf.make_ndarray(value.tensor))
  return sorted(points.items())


def train_one(f, name, model, epochs, sparsity, method, seed,
              steps_per_epoch):
  """Trains one run with the launcher (or reads its finished results)."""
  model_dir = os.path.join(f.work_dir, name)
  done = os.path.join(model_dir, "results.json")
  if not os.path.exists(done):
    fv = flags.FlagValues()
    launcher_flags.define_flags(*launcher_flags.CIFAR, flag_values=fv)
    args = ["--dataset=fashion_mnist", f"--model={model}",
            f"--epochs={epochs}", f"--sparsity={sparsity}",
            f"--batch_size={f.batch_size}", f"--lr={f.lr}",
            f"--seed={seed}", f"--model_dir={model_dir}",
            f"--verbose={f.verbose}", "--eval_every=0",
            "--checkpoint_every=1000", "--frontend=tf_keras"]
    if f.data_dir:
      args.append(f"--data_dir={f.data_dir}")
    if f.manual_dir:
      args.append(f"--manual_dir={f.manual_dir}")
    args += method_flags(method, steps_per_epoch, epochs, f)
    fv(["reproduce", *args])
    trainer.train(fv)
    keras.backend.clear_session()
  with open(done) as fh:
    results = json.load(fh)
  results.update(name=name, method=method, sparsity_target=sparsity,
                 epochs=epochs)
  results.pop("layers", None)
  curve = [] if method == "dense" else read_rate_curve(
      os.path.join(model_dir, "tensorboard", "itop"))
  if curve and curve[-1][0] < results["step"]:  # R_s holds until the end
    curve.append((results["step"], results["exploration_rate"]))
  results["rate_curve"] = curve
  return results


def aggregate(results):
  """Rows of the table: one per (model, sparsity, method), over seeds."""
  groups = collections.OrderedDict()
  for r in results:
    groups.setdefault((r["model"], r["sparsity_target"], r["method"]),
                      []).append(r)
  rows = []
  for (model, sparsity, method), rs in groups.items():
    acc = np.array([r["test_accuracy"] for r in rs])
    rows.append({
        "model": model, "sparsity": sparsity, "method": method,
        "seeds": len(rs), "epochs": rs[0]["epochs"] * rs[0]["multiplier"],
        "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
        "exploration_rate": float(np.mean(
            [r["exploration_rate"] for r in rs])),
        "train_flops": float(np.mean([r["train_flops"] for r in rs])),
    })
  return rows


def markdown_table(rows):
  """The rows as a Markdown table."""
  lines = ["| model | sparsity | method | epochs | test accuracy (%) | "
           "final R_s | training FLOPs (x dense) |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    sparsity = "0 (dense)" if r["method"] == "dense" else f"{r['sparsity']:g}"
    lines.append(
        f"| {r['model']} | {sparsity} | {r['method']} | {r['epochs']} | "
        f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} | "
        f"{r['exploration_rate']:.3f} | {r['train_flops']:.3f} |")
  return "\n".join(lines)


def _spearman(x, y):
  """Spearman rank correlation of two sequences (ties broken by order)."""
  rx = np.argsort(np.argsort(x, kind="stable"), kind="stable")
  ry = np.argsort(np.argsort(y, kind="stable"), kind="stable")
  if len(x) < 3 or rx.std() == 0 or ry.std() == 0:
    return float("nan")
  return float(np.corrcoef(rx, ry)[0, 1])


def claims(results, rows):
  """The paper's three claims, checked per (model, sparsity).

  Returns:
    Markdown lines: (1) R_s order static < SET/RigL < their ITOP versions;
    (2) Spearman correlation of accuracy and final R_s over the sparse runs;
    (3) RigL-ITOP accuracy minus dense accuracy, and whether it is within
    one (dense) standard deviation.
  """
  lines = ["| model | sparsity | R_s: static < SET, RigL < ITOP | Spearman("
           "accuracy, R_s) over sparse runs | RigL-ITOP - dense (points) |",
           "|---|---|---|---|---|"]
  by = {(r["model"], r["sparsity"], r["method"]): r for r in rows}
  for model in dict.fromkeys(r["model"] for r in rows):
    dense = by.get((model, 0.0, "dense"))
    for sparsity in sorted({r["sparsity"] for r in rows
                            if r["model"] == model and r["sparsity"]}):
      rate = {m: by[(model, sparsity, m)]["exploration_rate"]
              for m in METHODS if (model, sparsity, m) in by}
      order = "n/a"
      if {"static", "set", "rigl", "set_itop", "rigl_itop"} <= set(rate):
        ok = (rate["static"] < min(rate["set"], rate["rigl"])
              and rate["set"] < rate["set_itop"]
              and rate["rigl"] < rate["rigl_itop"])
        order = "yes" if ok else "no"
      runs = [r for r in results if r["model"] == model
              and r["sparsity_target"] == sparsity and r["method"] != "dense"]
      rho = _spearman([r["exploration_rate"] for r in runs],
                      [r["test_accuracy"] for r in runs])
      gap = "n/a"
      itop = by.get((model, sparsity, "rigl_itop"))
      if itop and dense:
        diff = 100 * (itop["accuracy_mean"] - dense["accuracy_mean"])
        within = abs(diff) <= 100 * max(dense["accuracy_std"],
                                        itop["accuracy_std"])
        gap = f"{diff:+.2f} ({'within' if within else 'beyond'} 1 std)"
      rho = "n/a" if np.isnan(rho) else f"{rho:+.2f}"
      lines.append(f"| {model} | {sparsity:g} | {order} | {rho} "
                   f"({len(runs)} runs) | {gap} |")
  return lines


def plot(results, rows, out):
  """Writes reproduction_rate.png and reproduction_accuracy.png to out."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  models = list(dict.fromkeys(r["model"] for r in rows))
  sparsities = sorted({r["sparsity"] for r in rows if r["method"] != "dense"})
  methods = [m for m in METHODS if m not in ("dense",)]
  colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
  paths = []

  fig, axes = plt.subplots(len(models), max(len(sparsities), 1),
                           figsize=(4 * max(len(sparsities), 1),
                                    3.2 * len(models)),
                           squeeze=False, sharey=True)
  for i, model in enumerate(models):
    for j, sparsity in enumerate(sparsities):
      ax = axes[i][j]
      for method in methods:
        curves = [r["rate_curve"] for r in results
                  if r["model"] == model and r["method"] == method
                  and r["sparsity_target"] == sparsity and r["rate_curve"]]
        if not curves:
          continue
        steps = [s for s, _ in curves[0]]
        n = min(len(c) for c in curves)
        mean = np.mean([[v for _, v in c[:n]] for c in curves], axis=0)
        ax.step(steps[:n], mean, where="post", color=colors[method],
                label=method)
      ax.set_title(f"{model}, sparsity {sparsity:g}", fontsize=9)
      ax.set_xlabel("training step")
      if j == 0:
        ax.set_ylabel("R_s (ever-active fraction)")
      ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=8)
  fig.tight_layout()
  paths.append(os.path.join(out, "reproduction_rate.png"))
  fig.savefig(paths[-1], dpi=110)
  plt.close(fig)

  markers = {s: m for s, m in zip(sparsities, "os^vD")}
  fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4),
                           squeeze=False)
  for i, model in enumerate(models):
    ax = axes[0][i]
    for r in rows:
      if r["model"] != model:
        continue
      if r["method"] == "dense":
        ax.axhline(100 * r["accuracy_mean"], color=colors["dense"], ls="--",
                   label="dense")
        continue
      ax.errorbar(r["exploration_rate"], 100 * r["accuracy_mean"],
                  yerr=100 * r["accuracy_std"], color=colors[r["method"]],
                  marker=markers[r["sparsity"]], ls="none", capsize=2)
    for method in methods:
      ax.plot([], [], color=colors[method], marker="o", ls="none",
              label=method)
    for sparsity, marker in markers.items():
      ax.plot([], [], color="gray", marker=marker, ls="none",
              label=f"sparsity {sparsity:g}")
    ax.set_title(model, fontsize=10)
    ax.set_xlabel("final R_s")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  paths.append(os.path.join(out, "reproduction_accuracy.png"))
  fig.savefig(paths[-1], dpi=110)
  plt.close(fig)
  return paths


def run(f):
  """Trains the grid, writes table, JSON and plots; returns the rows."""
  spec = datasets.DATASETS["fashion_mnist"]
  builder = datasets.builder(spec, f.data_dir, f.manual_dir)
  steps_per_epoch = datasets.num_train_examples(builder, spec) // f.batch_size
  runs = grid(f)
  start = time.time()
  results = []
  for n, (name, model, epochs, sparsity, method, seed) in enumerate(runs, 1):
    t = time.time()
    results.append(train_one(f, name, model, epochs, sparsity, method, seed,
                             steps_per_epoch))
    r = results[-1]
    print(f"[{n}/{len(runs)}] {name}: accuracy={r['test_accuracy']:.4f} "
          f"R_s={r['exploration_rate']:.3f} ({time.time() - t:.0f} s, "
          f"{time.time() - start:.0f} s in all)", flush=True)
  rows = aggregate(results)
  os.makedirs(f.out, exist_ok=True)
  table = markdown_table(rows)
  with open(os.path.join(f.out, "reproduction.json"), "w") as out:
    json.dump({"rows": rows, "runs": results}, out, indent=1)
  checks = "\n".join(claims(results, rows))
  with open(os.path.join(f.out, "reproduction_table.md"), "w") as out:
    out.write(table + "\n\n" + checks + "\n")
  paths = plot(results, rows, f.out)
  print(table)
  print()
  print(checks)
  print("wrote", ", ".join(paths))
  return rows


if __name__ == "__main__":
  harness.main(define_flags, run)
