"""Export a sparse model to LiteRT (TFLite) with sparse weights, and measure it.

The package in four parts: `convert` (Keras model to LiteRT bytes),
`inspect` (the tensors and ops a file holds), `report` (`ExportReport`) and
`runtime` (the interpreter); `export_tflite` here puts them together.

`export_tflite` strips the itop_tf layers of a tf_keras model or of a Keras 3
model on the TensorFlow backend, converts with sparse weight
encoding (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`), optionally quantized
(float16 weights, or int8 post-training quantization with a representative
dataset, which keeps zeros at 0), writes the file and returns an
`ExportReport`: its bytes (raw and gzip) against the dense float export of the
same model, the zero fraction of every weight tensor *read back from the
exported file* (so a converter that densifies or a quantizer that moves zeros
shows), the ops in the file, and, given evaluation data, the accuracy of the
LiteRT interpreter against the Keras model's.

What the runtime does with sparse weights: the converter stores a kernel
sparse (values plus CSR indices) when it is sparse enough, and the file then
holds a `DENSIFY` op that expands it when the interpreter loads the model. The
file is smaller; inference runs the dense kernels, unless a delegate with
sparse kernels takes the op (XNNPACK's sparse inference targets 1x1
convolutions of NHWC networks with >= 2/3 zeros; see BENCHMARKS.md for what
ran here).

Keras 3 on JAX or PyTorch: the converter is TensorFlow's, and Keras 3 exports
LiteRT from the TensorFlow backend (and PyTorch's through `litert_torch`), so
those backends get a `ValueError` that names the way: `model.save("m.keras")`,
then load it with `compile=False` and export it in a process started with
`KERAS_BACKEND=tensorflow` (`.keras` files load on any backend).

Example:

>>> report = itop_tf.export_tflite(model, "model.tflite", quantize="int8",
...                                representative_data=x_train[:200],
...                                eval_data=(x_test, y_test))
>>> print(report)                  # sizes, ratios, per-tensor zero fractions
>>> report.size_ratio, report.accuracy_delta
(8.1, -0.0004)
"""

import gzip
import os

from itop_tf import frontends
from itop_tf import prune
from itop_tf.export.convert import QUANTIZE
from itop_tf.export.convert import check_convertible
from itop_tf.export.convert import convert
from itop_tf.export.inspect import op_names
from itop_tf.export.inspect import weight_tensors
from itop_tf.export.report import ExportReport
from itop_tf.export.report import TensorReport
from itop_tf.export.report import accuracy
from itop_tf.export.runtime import interpreter
from itop_tf.export.runtime import loads_with_default_delegates
from itop_tf.export.runtime import predict_tflite

__all__ = ["ExportReport", "QUANTIZE", "TensorReport", "accuracy",
           "check_convertible", "convert", "export_tflite", "interpreter",
           "loads_with_default_delegates", "op_names", "predict_tflite",
           "weight_tensors"]

def export_tflite(model, path, quantize=None, representative_data=None,
                  eval_data=None, sparse_encoding="auto"):
  """Writes a sparsified model as a LiteRT file with sparse weights.

  Args:
    model: a model with itop_tf layers (from `itop_tf.sparsify`): tf_keras,
      or Keras 3 on the TensorFlow backend (see the module docstring for
      JAX and PyTorch).
    path: the `.tflite` file to write.
    quantize: None (float32), "float16" (weights in float16) or "int8"
      (post-training quantization with `representative_data`; zeros stay 0).
    representative_data: inputs to calibrate int8 (an array of examples, or
      a `tf.data.Dataset` of inputs or (inputs, labels)); needed for int8.
    eval_data: optional `(x, y)` arrays (integer or one-hot labels) to
      measure the interpreter's top-1 accuracy against the Keras model's.
    sparse_encoding: "auto" stores sparse weights sparse when LiteRT's
      default runtime (XNNPACK) can run the file, else dense, and says so in
      `report.note` (LiteRT 2.3's XNNPACK cannot prepare int8 layers whose
      weights are stored sparse); True always sparse, False never.

  Returns:
    An `ExportReport`.

  Raises:
    ValueError: a model without itop_tf layers, a Keras 3 model on a backend
      other than TensorFlow, an unknown `quantize`, int8 without
      representative data, a bad `sparse_encoding`, or a model the converter
      cannot take.
  """
  frontends.frontend_of(model).sparse_weights(model)  # "no itop_tf layers"
  check_convertible(model)
  if sparse_encoding not in ("auto", True, False):
    raise ValueError("sparse_encoding must be 'auto', True or False, got "
                     f"{sparse_encoding!r}.")
  # float32 layers: a model trained in mixed precision would otherwise hand
  # the converter float16 (or bfloat16) ops it has no builtins for.
  plain = prune.strip(model, dtype="float32")
  content = convert(plain, quantize, representative_data,
                    sparse=bool(sparse_encoding))
  runs = loads_with_default_delegates(content)
  note = ""
  if sparse_encoding == "auto" and not runs:
    note = ("Stored dense: LiteRT's default runtime (XNNPACK) cannot run "
            "this model with sparse-stored weights; export with "
            "sparse_encoding=True and run it with default_delegates=False "
            "for the smaller file.")
    content = convert(plain, quantize, representative_data, sparse=False)
    runs = loads_with_default_delegates(content)
  tensors = weight_tensors(content)
  stored_sparse = any(t.sparse for t in tensors)
  # The baseline: the dense float export, which `content` may already be.
  dense = (content if quantize is None and not stored_sparse else
           convert(plain, None, sparse=False))
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with open(path, "wb") as f:
    f.write(content)
  report = ExportReport(
      path=path, quantize=quantize,
      sparse_encoding=stored_sparse,
      default_delegates=runs, note=note, bytes=len(content),
      gzip_bytes=len(gzip.compress(content)), dense_bytes=len(dense),
      dense_gzip_bytes=len(gzip.compress(dense)),
      tensors=tensors, ops=op_names(content))
  if eval_data is not None:
    x, y = eval_data
    report.accuracy = accuracy(predict_tflite(content, x,
                                               default_delegates=runs), y)
    report.keras_accuracy = accuracy(plain.predict(x, verbose=0,
                                                    batch_size=256), y)
  return report
