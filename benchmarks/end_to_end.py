r"""End-to-end training time and accuracy, per front-end and method.

Two tasks, both on offline Fashion-MNIST (`dataset-fashion-mnist`):

- `--task=paper`: LeNet-300-100 as the ITOP paper's official PyTorch code
  trains it: SGD 0.05 with Nesterov momentum 0.9, L2 5e-4 on every weight
  (coupled, as PyTorch's `weight_decay`), batch 128, learning rate x0.1 at
  50% and 75% of training, ERK, 98% sparsity, Delta T = 100, 20 epochs.
  Methods dense, static, set_itop, rigl_itop on every --frontends entry
  (tf_keras, and Keras 3 on TensorFlow, JAX and PyTorch). `torch_loop`
  trains the dense model in a bare PyTorch loop (the official code's
  framework, no sparsity): it tells how fast the machine is in this run.
  The PyTorch runs train on the GPU when PyTorch sees one (as the official
  code, which calls `.cuda()`), else on the CPU.
  With --official_code=DIR (a checkout of the paper's code,
  github.com/Shiweiliuiiiiiii/In-Time-Over-Parameterization, which this
  project does not ship), front-end `official` trains the same four methods
  with that code's `Masking` and `LeNet_300_100`, step by step as its
  `main.py` does, on the same in-memory data (its DataLoader and per-100-step
  logging left out, which only makes it faster), and the table gains each
  run's time over the official code's for the same method.
  With --torch_init the Keras models start from PyTorch's default
  initialisation, as the official code's and `torch_loop`'s do: RigL-ITOP's
  R_s depends on it (BENCHMARKS.md).
- `--task=quickstart`: the quickstart's small CNN and LeNet-300-100 at 90%,
  Delta T = 100, --epochs epochs, as dense, TF-MOT constant sparsity
  (`prune_low_magnitude`, tf_keras only), itop_tf static, SET-ITOP and
  RigL-ITOP, each with steps_per_execution 1 and --steps_per_execution.

Every run is a fresh child process (Keras 3 picks its backend at import),
and the runs are interleaved over --repeats rounds, so a drift of the
machine hits every variant alike. Each child times `model.fit` alone (every
training step, the mask updates, compiling on the first call; data loading,
model building and evaluation are outside), then evaluates on the test set.
The table gives the median time, its ratio to dense of the same front-end
and steps_per_execution in the same run, test accuracy (mean +- std over
the repeats, which use --seed) and R_s, and whether every repeat ended with
bit-identical weights (a given seed is deterministic).

  python benchmarks/end_to_end.py --task=paper          # about 25 minutes
  python benchmarks/end_to_end.py --task=quickstart --epochs=1
"""

import hashlib
import json
import os
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import itop_tf
from absl import flags
import numpy as np

from benchmarks import harness
from launchers import datasets
from launchers import idx_files
from launchers import launcher_flags
from launchers import models

FRONTENDS = ("tf_keras", "keras3:tensorflow", "keras3:jax", "keras3:torch",
             "torch_loop", "official")
TORCH_FRONTENDS = ("torch_loop", "official")  # plain PyTorch, no Keras
METHODS = ("dense", "tfmot", "static", "set_itop", "rigl_itop")
GROW = {"static": "random", "set_itop": "random", "rigl_itop": "gradient"}
TASKS = {
    # task: (models, sparsity, methods, default epochs)
    "paper": (("lenet_300_100",), 0.98,
              ("dense", "static", "set_itop", "rigl_itop"), 20),
    "quickstart": (("small_cnn", "lenet_300_100"), 0.9,
                   ("dense", "tfmot", "static", "set_itop", "rigl_itop"), 2),
}
LR, MOMENTUM, L2, BATCH, UPDATE_INTERVAL = 0.05, 0.9, 5e-4, 128, 100
# The command that starts a child, before its flags; None: this script.
# benchmarks/without_tensorflow.py sets it so that children run through it.
CHILD_PREFIX = None


