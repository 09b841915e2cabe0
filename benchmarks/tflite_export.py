r"""What a sparse export gives: LiteRT file size, accuracy and latency.

Three tables, all through `itop_tf.export_tflite` and the LiteRT interpreter:

1. **Size and accuracy**: LeNet-300-100 and the small CNN trained with
   RigL-ITOP (ERK, Delta T = 100) on the offline Fashion-MNIST at each
   --sparsities, exported float32 and int8 (post-training quantization,
   calibrated on 200 training images); bytes raw and gzip against the dense
   float export of the same model, and the test accuracy of the LiteRT
   interpreter next to Keras'.
2. **Latency**, batch 1, LiteRT with its default XNNPACK delegate at 1 and 2
   threads: the dense float export against the sparse float export of the
   same weights, for the MLP, the small CNN and a MobileNet-style network
   built the way XNNPACK's sparse inference asks (3x3 stride-2 stem with
   padding 1 on 3 channels, depthwise 3x3 + 1x1 blocks, spatial mean; 1x1
   kernels 80% zeros). Variants run interleaved; each number is the median
   of --rounds medians of --invokes invocations.
3. What ran: the ops of each sparse file (`DENSIFY` means the weights are
   expanded at load time and dense kernels run unless XNNPACK rewrites the
   subgraph for sparse inference).

  python benchmarks/tflite_export.py                       # about 6 minutes
  python benchmarks/tflite_export.py --models=lenet_300_100:1 --sparsities=0.9
  KERAS_BACKEND=tensorflow python benchmarks/tflite_export.py --frontend=keras3
"""

import json
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repo importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import itop_tf
from absl import flags
import numpy as np
import tf_keras as keras

from benchmarks import harness
from benchmarks import report
from itop_tf import export
from itop_tf import frontends
from launchers import datasets
from launchers import launcher_flags
from launchers import models

LATENCY_NETWORKS = ("lenet_300_100", "small_cnn", "mobilenet_style")
# (quantize, sparse_encoding): float32; int8 as LiteRT's default runtime
# runs it (stored dense); int8 stored sparse (needs builtin kernels).
EXPORTS = ((None, "auto"), ("int8", "auto"), ("int8", True))


def define_flags(flag_values=flags.FLAGS):
  define = launcher_flags.flag_definer(flag_values)
  define("list", "models", ["lenet_300_100:1", "small_cnn:1"],
         "Networks to train and export, as name:EPOCHS.")
  define("list", "sparsities", ["0.9", "0.95", "0.98"], "Sparsities.")
  define("list", "latency_models", list(LATENCY_NETWORKS),
         f"Networks for the latency table, of {LATENCY_NETWORKS}.")
  define("list", "threads", ["1", "2"], "Interpreter threads to time.")
  define("integer", "rounds", 5, "Interleaved timing rounds.")
  define("integer", "invokes", 200, "Invocations per round and variant.")
  define("integer", "batch_size", 128, "Training batch size.")
  define("integer", "update_interval", 100, "RigL-ITOP's Delta T.")
  define("string", "data_dir", None, "TFDS data directory.")
  define("string", "manual_dir", None, "Fashion-MNIST IDX files.")
  define("string", "out", None, "Write the rows as JSON here.")
  define("string", "work_dir", "/tmp/itop_tflite_export",
         "Where the .tflite files go.")
  define("enum", "frontend", "tf_keras", "tf_keras, or keras3 (needs "
         "KERAS_BACKEND=tensorflow: LiteRT converts Keras 3 models there).",
         ["tf_keras", "keras3"])

  def valid_models(values):
    ok = all(len(v.split(":")) == 2 and v.split(":")[0] in (
        "lenet_300_100", "small_cnn") and v.split(":")[1].isdigit()
             for v in values)
    if not ok:
      raise flags.ValidationError(
          "--models must be lenet_300_100:EPOCHS and/or small_cnn:EPOCHS.")
    return True

  flags.register_validator("models", valid_models, flag_values=flag_values)
  flags.register_validator(
      "latency_models", lambda v: set(v) <= set(LATENCY_NETWORKS),
      f"--latency_models must be some of {LATENCY_NETWORKS}.",
      flag_values=flag_values)

  def keras3_on_tensorflow(frontend):
    if frontend == "keras3":
      import keras as keras3  # pylint: disable=g-import-not-at-top
      if keras3.backend.backend() != "tensorflow":
        raise flags.ValidationError(
            "--frontend=keras3 exports on the TensorFlow backend only; this "
            f"process runs Keras 3 on {keras3.backend.backend()!r}: start "
            "it with KERAS_BACKEND=tensorflow.")
    return True

  flags.register_validator("frontend", keras3_on_tensorflow,
                           flag_values=flag_values)


