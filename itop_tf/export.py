"""Export a sparse model to LiteRT (TFLite) with sparse weights, and measure it.

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

import contextlib
import dataclasses
import gzip
import math
import os
from typing import List, Optional

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

from itop_tf import prune
from itop_tf import frontends

QUANTIZE = (None, "float16", "int8")
_REPRESENTATIVE_SAMPLES = 200

# TFLite TensorType codes of the weight types an export can hold.
_TYPES = {0: np.float32, 1: np.float16, 9: np.int8, 2: np.int32, 3: np.uint8}


def interpreter(tflite_bytes, num_threads=None, default_delegates=True):
  """A LiteRT interpreter (`ai_edge_litert`) for `tflite_bytes`.

  Args:
    tflite_bytes: a LiteRT flatbuffer.
    num_threads: interpreter threads (None: LiteRT's default).
    default_delegates: use LiteRT's default delegate (XNNPACK on CPU), as an
      app would; False runs the builtin kernels only.

  Returns:
    An `ai_edge_litert.interpreter.Interpreter`, tensors not allocated.
  """
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  resolver = (litert.OpResolverType.AUTO if default_delegates else
              litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  return litert.Interpreter(model_content=tflite_bytes,
                            num_threads=num_threads,
                            experimental_op_resolver_type=resolver)


def loads_with_default_delegates(tflite_bytes):
  """Whether LiteRT's default runtime (XNNPACK included) can run the file.

  The file is loaded and invoked once on zeros: XNNPACK prepares a layer
  whose input shape is computed at run time (a Keras 3 `Flatten` exports as
  SHAPE/PACK/RESHAPE) only when it first runs, so loading alone can pass
  where running fails.

  Args:
    tflite_bytes: a LiteRT flatbuffer.

  Returns:
    True if it loads and runs.
  """
  try:
    interp = interpreter(tflite_bytes)
    interp.allocate_tensors()
    for detail in interp.get_input_details():
      interp.set_tensor(detail["index"],
                        np.zeros(detail["shape"], detail["dtype"]))
    interp.invoke()
  except RuntimeError:
    return False
  return True


@dataclasses.dataclass
class TensorReport:
  """One constant weight tensor of an exported file.

  Attributes:
    name: the tensor's name in the file.
    shape: its dense shape.
    dtype: the stored element type ("float32", "float16", "int8").
    sparse: whether the file stores it sparse (values and indices).
    stored_values: how many values the file stores for it.
    zero_fraction: fraction of its dense entries that are 0, from the file.
  """
  name: str
  shape: tuple
  dtype: str
  sparse: bool
  stored_values: int
  zero_fraction: float


@dataclasses.dataclass
class ExportReport:
  """What an export produced, measured on the file.

  Attributes:
    path: the file written.
    quantize: None, "float16" or "int8".
    sparse_encoding: whether the file stores sparse weights sparse.
    default_delegates: whether LiteRT's default runtime (XNNPACK) runs the
      file; if not, run it with `default_delegates=False`.
    note: why the encoding differs from the one asked for, or "".
    bytes, gzip_bytes: size of the file, raw and gzip-compressed.
    dense_bytes, dense_gzip_bytes: the same for the dense float32 export of
      the same (stripped) model, without sparse encoding or quantization.
    tensors: a `TensorReport` per weight tensor (2 dimensions or more).
    ops: the file's operators, in order (DENSIFY marks sparse weights
      expanded at load time).
    accuracy: top-1 accuracy of the LiteRT interpreter on the evaluation
      data, or None.
    keras_accuracy: the stripped Keras model's on the same data (computing
      in float32, as the file does, also after mixed-precision training),
      or None.
  """
  path: str
  quantize: Optional[str]
  sparse_encoding: bool
  default_delegates: bool
  note: str
  bytes: int
  gzip_bytes: int
  dense_bytes: int
  dense_gzip_bytes: int
  tensors: List[TensorReport]
  ops: List[str]
  accuracy: Optional[float] = None
  keras_accuracy: Optional[float] = None

  @property
  def size_ratio(self):
    """How many times smaller than the dense float file (raw bytes)."""
    return self.dense_bytes / self.bytes

  @property
  def gzip_ratio(self):
    """How many times smaller than the dense float file, both gzipped."""
    return self.dense_gzip_bytes / self.gzip_bytes

  @property
  def accuracy_delta(self):
    """Interpreter accuracy minus Keras accuracy, or None."""
    if self.accuracy is None or self.keras_accuracy is None:
      return None
    return self.accuracy - self.keras_accuracy

  def to_dict(self):
    out = dataclasses.asdict(self)
    out.update(size_ratio=self.size_ratio, gzip_ratio=self.gzip_ratio,
               accuracy_delta=self.accuracy_delta)
    return out

  def __str__(self):
    lines = [
        f"{self.path} ({self.quantize or 'float32'}): {self.bytes / 1024:.1f} "
        f"KiB, gzip {self.gzip_bytes / 1024:.1f} KiB; dense float export "
        f"{self.dense_bytes / 1024:.1f} KiB, gzip "
        f"{self.dense_gzip_bytes / 1024:.1f} KiB: {self.size_ratio:.2f}x "
        f"smaller ({self.gzip_ratio:.2f}x gzipped)"]
    if self.note:
      lines.append(self.note)
    if self.accuracy is not None:
      lines.append(f"accuracy: LiteRT {self.accuracy:.4f}, Keras "
                   f"{self.keras_accuracy:.4f} ({100 * self.accuracy_delta:+.2f}"
                   " pt)")
    lines.append(f"{'tensor':<48} {'shape':<14} {'type':<8} {'stored':<7} "
                 f"{'zeros':>6}")
    for t in self.tensors:
      lines.append(f"{t.name[:48]:<48} {str(t.shape):<14} {t.dtype:<8} "
                   f"{'sparse' if t.sparse else 'dense':<7} "
                   f"{t.zero_fraction:>6.3f}")
    return "\n".join(lines)


def _representative(data):
  """A TFLite representative-dataset generator over `data`'s first samples."""
  if isinstance(data, tf.data.Dataset):
    samples = []
    for item in data:
      x = item[0] if isinstance(item, (tuple, list)) else item
      samples.extend(np.asarray(x))
      if len(samples) >= _REPRESENTATIVE_SAMPLES:
        break
    data = samples
  data = np.asarray(data, dtype=np.float32)[:_REPRESENTATIVE_SAMPLES]
  if not len(data):
    raise ValueError("representative_data is empty.")

  def generate():
    for sample in data:
      yield [sample[None]]

  return generate


