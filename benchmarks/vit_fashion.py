r"""A small ViT on Fashion-MNIST: dense, static, SET-ITOP and RigL-ITOP.

Keras 3 on the backend KERAS_BACKEND names (JAX is the one measured). A
Vision Transformer built from Keras layers (patches of --patch pixels by a
strided Conv2D, a depthwise convolution as position encoding, --depth blocks
of MultiHeadAttention and a two-layer MLP, mean pooling, a Dense head) is
trained per variant and seed for --epochs on the offline Fashion-MNIST IDX
files, with the same data order, optimizer and schedule:

- dense: the plain model;
- static_<s>: `itop_tf.sparsify` at sparsity s with no exploration
  (`initial_prune_fraction=0`: the random ERK mask stays);
- set_<s>, rigl_<s>: ITOP with random (SET) or gradient (RigL) growth, a
  mask update every --update_interval steps.

Every kernel is sparse: the attention projections (inside MultiHeadAttention)
and the MLPs, the patch embedding and the head. Printed per variant: the
test accuracy (mean and spread over seeds), R_s, the training step time
against dense (median over seeds of each run's mean step time, first epoch
left out: it compiles), and, from a process on the TensorFlow backend, the
LiteRT file's bytes against the dense file (`itop_tf.export_tflite`, sparse
weights stored sparse). --output writes the figures as JSON.

  KERAS_BACKEND=jax python benchmarks/vit_fashion.py --epochs=10 --seeds=3 \
      --output=docs/vit_fashion.json
"""

import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script: make `launchers` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import itop_tf
import keras
import numpy as np

from launchers import idx_files
from launchers import launcher_flags

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """Defines the benchmark's flags on `flag_values`."""
  define = launcher_flags.flag_definer(flag_values)

  def integer(name, default, help_text, lower_bound):
    flags.DEFINE_integer(name, default, help_text, lower_bound=lower_bound,
                         flag_values=flag_values)

  define("string", "data_dir", idx_files.DEFAULT_DIR,
         "Directory of the Fashion-MNIST IDX files.")
  integer("epochs", 10, "Epochs per run.", 2)
  integer("seeds", 3, "Seeds per variant.", 1)
  integer("batch_size", 128, "Batch size.", 1)
  integer("patch", 7, "Patch size (divides 28).", 1)
  integer("dim", 64, "Token width.", 8)
  integer("depth", 4, "Transformer blocks.", 1)
  integer("heads", 4, "Attention heads.", 1)
  integer("update_interval", 100, "Steps between mask updates.", 1)
  define("list", "sparsities", ["0.8", "0.9"], "Sparsities.")
  define("list", "variants", ["dense", "static", "set", "rigl"],
         "Variants: dense, static, set, rigl.")
  integer("train_examples", 0,
          "Use the first N training examples (0: all 60,000).", 0)
  define("string", "output", None, "Write the figures as JSON here.")
  define("string", "export_dir", None,
         "Internal: export the .keras files of this directory to LiteRT "
         "(run on KERAS_BACKEND=tensorflow) and print their sizes as JSON.")