def fashion_mnist(f):
  """(x_train, y_train, x_test, y_test) as arrays, and the builder's spec."""
  spec = datasets.DATASETS["fashion_mnist"]
  b = datasets.builder(spec, f.data_dir, f.manual_dir)
  x_test, y_test = datasets.as_arrays(datasets.make_eval_dataset(spec, b, 1024))
  x_train, y_train = datasets.as_arrays(b.as_dataset(
      split=spec.train_split, as_supervised=True, batch_size=4096).map(
          lambda x, y: datasets.preprocess_eval(x, y, spec)))
  return x_train, y_train, x_test, y_test.argmax(-1), spec


def train(name, epochs, sparsity, data, f):
  """A RigL-ITOP model trained on Fashion-MNIST, as the launcher would."""
  x_train, y_train, _, _, spec = data
  k = harness.keras_of(f.frontend)
  k.utils.set_random_seed(1)
  steps = epochs * (len(x_train) // f.batch_size)
  model = itop_tf.sparsify(
      models.build(name, spec.image_shape, spec.num_classes, k), sparsity,
      grow="gradient",
      schedule=itop_tf.RegrowthSchedule(f.update_interval, steps))
  model.compile(k.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                k.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], jit_compile=True)
  model.fit(x_train, y_train, batch_size=f.batch_size, epochs=epochs,
            verbose=0, callbacks=[itop_tf.ITOPCallback()])
  return model


def size_rows(data, f):
  """Table 1: one row per (network, sparsity, quantization)."""
  x_train, _, x_test, y_test, _ = data
  rows = []
  for entry in f.models:
    name, epochs = entry.split(":")
    for sparsity in (float(s) for s in f.sparsities):
      model = train(name, int(epochs), sparsity, data, f)
      for quantize, encoding in EXPORTS:
        path = os.path.join(f.work_dir,
                            f"{name}_{sparsity}_{quantize}_{encoding}.tflite")
        report = itop_tf.export_tflite(
            model, path, quantize=quantize, sparse_encoding=encoding,
            representative_data=x_train[:200] if quantize else None,
            eval_data=(x_test, y_test))
        row = {k: v for k, v in report.to_dict().items()
               if k not in ("tensors", "path", "quantize")}
        rows.append({"model": name, "sparsity": sparsity,
                     "type": quantize or "float32",
                     "frontend": frontends.keras_of(model), **row})
  return rows


def mobilenet_style(input_shape=(96, 96, 3), num_classes=10,
                    keras_module=keras):
  """A network in the shape XNNPACK's sparse inference accepts."""
  layers = keras_module.layers
  inputs = keras_module.Input(input_shape)
  x = layers.ZeroPadding2D(1)(inputs)  # padding 1 on each side, stride 2
  x = layers.Conv2D(32, 3, strides=2, activation="relu", name="stem")(x)
  for i, (filters, stride) in enumerate([(64, 1), (128, 2), (128, 1),
                                         (256, 2), (256, 1), (512, 2)]):
    if stride == 2:
      x = layers.ZeroPadding2D(1)(x)
      x = layers.DepthwiseConv2D(3, strides=2, activation="relu",
                                 name=f"dw{i}")(x)
    else:
      x = layers.DepthwiseConv2D(3, padding="same", activation="relu",
                                 name=f"dw{i}")(x)
    x = layers.Conv2D(filters, 1, activation="relu", name=f"pw{i}")(x)
  x = layers.GlobalAveragePooling2D()(x)  # MEAN over the spatial axes
  return keras_module.Model(inputs,
                            layers.Dense(num_classes, name="head")(x))


