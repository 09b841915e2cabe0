"""What an export produced, as measured on the file: `ExportReport`.

Example:

>>> print(report)                  # sizes, ratios, per-tensor zero fractions
"""

import dataclasses
from typing import List, Optional

import numpy as np


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


def accuracy(outputs, y):
  y = np.asarray(y)
  if y.ndim == outputs.ndim:  # one-hot
    y = y.argmax(-1)
  return float(np.mean(outputs.argmax(-1) == y.reshape(-1)))
