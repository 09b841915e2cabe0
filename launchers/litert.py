r"""--export for the Keras 3 launcher: a LiteRT file from a model of any backend.

LiteRT conversion runs on TensorFlow. A model trained on Keras 3's
TensorFlow backend is exported in the run's process
(`itop_tf.export_tflite`); one trained on JAX or PyTorch is saved as a
`.keras` file and exported by this module in a child process with
KERAS_BACKEND=tensorflow (the `.keras` route), which reads the evaluation
and calibration arrays the run saved beside it. Where TensorFlow cannot be
imported, `check_available` stops the run before training.

  KERAS_BACKEND=tensorflow python -m launchers.litert \
      --keras_file=runs/x/model.keras --out=runs/x/model.tflite
"""

import json
import os
import subprocess
import sys

from absl import app
from absl import logging
import numpy as np

import itop_tf
from itop_tf import frontends
from launchers import lazy_imports
from launchers import reporting

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def check_available(export):
  """Raises app.UsageError for --export where TensorFlow is not installed."""
  if export != "none" and not lazy_imports.available("tensorflow"):
    raise app.UsageError(
        f"--export={export} converts with TensorFlow (LiteRT), which is not "
        "installed here: pip install tensorflow, or train without --export, "
        "save the model (.keras) and export it on a host with TensorFlow.")


def _export(model, path, quantize, calibration, eval_arrays):
  report = itop_tf.export_tflite(
      model, path, quantize=quantize, representative_data=calibration,
      eval_data=eval_arrays)
  logging.info("LiteRT export:\n%s", report)
  return reporting.export_fields(report)


def export(model, write_dir, kind, calibration, eval_arrays):
  """Writes the --export LiteRT file; its report fields as a dict.

  In this process for a tf_keras model or Keras 3 on TensorFlow; through a
  `.keras` file and a TensorFlow-backend child from JAX or PyTorch.

  Args:
    model: the trained model (sparse), of either Keras.
    write_dir: where the file goes (model.tflite or model_int8.tflite).
    kind: "tflite" or "tflite_int8".
    calibration: returns training inputs for int8 calibration (an array);
      called for tflite_int8 only.
    eval_arrays: (inputs, one-hot labels) of the test split.

  Returns:
    The report's fields (`reporting.export_fields`).

  Raises:
    RuntimeError: the exporting child process failed.
  """
  import keras  # pylint: disable=g-import-not-at-top
  quantize = "int8" if kind == "tflite_int8" else None
  path = os.path.join(write_dir, "model_int8.tflite" if quantize
                      else "model.tflite")
  calibration = calibration() if quantize else None
  if (frontends.keras_of(model) == "tf_keras" or
      keras.backend.backend() == "tensorflow"):
    return _export(model, path, quantize, calibration, eval_arrays)
  keras_file = os.path.join(write_dir, "model.keras")
  model.save(keras_file)
  arrays = os.path.join(write_dir, "export_arrays.npz")
  np.savez(arrays, x=eval_arrays[0], y=eval_arrays[1],
           **({"calibration": calibration} if quantize else {}))
  env = {**os.environ, "KERAS_BACKEND": "tensorflow",
         "PYTHONPATH": os.pathsep.join(
             [_ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
  done = subprocess.run(
      [sys.executable, "-m", "launchers.litert", f"--keras_file={keras_file}",
       f"--arrays={arrays}", f"--out={path}"] +
      (["--quantize"] if quantize else []),
      env=env, capture_output=True, text=True, check=False)
  os.remove(arrays)
  if done.returncode:
    raise RuntimeError("The LiteRT export (KERAS_BACKEND=tensorflow child) "
                       "failed:\n" + done.stderr[-3000:])
  return json.loads(done.stdout.strip().splitlines()[-1])


def _main(argv):
  args = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
  import keras  # pylint: disable=g-import-not-at-top
  model = keras.saving.load_model(args["--keras_file"], compile=False)
  data = np.load(args["--arrays"])
  quantize = "--quantize" in argv
  print(json.dumps(_export(model, args["--out"], "int8" if quantize else None,
                           data["calibration"] if quantize else None,
                           (data["x"], data["y"]))))


if __name__ == "__main__":
  _main(sys.argv)