def define_flags(flag_values=flags.FLAGS):
  """Defines the benchmark's flags on `flag_values`."""

  define = launcher_flags.flag_definer(flag_values)
  define("enum", "task", "paper", "paper or quickstart (see the module "
         "docstring).", list(TASKS))
  define("list", "frontends", None, "Front-ends to run (default: all for "
         "paper, tf_keras for quickstart, the one with TF-MOT).")
  define("list", "methods", None, "Methods (default: the task's).")
  define("list", "models", None, "Models (default: the task's; "
         "quickstart: small_cnn,lenet_300_100).")
  define("integer", "epochs", None, "Epochs (default: 20 for paper, 2 for "
         "quickstart).")
  define("integer", "steps_per_execution", 10, "Each Keras front-end also "
         "runs with this steps_per_execution, beside 1 (not on PyTorch).")
  define("integer", "repeats", 3, "Interleaved rounds of every run.")
  define("integer", "seed", 0, "Seed of every run.")
  define("integer", "train_examples", 0, "Use the first N training examples "
         "(0: all 60000); for smoke tests.")
  define("string", "data_dir", idx_files.DEFAULT_DIR,
         "Directory of the four Fashion-MNIST IDX .gz files.")
  define("string", "official_code", None, "Directory of a checkout of the "
         "paper's official code (its sparselearning/ package): adds "
         "front-end `official` to the paper task.")
  define("bool", "torch_init", False, "Keras models start from PyTorch's "
         "default initialisation (every kernel and bias uniform in "
         "+-1/sqrt(fan_in), as nn.Linear and nn.Conv2d), as the official "
         "code's LeNet does, instead of Keras' (Glorot kernels, zero "
         "biases).")
  define("string", "child", None, "Internal: one run as JSON.")

  def validate(f):
    if f["frontends"] and set(f["frontends"]) - set(FRONTENDS):
      raise flags.ValidationError(
          f"--frontends must be some of {','.join(FRONTENDS)}.")
    if f["methods"] and set(f["methods"]) - set(METHODS):
      raise flags.ValidationError(
          f"--methods must be some of {','.join(METHODS)}.")
    task_models = TASKS[f["task"]][0]
    if f["models"] and set(f["models"]) - set(task_models):
      raise flags.ValidationError(
          f"--models must be some of {','.join(task_models)} for "
          f"--task={f['task']}.")
    if f["repeats"] < 1 or (f["epochs"] is not None and f["epochs"] < 1):
      raise flags.ValidationError("--repeats and --epochs must be >= 1.")
    if f["steps_per_execution"] < 1 or f["train_examples"] < 0:
      raise flags.ValidationError("--steps_per_execution must be >= 1 and "
                                  "--train_examples >= 0.")
    if "official" in (f["frontends"] or ()) and not f["official_code"]:
      raise flags.ValidationError(
          "--frontends=official needs --official_code=DIR, a checkout of "
          "github.com/Shiweiliuiiiiiii/In-Time-Over-Parameterization.")
    if f["official_code"] and not os.path.isfile(
        os.path.join(f["official_code"], "sparselearning", "core.py")):
      raise flags.ValidationError(
          f"--official_code={f['official_code']} has no "
          "sparselearning/core.py: give the root of a checkout of the "
          "paper's code.")
    if f["official_code"] and f["task"] != "paper":
      raise flags.ValidationError(
          "--official_code is for --task=paper (the official code trains "
          "LeNet-300-100 only here).")
    return True

  flags.register_multi_flags_validator(
      ["frontends", "methods", "models", "repeats", "epochs",
       "steps_per_execution", "train_examples", "official_code", "task"],
      validate, flag_values=flag_values)


def epochs_of(f):
  """--epochs, or the task's default."""
  return f.epochs or TASKS[f.task][3]