def check_convertible(model):
  """Raises unless TensorFlow's LiteRT converter can take `model` here.

  tf_keras models can be converted; Keras 3 models on the TensorFlow backend
  only (Keras 3 itself exports LiteRT from TensorFlow, and from PyTorch only
  through `litert_torch`).

  Args:
    model: a tf_keras or Keras 3 model.

  Raises:
    ValueError: a Keras 3 model on another backend, with the way round.
  """
  if frontends.keras_of(model) != "keras3":
    return
  import keras  # pylint: disable=g-import-not-at-top
  backend = keras.backend.backend()
  if backend != "tensorflow":
    raise ValueError(
        "LiteRT export converts Keras 3 models on the TensorFlow backend; "
        f"this process runs Keras 3 on {backend!r}. Save the model "
        "(model.save('m.keras')), then in a process started with "
        "KERAS_BACKEND=tensorflow, `import itop_tf` and export "
        "keras.models.load_model('m.keras', compile=False): the file loads "
        "with its masks on any backend (compile=False: a PyTorch "
        "optimizer's config would import torch after TensorFlow, which "
        "crashes).")


@contextlib.contextmanager
def _quiet(model):
  """Keeps Keras 3's export messages (its temporary SavedModel) off stdout."""
  if frontends.keras_of(model) != "keras3":
    yield
    return
  import keras  # pylint: disable=g-import-not-at-top
  was = keras.config.is_interactive_logging_enabled()
  keras.config.disable_interactive_logging()
  try:
    yield
  finally:
    if was:
      keras.config.enable_interactive_logging()


def convert(model, quantize=None, representative_data=None, sparse=True):
  """Converts a plain (stripped) model to LiteRT flatbuffer bytes.

  Args:
    model: a tf_keras model, or a Keras 3 model on the TensorFlow backend,
      without itop_tf layers.
    quantize: None (float32), "float16" (weights) or "int8" (post-training
      quantization of weights and activations; float input and output).
    representative_data: inputs to calibrate int8 activations (an array of
      examples, or a `tf.data.Dataset` of inputs or (inputs, labels)).
    sparse: encode sparse weights (`Optimize.EXPERIMENTAL_SPARSITY`).

  Returns:
    The flatbuffer as bytes.

  Raises:
    ValueError: an unknown `quantize`, int8 without representative data, a
      Keras 3 model on a backend other than TensorFlow, or a model the
      converter cannot take (its message is quoted).
  """
  check_convertible(model)
  if quantize not in QUANTIZE:
    raise ValueError(f"quantize must be one of {QUANTIZE}, got {quantize!r}.")
  if quantize == "int8" and representative_data is None:
    raise ValueError(
        "quantize='int8' needs representative_data: a few hundred training "
        "inputs, to calibrate the activations' int8 ranges.")
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  optimizations = []
  if quantize is not None:
    optimizations.append(tf.lite.Optimize.DEFAULT)
  if sparse:
    optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
  converter.optimizations = optimizations
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  if quantize == "int8":
    converter.representative_dataset = _representative(representative_data)
  try:
    with _quiet(model):
      return converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    # The converter raises ConverterError (and others) with long MLIR logs.
    first = [l.strip() for l in str(e).splitlines() if l.strip()]
    detail = " ".join(l for l in first if "error" in l.lower())[:600]
    raise ValueError(
        "The LiteRT converter cannot convert this model: "
        f"{detail or first[:3]}. Replace the layers or ops it names with "
        "LiteRT builtins, or keep them out of the exported model.") from e


