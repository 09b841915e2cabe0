"""What a launcher run reports: results.json's fields and its final line.

Shared by the tf_keras and Keras 3 launchers; imports no TensorFlow.

Example:

>>> results = {"dataset": ..., "test_accuracy": 0.88, ...}
>>> results.update(sparse_results(f.method, model, multiplier))
>>> print(summary_line(results))
"""

import hashlib
import time

import numpy as np

import itop_tf
from itop_tf import frontends

_EXPORT_KEYS = ("path", "quantize", "sparse_encoding", "bytes", "gzip_bytes",
                "dense_bytes", "size_ratio", "gzip_ratio", "accuracy",
                "keras_accuracy", "accuracy_delta", "note")


def mask_digest(model):
  """sha256 of every mask and union, to compare runs and workers."""
  fe = frontends.frontend_of(model)
  h = hashlib.sha256()
  for wrapper in itop_tf.find_wrappers(model):
    for sw in wrapper.sparse_weights:
      h.update(np.packbits(fe.to_numpy(sw.mask).astype(bool)).tobytes())
      h.update(np.packbits(fe.to_numpy(sw.ever_active).astype(bool)).tobytes())
  return h.hexdigest()


def sparse_results(method, model, multiplier):
  """Sparsity, R_s, training FLOPs (x dense), mask digest and layer rows."""
  if method == "dense":
    return {"sparsity": 0.0, "exploration_rate": 1.0,
            "train_flops": float(multiplier)}
  rows = itop_tf.sparsity_report(model)
  size = sum(r["size"] for r in rows)
  return {
      "sparsity": 1.0 - sum(r["active"] for r in rows) / size,
      "exploration_rate": float(itop_tf.exploration_rate(model)),
      "train_flops": float(itop_tf.training_flops_ratio(model, multiplier)),
      "mask_digest": mask_digest(model),
      "layers": [{k: (list(v) if isinstance(v, tuple) else v)
                  for k, v in r.items()} for r in rows]}


def run_results(f, model, values, step, frontend, backend):
  """results.json's fields common to both launchers.

  Args:
    f: the parsed flags.
    model: the trained model.
    values: `model.evaluate(..., return_dict=True)` on the test split.
    step: the optimizer step the run ended at.
    frontend, backend: e.g. "keras3", "jax".

  Returns:
    The run's flags that name it, test metrics, then `sparse_results`.
  """
  results = {"frontend": frontend, "backend": backend,
             "dataset": f.dataset, "model": f.model, "method": f.method,
             "multiplier": f.multiplier, "seed": f.seed, "step": step,
             "test_accuracy": float(values["accuracy"]),
             "test_loss": float(values["loss"])}
  if "top5" in values:
    results["test_top5"] = float(values["top5"])
  results.update(sparse_results(f.method, model, f.multiplier))
  return results


def export_fields(report):
  """The results.json fields of an `itop_tf.ExportReport` (a dict)."""
  return {k: v for k, v in report.to_dict().items() if k in _EXPORT_KEYS}


def training_clock(keras_module):
  """A callback of `keras_module` (tf_keras or Keras 3) timing the training
  steps of each epoch, not its validation.

  Its `seconds`: from each epoch's start to its last step's end, summed
  (the first call's compilation included).
  """

  class TrainingClock(keras_module.callbacks.Callback):

    seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
      self._began = self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
      self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      self.seconds += self._last - self._began

  return TrainingClock()


def timing(clock, steps, batch_size):
  """results.json's `train_seconds` and `images_per_second`."""
  return {"train_seconds": clock.seconds,
          "images_per_second": (steps * batch_size / clock.seconds
                                if clock.seconds else None)}


def summary_line(results):
  """The launcher's last line: accuracy, sparsity, R_s, training FLOPs.

  It names the front-end and backend, and with --export ends with the
  LiteRT file's size and interpreter accuracy.
  """
  line = (f"final: test_accuracy={results['test_accuracy']:.4f} "
          f"sparsity={results['sparsity']:.3f} "
          f"R_s={results['exploration_rate']:.4f} "
          f"train_flops={results['train_flops']:.3f}x dense "
          f"({results['method']}, {results['multiplier']}x, "
          f"step {results['step']}, {results['frontend']}/"
          f"{results['backend']})")
  lite = results.get("tflite")
  if lite:
    line += (f" tflite={lite['bytes'] / 1024:.1f}KiB "
             f"({lite['size_ratio']:.1f}x smaller than dense) "
             f"tflite_accuracy={lite['accuracy']:.4f}")
  return line