def steps_per_epoch(examples):
  """Steps of one epoch of `examples` at batch `BATCH` (last one partial)."""
  return -(-examples // BATCH)


def runs(f):
  """The (frontend, model, method, steps_per_execution) runs of one round."""
  names, _, methods, _ = TASKS[f.task]
  names, methods = f.models or names, f.methods or methods
  if f.frontends:
    frontends = f.frontends
  elif f.task == "paper":
    frontends = [x for x in FRONTENDS if x != "official" or f.official_code]
  else:
    frontends = ("tf_keras",)
  spes = tuple(dict.fromkeys((1, f.steps_per_execution)))
  out = []
  for frontend in frontends:
    for name in names:
      if frontend == "torch_loop":  # the yardstick: dense LeNet, one step a call
        if name == "lenet_300_100":
          out.append({"frontend": frontend, "model": name, "method": "dense",
                      "steps_per_execution": 1})
        continue
      for spe in spes:
        for method in methods:
          if method == "tfmot" and frontend != "tf_keras":
            continue  # TF-MOT exists for tf_keras only
          if frontend in ("keras3:torch", "official") and spe != 1:
            continue  # one step per call: Keras refuses more on PyTorch
          out.append({"frontend": frontend, "model": name, "method": method,
                      "steps_per_execution": spe})
  return out


def load_data(data_dir, train_examples=0):
  """Normalised Fashion-MNIST as numpy: (x_train, y_train, x_test, y_test)."""
  spec = datasets.DATASETS["fashion_mnist"]
  out = []
  for split in ("train", "test"):
    x, y = idx_files.load(split, data_dir)
    if split == "train" and train_examples:
      x, y = x[:train_examples], y[:train_examples]
    x = (x[..., None].astype("float32") / 255.0 - spec.mean[0]) / spec.std[0]
    out += [x, y.astype("int32")]
  return tuple(out)


def torch_style_init(model, seed):
  """Draws every kernel and bias as PyTorch's nn.Linear/nn.Conv2d do.

  Both uniform in +-1/sqrt(fan_in), fan_in being all of a kernel's dimensions
  but the last (inputs, or kernel height x width x input channels). Keras'
  defaults are Glorot-uniform kernels and zero biases.

  Args:
    model: a built tf_keras or Keras 3 model, changed in place.
    seed: seed of the draw.

  Returns:
    `model`.
  """
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
      continue
    bound = 1 / np.sqrt(np.prod(kernel.shape[:-1]))
    for var in (kernel, getattr(layer, "bias", None)):
      if var is not None:
        var.assign(rng.uniform(-bound, bound, tuple(var.shape)).astype(
            "float32"))
  return model


def weights_digest(model, keras):
  """SHA-1 of every weight's bytes: equal digests mean identical runs."""
  h = hashlib.sha1()
  for w in model.weights:
    h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes()
             if hasattr(keras, "ops") else w.numpy().tobytes())
  return h.hexdigest()[:12]


def torch_device():
  """Where the PyTorch runs train: the GPU if PyTorch sees one, else the CPU.

  The paper's code trains on the GPU (it calls `.cuda()`).
  """
  import torch
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_data(f):
  """`load_data` as PyTorch tensors on `torch_device()`, labels int64.

  Returns:
    (x, y, x_test, y_test).
  """
  import torch
  x, y, x_test, y_test = (torch.from_numpy(a).to(torch_device()) for a in
                          load_data(f.data_dir, f.train_examples))
  return x, y.long(), x_test, y_test.long()


def torch_seconds(start):
  """Seconds since `start` once the GPU's queued work (if any) is done."""
  import torch
  if torch.cuda.is_available():
    torch.cuda.synchronize()
  return time.perf_counter() - start


def torch_sgd(model):
  """The paper's SGD: Nesterov momentum, coupled weight decay (L2)."""
  import torch
  return torch.optim.SGD(model.parameters(), LR, momentum=MOMENTUM,
                         nesterov=True, weight_decay=L2)


def torch_result(run, model, seconds, steps, x_test, y_test, rate=None,
                 sparsity=0.0):
  """A PyTorch run's result row: its test accuracy and weights digest."""
  import torch
  with torch.no_grad():
    accuracy = (model(x_test).argmax(1) == y_test).float().mean()
  return dict(run, seconds=seconds, accuracy=float(accuracy), steps=steps,
              digest=torch_digest(model), rate=rate, sparsity=sparsity)