def _read(tflite_bytes):
  """The file's root `Model` table (flatbuffer accessors: nothing copied)."""
  return schema.Model.GetRootAsModel(tflite_bytes, 0)


def weight_tensors(tflite_bytes):
  """The constant weight tensors (rank >= 2) of a LiteRT file, read back.

  The zero fraction comes from the stored values: for a tensor stored
  sparse, the values the file keeps (any zeros among them counted) over the
  dense size; for a dense one, the buffer itself.

  Args:
    tflite_bytes: a LiteRT flatbuffer.

  Returns:
    A list of `TensorReport`, in the file's order.
  """
  model = _read(tflite_bytes)
  out = []
  for g in range(model.SubgraphsLength()):
    graph = model.Subgraphs(g)
    for i in range(graph.TensorsLength()):
      t = graph.Tensors(i)
      shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
      data = model.Buffers(t.Buffer()).DataAsNumpy()
      if isinstance(data, int) or len(shape) < 2 or t.Type() not in _TYPES:
        continue  # no buffer (DataAsNumpy gives 0), a vector, or not a weight
      dtype = np.dtype(_TYPES[t.Type()])
      values = data.view(dtype)
      out.append(TensorReport(
          name=t.Name().decode(), shape=shape, dtype=dtype.name,
          sparse=t.Sparsity() is not None, stored_values=int(values.size),
          zero_fraction=1.0 - np.count_nonzero(values) / float(
              math.prod(shape))))
  return out


def op_names(tflite_bytes):
  """The builtin operators of a LiteRT file, in order ("CUSTOM" otherwise)."""
  model = _read(tflite_bytes)
  names = {v: k for k, v in vars(schema.BuiltinOperator).items()
           if not k.startswith("_")}
  out = []
  for g in range(model.SubgraphsLength()):
    graph = model.Subgraphs(g)
    for i in range(graph.OperatorsLength()):
      code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
      out.append(names.get(max(code.BuiltinCode(),
                               code.DeprecatedBuiltinCode()), "CUSTOM"))
  return out


def predict_tflite(tflite_bytes, x, batch_size=256, num_threads=None,
                   default_delegates=True):
  """Outputs of the LiteRT interpreter on `x`, in batches.

  Args:
    tflite_bytes: a LiteRT flatbuffer with one input and one output.
    x: inputs, an array with the batch first.
    batch_size: examples per `invoke`.
    num_threads: interpreter threads (None: LiteRT's default).
    default_delegates: run with LiteRT's default delegate (XNNPACK).

  Returns:
    The outputs as one array.
  """
  interp = interpreter(tflite_bytes, num_threads, default_delegates)
  inp = interp.get_input_details()[0]
  out = interp.get_output_details()[0]
  x = np.asarray(x, dtype=inp["dtype"])
  results, current = [], None
  for start in range(0, len(x), batch_size):
    batch = x[start:start + batch_size]
    if current != len(batch):
      interp.resize_tensor_input(inp["index"], [len(batch)] +
                                 list(x.shape[1:]))
      interp.allocate_tensors()
      current = len(batch)
    interp.set_tensor(inp["index"], batch)
    interp.invoke()
    results.append(interp.get_tensor(out["index"]).copy())
  return np.concatenate(results)


def _accuracy(outputs, y):
  y = np.asarray(y)
  if y.ndim == outputs.ndim:  # one-hot
    y = y.argmax(-1)
  return float(np.mean(outputs.argmax(-1) == y.reshape(-1)))


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
    report.accuracy = _accuracy(predict_tflite(content, x,
                                               default_delegates=runs), y)
    report.keras_accuracy = _accuracy(plain.predict(x, verbose=0,
                                                    batch_size=256), y)
  return report
