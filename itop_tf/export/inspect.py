"""What an exported LiteRT file holds, read from its flatbuffer: its weight
tensors (with their zeros) and its ops.

Example:

>>> [round(t.zero_fraction, 2) for t in weight_tensors(content)]
[0.9, 0.9]
>>> "DENSIFY" in op_names(content)     # a sparse-stored kernel
True
"""

import math

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from itop_tf.export.report import TensorReport

# TFLite TensorType codes of the weight types an export can hold.
_TYPES = {0: np.float32, 1: np.float16, 9: np.int8, 2: np.int32, 3: np.uint8}


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