def train_torch_loop(run, f):
  """The dense LeNet-300-100 in a bare PyTorch loop: the machine's yardstick.

  What the paper's official code does per step for a dense model (in-memory
  tensors, a shuffled batch, SGD with Nesterov momentum and coupled weight
  decay), with no framework around it. Not the official code: it tells how
  fast this machine is for that code's framework in this run.
  """
  import torch
  epochs = epochs_of(f)
  x, y, x_test, y_test = torch_data(f)
  torch.manual_seed(f.seed)
  model = torch.nn.Sequential(
      torch.nn.Flatten(), torch.nn.Linear(784, 300), torch.nn.ReLU(),
      torch.nn.Linear(300, 100), torch.nn.ReLU(),
      torch.nn.Linear(100, 10)).to(torch_device())
  opt = torch_sgd(model)
  per_epoch = steps_per_epoch(len(x))
  sched = torch.optim.lr_scheduler.MultiStepLR(
      opt, [epochs * per_epoch // 2, epochs * per_epoch * 3 // 4])
  start = time.perf_counter()
  for _ in range(epochs):
    order = torch.randperm(len(x), device=x.device)
    for i in range(per_epoch):
      idx = order[i * BATCH:(i + 1) * BATCH]
      loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
      opt.zero_grad()
      loss.backward()
      opt.step()
      sched.step()
  seconds = torch_seconds(start)
  return torch_result(run, model, seconds, epochs * per_epoch, x_test, y_test)


def torch_digest(model):
  """SHA-1 of a PyTorch model's parameters (as `weights_digest`)."""
  h = hashlib.sha1()
  for p in model.parameters():
    h.update(p.detach().cpu().numpy().tobytes())
  return h.hexdigest()[:12]


def train_official(run, f):
  """One paper-task run with the official code from --official_code.

  Its `sparselearning.core.Masking` (ERK, magnitude death, random growth for
  SET and static, gradient growth for RigL, death rate 0.5 with cosine decay,
  no redistribution; `fix` for static) and `sparselearning.models.
  LeNet_300_100`, driven per step as its `main.py` `train()` does: forward,
  `nll_loss`, the loss and accuracy read back with `.item()`, backward, then
  `Masking.step()` (the optimizer step, the re-masking and every
  `update_frequency` steps a prune/grow) or, dense, `optimizer.step()`;
  `MultiStepLR` at 50% and 75% of the epochs. Batches come shuffled from the
  same in-memory tensors as `torch_loop`, not its DataLoader, and its
  printing goes to a buffer: both only make it faster.
  """
  import contextlib
  import io
  import types
  import torch
  import torch.nn.functional as F
  sys.path.insert(0, os.path.abspath(f.official_code))
  if not torch.cuda.is_available():
    # The official code moves every mask with `.cuda()`; without a GPU that
    # would raise, so here it leaves tensors on the CPU.
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
  from sparselearning import core as official_core
  from sparselearning import models as official_models
  method, epochs = run["method"], epochs_of(f)
  x, y, x_test, y_test = torch_data(f)
  torch.manual_seed(f.seed)
  model = official_models.LeNet_300_100().to(torch_device())
  opt = torch_sgd(model)
  sched = torch.optim.lr_scheduler.MultiStepLR(
      opt, [epochs // 2, epochs * 3 // 4])  # per epoch, as main.py steps it
  per_epoch = steps_per_epoch(len(x))
  log = io.StringIO()
  mask = None
  if method != "dense":
    args = types.SimpleNamespace(fix=method == "static",
                                 update_frequency=UPDATE_INTERVAL)
    decay = official_core.CosineDecay(0.5, per_epoch * epochs)
    mask = official_core.Masking(
        opt, death_rate=0.5, death_mode="magnitude", death_rate_decay=decay,
        growth_mode=GROW[method], redistribution_mode="none", args=args)
    with contextlib.redirect_stdout(log):
      mask.add_module(model, sparse_init="ERK", density=1 - TASKS["paper"][1])
  start = time.perf_counter()
  with contextlib.redirect_stdout(log):
    for _ in range(epochs):
      model.train()
      train_loss, correct = 0.0, 0
      order = torch.randperm(len(x), device=x.device)
      for i in range(per_epoch):
        idx = order[i * BATCH:(i + 1) * BATCH]
        data, target = x[idx], y[idx]
        opt.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        # Read back every step, as main.py does: part of its loop's cost.
        train_loss += loss.item()
        pred = output.argmax(dim=1, keepdim=True)
        correct += pred.eq(target.view_as(pred)).sum().item()
        loss.backward()
        if mask is not None:
          mask.step()
        else:
          opt.step()
      sched.step()
  seconds = torch_seconds(start)
  model.eval()
  rate, sparsity = None, 0.0
  if mask is not None:
    masks = list(mask.masks.values())
    size = sum(m.numel() for m in masks)
    sparsity = 1 - sum(int((m != 0).sum()) for m in masks) / size
    rate = sum(int((m != 0).sum()) for m in mask.fired_masks.values()) / size
  return torch_result(run, model, seconds, epochs * per_epoch, x_test, y_test,
                      rate, sparsity)


def train(run, f):
  """One run in this process: builds, trains (timed), evaluates."""
  frontend, name, method = run["frontend"], run["model"], run["method"]
  if frontend == "torch_loop":
    return train_torch_loop(run, f)
  if frontend == "official":
    return train_official(run, f)
  if frontend == "tf_keras":
    import tf_keras as keras
    import tensorflow_model_optimization as tfmot
    jit = True
  else:
    import keras
    jit = "auto"  # XLA on TensorFlow and JAX, eager on PyTorch
  sparsity, epochs = TASKS[f.task][1], epochs_of(f)
  x, y, x_test, y_test = load_data(f.data_dir, f.train_examples)
  steps = epochs * steps_per_epoch(len(x))
  keras.utils.set_random_seed(f.seed + 1)
  model = models.with_weight_decay(
      models.build(name, (28, 28, 1), 10, keras), keras, L2)
  if f.torch_init:
    torch_style_init(model, f.seed)
  callbacks = []
  if method == "tfmot":
    model = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
            sparsity, begin_step=0, frequency=UPDATE_INTERVAL))
    callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
  elif method != "dense":
    schedule = itop_tf.RegrowthSchedule(
        update_interval=UPDATE_INTERVAL, total_steps=steps,
        initial_prune_fraction=0.0 if method == "static" else 0.5)
    model = itop_tf.sparsify(model, sparsity=sparsity, schedule=schedule,
                             grow=GROW[method], seed=f.seed)
    callbacks.append(itop_tf.ITOPCallback())
  lr = keras.optimizers.schedules.PiecewiseConstantDecay(
      [steps // 2, steps * 3 // 4], [LR, LR * 0.1, LR * 0.01])
  model.compile(
      keras.optimizers.SGD(lr, momentum=MOMENTUM, nesterov=True),
      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"], jit_compile=jit,
      steps_per_execution=run["steps_per_execution"])
  start = time.perf_counter()
  model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0,
            callbacks=callbacks)
  seconds = time.perf_counter() - start
  accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0,
                            return_dict=True)["accuracy"]
  out = dict(run, seconds=seconds, accuracy=float(accuracy), steps=steps,
             digest=weights_digest(model, keras), rate=None, sparsity=0.0)
  if method == "tfmot":
    out["sparsity"] = tfmot_sparsity(model)
  elif method != "dense":
    out["rate"] = float(itop_tf.exploration_rate(model))
    report = itop_tf.sparsity_report(model)
    out["sparsity"] = 1 - (sum(r["active"] for r in report) /
                           sum(r["size"] for r in report))
  return out


def tfmot_sparsity(model):
  """Zero fraction of the masks of a TF-MOT `prune_low_magnitude` model."""
  masks = [mask.numpy() for mask in harness.tfmot_masks(model)]
  return 1 - sum(float(m.sum()) for m in masks) / sum(m.size for m in masks)


def child_args(run, f):
  """Command line of the child that does `run`."""
  return (CHILD_PREFIX or [sys.executable, os.path.abspath(__file__)]) + [
          "--child=" + json.dumps(run), f"--task={f.task}",
          f"--epochs={epochs_of(f)}", f"--seed={f.seed}",
          f"--train_examples={f.train_examples}", f"--data_dir={f.data_dir}"
         ] + ([f"--official_code={f.official_code}"] if f.official_code else []
              ) + (["--torch_init"] if f.torch_init else [])


def run_child(run, f):
  backend = None
  if run["frontend"].startswith("keras3:"):
    backend = run["frontend"].split(":")[1]
  elif run["frontend"] in TORCH_FRONTENDS:
    backend = "torch"  # itop_tf then loads torch before TF
  env = harness.child_environment(backend)
  out = subprocess.run(child_args(run, f), capture_output=True, text=True,
                       env=env, check=False)
  if out.returncode:
    raise RuntimeError(f"run {run} failed:\n{out.stderr[-3000:]}")
  # The child's result is its last JSON line (a runner may print after it).
  line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
  return json.loads(line)


def summarize(results):
  """Rows per run (over repeats): times, ratio to dense, accuracy, digest."""
  groups = {}
  for r in results:
    key = (r["frontend"], r["model"], r["steps_per_execution"], r["method"])
    groups.setdefault(key, []).append(r)
  def median_of(rs):
    return float(np.median([r["seconds"] for r in rs])) if rs else None

  rows = []
  for key, rs in groups.items():
    dense = median_of(groups.get(key[:3] + ("dense",)))
    official = median_of(groups.get(("official", key[1], 1, key[3])))
    median = median_of(rs)
    acc = [r["accuracy"] for r in rs]
    rows.append({
        "frontend": key[0], "model": key[1], "steps_per_execution": key[2],
        "method": key[3], "seconds": median,
        "all_seconds": [r["seconds"] for r in rs],
        "over_dense": median / dense if dense else None,
        "over_official": median / official if official else None,
        "accuracy": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
        "rate": rs[0]["rate"], "sparsity": rs[0]["sparsity"],
        "deterministic": len({r["digest"] for r in rs}) == 1,
        "repeats": len(rs)})
  return rows


def format_rows(rows):
  """The rows as a Markdown table.

  `/ official` (only when the official code ran) is a row's time over the
  official code's for the same method.
  """
  official = any(r["over_official"] for r in rows)
  lines = ["| front-end | model | spe | method | fit time (s), median "
           "[all] | / dense |" + (" / official |" if official else "") +
           " test accuracy | sparsity | R_s | identical repeats |",
           "|---" * (10 + official) + "|"]
  for r in rows:
    ratio = f"{r['over_dense']:.2f}x" if r["over_dense"] else "-"
    if official:
      ratio += (f" | {r['over_official']:.2f}x" if r["over_official"]
                else " | -")
    rate = f"{r['rate']:.3f}" if r["rate"] is not None else "-"
    times = ", ".join(f"{t:.1f}" for t in r["all_seconds"])
    lines.append(
        f"| {r['frontend']} | {r['model']} | {r['steps_per_execution']} | "
        f"{r['method']} | {r['seconds']:.1f} [{times}] | {ratio} | "
        f"{100 * r['accuracy']:.2f} +- {100 * r['accuracy_std']:.2f}% | "
        f"{r['sparsity']:.3f} | {rate} | "
        f"{'yes' if r['deterministic'] else 'NO'} ({r['repeats']}) |")
  return "\n".join(lines)


def run_all(f):
  """Every run of the task, interleaved over --repeats rounds."""
  results = []
  for round_ in range(f.repeats):
    for run in runs(f):
      r = run_child(run, f)
      print(f"round {round_ + 1}/{f.repeats}: {run['frontend']} "
            f"{run['model']} spe={run['steps_per_execution']} "
            f"{run['method']}: {r['seconds']:.1f} s, "
            f"accuracy {100 * r['accuracy']:.2f}%", flush=True)
      results.append(r)
  rows = summarize(results)
  print(f"machine: {harness.machine()}; task={f.task}; "
        f"epochs={epochs_of(f)}; seed={f.seed}; "
        f"init={'PyTorch' if f.torch_init else 'Keras'}; "
        f"{f.repeats} interleaved rounds")
  print(format_rows(rows))
  return rows


def run(f):
  """One child run (--child) or every run of the task."""
  if f.child:
    print(json.dumps(train(json.loads(f.child), f)))
    return None
  return run_all(f)


if __name__ == "__main__":
  harness.main(define_flags, run)