def latency_model(name, keras_module=keras):
  """(sparse model of `keras_module`, input shape) for the latency table."""
  schedule = itop_tf.RegrowthSchedule(100, 1000)
  keras_module.utils.set_random_seed(2)
  if name == "mobilenet_style":
    base = mobilenet_style(keras_module=keras_module)
    pointwise = {l.name: 0.2 for l in base.layers if l.name.startswith("pw")}
    dense = [l.name for l in base.layers
             if l.name == "stem" or l.name.startswith("dw")]
    # 1x1 kernels at 80% zeros (>= 2/3, XNNPACK's condition); the head
    # shares the rest of the budget.
    total = sum(int(np.prod(base.get_layer(n).kernel.shape))
                for n in list(pointwise) + ["head"])
    sparse = sum(0.8 * np.prod(base.get_layer(n).kernel.shape)
                 for n in pointwise) / total
    model = itop_tf.sparsify(base, sparse, schedule=schedule,
                             distribution="uniform", dense_layers=dense,
                             layer_densities=pointwise)
    return model, (1, 96, 96, 3)
  shape = (28, 28, 1)
  return (itop_tf.sparsify(models.build(name, shape, 10, keras_module), 0.9,
                           schedule=schedule), (1,) + shape)


def _timer(content, threads, shape):
  interp = export.interpreter(content, num_threads=threads)
  interp.allocate_tensors()
  index = interp.get_input_details()[0]["index"]
  interp.set_tensor(index, np.random.default_rng(0).random(shape, np.float32))
  interp.invoke()  # warm-up

  def run(n):
    times = []
    for _ in range(n):
      start = time.perf_counter()
      interp.invoke()
      times.append(time.perf_counter() - start)
    return float(np.median(times))

  return run


def latency_rows(f):
  """Table 2: dense vs sparse float export, batch 1, per thread count."""
  rows = []
  for name in f.latency_models:
    model, shape = latency_model(name, harness.keras_of(f.frontend))
    plain = itop_tf.strip(model)
    files = {"dense": export.convert(plain, sparse=False),
             "sparse": export.convert(plain, sparse=True)}
    ops = export.op_names(files["sparse"])
    tensors = export.weight_tensors(files["sparse"])
    for threads in (int(t) for t in f.threads):
      timers = {k: _timer(v, threads, shape) for k, v in files.items()}
      samples = {k: [] for k in timers}
      for _ in range(f.rounds):
        for kind, timer in timers.items():
          samples[kind].append(timer(f.invokes))
      dense, sparse = (float(np.median(samples[k])) for k in ("dense",
                                                              "sparse"))
      rows.append({
          "model": name, "frontend": frontends.keras_of(model),
          "threads": threads,
          "dense_ms": 1e3 * dense,
          "sparse_ms": 1e3 * sparse, "sparse_over_dense": sparse / dense,
          "densify_ops": ops.count("DENSIFY"),
          "sparse_tensors": sum(t.sparse for t in tensors),
          "zeros_in_sparse_tensors": float(np.mean(
              [t.zero_fraction for t in tensors if t.sparse] or [0.0]))})
  return rows


def cpu_flags():
  """The SIMD extensions of this CPU that matter to XNNPACK's choice."""
  try:
    text = open("/proc/cpuinfo").read()
  except OSError:
    return "unknown"
  line = next((l for l in text.splitlines() if l.startswith("flags")), "")
  have = set(line.split())
  return ",".join(x for x in ("sse4_1", "avx", "avx2", "avx512f", "fma")
                  if x in have) or "none of sse4_1/avx"


def run(f):
  """Measures and prints the three tables; returns (size rows, latency rows)."""
  os.makedirs(f.work_dir, exist_ok=True)
  sizes = size_rows(fashion_mnist(f), f) if f.models else []
  latency = latency_rows(f) if f.latency_models else []
  machine = f"{harness.machine()}; CPU flags: {cpu_flags()}"
  data = {"meta": report.run_meta(machine), "sizes": sizes,
          "latency": latency}
  print(f"machine: {machine}; front-end: {f.frontend}\n")
  print(report.tflite_tables(data))
  if f.out:
    with open(f.out, "w") as out:
      json.dump(data, out, indent=1)
  return sizes, latency


if __name__ == "__main__":
  harness.main(define_flags, run)