def build_vit(patch=7, dim=64, depth=4, heads=4, classes=10):
  """The ViT: only Keras layers, so `.keras` files load on any backend."""
  if 28 % patch:
    raise ValueError(f"--patch={patch} must divide 28.")
  inp = keras.Input((28, 28, 1))
  x = keras.layers.Rescaling(1.0 / 255)(inp)
  x = keras.layers.Conv2D(dim, patch, strides=patch, name="patch_embed")(x)
  # Conditional position encoding (a depthwise conv over the patch grid).
  x = keras.layers.Add()([x, keras.layers.DepthwiseConv2D(
      3, padding="same", name="pos_conv")(x)])
  x = keras.layers.Reshape(((28 // patch) ** 2, dim))(x)
  for i in range(depth):
    h = keras.layers.LayerNormalization(name=f"ln{i}a")(x)
    h = keras.layers.MultiHeadAttention(heads, dim // heads,
                                        name=f"attn{i}")(h, h)
    x = keras.layers.Add()([x, h])
    h = keras.layers.LayerNormalization(name=f"ln{i}b")(x)
    h = keras.layers.Dense(2 * dim, activation="gelu", name=f"mlp{i}_in")(h)
    h = keras.layers.Dense(dim, name=f"mlp{i}_out")(h)
    x = keras.layers.Add()([x, h])
  x = keras.layers.LayerNormalization(name="ln_out")(x)
  x = keras.layers.GlobalAveragePooling1D()(x)
  return keras.Model(inp, keras.layers.Dense(classes, name="head")(x))


def variant_names(variants, sparsities):
  out = []
  for v in variants:
    if v == "dense":
      out.append("dense")
    elif v in ("static", "set", "rigl"):
      out.extend(f"{v}_{float(s):g}" for s in sparsities)
    else:
      raise ValueError(f"--variants: unknown {v!r}; use dense, static, set "
                       "or rigl.")
  return out


class _StepClock(keras.callbacks.Callback):
  """Wall time of each epoch's training steps."""

  def __init__(self):
    super().__init__()
    self.epoch_times = []
    self.steps = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()
    self.steps = 0

  def on_train_batch_end(self, batch, logs=None):
    self.steps += 1

  def on_epoch_end(self, epoch, logs=None):
    self.epoch_times.append((time.perf_counter() - self._start) / self.steps)


def run(name, seed, data, flag_values, save_dir):
  """Trains one variant with one seed; returns its figures."""
  (x, y), (x_test, y_test) = data
  keras.utils.set_random_seed(seed)
  model = build_vit(flag_values.patch, flag_values.dim, flag_values.depth,
                    flag_values.heads)
  steps = flag_values.epochs * (-(-len(x) // flag_values.batch_size))
  callbacks = [_StepClock()]
  if name != "dense":
    kind, sparsity = name.split("_")
    schedule = itop_tf.RegrowthSchedule(
        update_interval=flag_values.update_interval, total_steps=steps,
        initial_prune_fraction=0.0 if kind == "static" else 0.5)
    model = itop_tf.sparsify(model, sparsity=float(sparsity),
                             schedule=schedule, seed=seed,
                             grow="gradient" if kind == "rigl" else "random")
    callbacks.insert(0, itop_tf.ITOPCallback())
  lr = keras.optimizers.schedules.CosineDecay(1e-3, steps)
  model.compile(keras.optimizers.Adam(lr),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], jit_compile=True)
  model.fit(x, y, batch_size=flag_values.batch_size,
            epochs=flag_values.epochs, shuffle=True, verbose=0,
            callbacks=callbacks)
  acc = model.evaluate(x_test, y_test, batch_size=512, verbose=0,
                       return_dict=True)["accuracy"]
  out = {"variant": name, "seed": seed, "accuracy": float(acc),
         "step_ms": 1000 * float(np.mean(callbacks[-1].epoch_times[1:]))}
  if name != "dense":
    out["itop_rate"] = itop_tf.exploration_rate(model)
  if seed == 0:
    model.save(os.path.join(save_dir, f"{name}.keras"))
  return out


def export_sizes(directory):
  """{variant: LiteRT bytes} of every .keras file in `directory`."""
  from itop_tf import export  # needs TensorFlow: this process runs on it
  sizes = {}
  for fname in sorted(os.listdir(directory)):
    if not fname.endswith(".keras"):
      continue
    name = fname[:-len(".keras")]
    model = keras.saving.load_model(os.path.join(directory, fname),
                                    compile=False)
    path = os.path.join(directory, name + ".tflite")
    if name == "dense":
      sizes[name] = len(export.convert(model, sparse=False))
    else:
      sizes[name] = itop_tf.export_tflite(model, path).bytes
  return sizes


def summarize(runs, sizes):
  """One row per variant: mean accuracy, spread, R_s, step ratio, bytes."""
  dense_ms = np.median([r["step_ms"] for r in runs if r["variant"] == "dense"]
                       or [np.nan])
  rows = []
  for name in dict.fromkeys(r["variant"] for r in runs):
    mine = [r for r in runs if r["variant"] == name]
    acc = [r["accuracy"] for r in mine]
    row = {"variant": name, "seeds": len(mine),
           "accuracy": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
           "step_ms": float(np.median([r["step_ms"] for r in mine]))}
    row["step_vs_dense"] = row["step_ms"] / dense_ms
    if "itop_rate" in mine[0]:
      row["itop_rate"] = float(np.mean([r["itop_rate"] for r in mine]))
    if name in sizes:
      row["tflite_bytes"] = sizes[name]
      if "dense" in sizes:
        row["tflite_vs_dense"] = sizes[name] / sizes["dense"]
    rows.append(row)
  return rows


def table(rows):
  lines = ["| variant | accuracy (mean ± sd) | R_s | step vs dense | "
           "LiteRT bytes (vs dense) |", "| --- | --- | --- | --- | --- |"]
  for r in rows:
    rate = f"{r['itop_rate']:.3f}" if "itop_rate" in r else "-"
    size = (f"{r['tflite_bytes']:,} ({r.get('tflite_vs_dense', 1):.2f}x)"
            if "tflite_bytes" in r else "-")
    lines.append(
        f"| {r['variant']} | {100 * r['accuracy']:.2f} ± "
        f"{100 * r['accuracy_std']:.2f} ({r['seeds']} seeds) | {rate} | "
        f"{r['step_vs_dense']:.2f}x ({r['step_ms']:.1f} ms) | {size} |")
  return "\n".join(lines)


def main(argv):
  del argv
  if FLAGS.export_dir:
    print(json.dumps(export_sizes(FLAGS.export_dir)))
    return
  names = variant_names(FLAGS.variants, FLAGS.sparsities)
  idx_files.check_files(FLAGS.data_dir, ("train", "test"))
  x, y = idx_files.load("train", FLAGS.data_dir)
  if FLAGS.train_examples:
    x, y = x[:FLAGS.train_examples], y[:FLAGS.train_examples]
  data = ((x[..., None], y.astype("int32")),
          tuple(a for a in idx_files.load("test", FLAGS.data_dir)))
  data = (data[0], (data[1][0][..., None], data[1][1].astype("int32")))
  runs = []
  with tempfile.TemporaryDirectory() as save_dir:
    for seed in range(FLAGS.seeds):
      for name in names:
        runs.append(run(name, seed, data, FLAGS, save_dir))
        print(json.dumps(runs[-1]), flush=True)
    sizes = {}
    if importlib.util.find_spec("tensorflow") is None:
      print("No LiteRT sizes: the converter needs TensorFlow, not installed.")
    else:
      env = dict(os.environ, KERAS_BACKEND="tensorflow")
      done = subprocess.run(
          [sys.executable, os.path.abspath(__file__),
           f"--export_dir={save_dir}"], env=env, capture_output=True,
          text=True, check=False)
      if done.returncode:
        raise RuntimeError("The LiteRT export failed:\n" + done.stderr[-3000:])
      sizes = json.loads(done.stdout.strip().splitlines()[-1])
  rows = summarize(runs, sizes)
  print(f"ViT on Fashion-MNIST, Keras 3 {keras.backend.backend()}, "
        f"{FLAGS.epochs} epochs, patch {FLAGS.patch}, dim {FLAGS.dim}, depth "
        f"{FLAGS.depth}, update every {FLAGS.update_interval} steps")
  print(table(rows))
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump({"backend": keras.backend.backend(),
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                 "date": time.strftime("%Y-%m-%d"),
                 "flags": {k: getattr(FLAGS, k) for k in (
                     "epochs", "seeds", "batch_size", "patch", "dim", "depth",
                     "heads", "update_interval", "train_examples")},
                 "runs": runs, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
