"""The array namespaces `itop_tf.core` is written against.

`core` needs a dozen array operations. `tensorflow_ops()` maps them to
TensorFlow (the tf_keras/TF-MOT front-end, and the Keras 3 TensorFlow
backend gives the same numbers; made on first use, so a process without
TensorFlow never imports it); `keras_ops()` maps them to `keras.ops` for
whatever Keras 3 backend is active (TensorFlow, JAX, PyTorch); `NUMPY` runs
an update that is not compiled on the host (`on_host`). Each backend namespace also draws the
uniform scores of random growth from a stateless RNG keyed by
(kernel seed, step), so a resumed run draws what an uninterrupted one did.

Example:

>>> from itop_tf import array_ops
>>> array_ops.tensorflow_ops().count(tf.constant([True, False, True])).numpy()
2
"""

import numpy as np


class _TensorFlowOps:
  """`core`'s operations in TensorFlow."""

  name = "tensorflow"

  def __init__(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.tf = tf

  def convert_to_tensor(self, x):
    return self.tf.convert_to_tensor(x)

  def cast(self, x, dtype):
    return self.tf.cast(x, dtype)

  def reshape(self, x, shape):
    return self.tf.reshape(x, shape)

  def where(self, c, x, y):
    return self.tf.where(c, x, y)

  def isnan(self, x):
    return self.tf.math.is_nan(x)

  def isfinite(self, x):
    return self.tf.math.is_finite(x)

  def abs(self, x):
    return self.tf.abs(x)

  def clip(self, x, lo, hi):
    return self.tf.clip_by_value(x, lo, hi)

  def full_like(self, x, value):
    return self.tf.fill(self.tf.shape(x), self.tf.constant(value, x.dtype))

  def zeros_like(self, x):
    return self.tf.zeros_like(x)

  def descending_order(self, x):
    """Indices that sort 1-D `x` descending; equal values by index."""
    return self.tf.math.top_k(x, k=int(x.shape[0]), sorted=True).indices

  def scatter_1d(self, indices, values, n):
    return self.tf.scatter_nd(indices[:, None], values, [n])

  def arange(self, n):
    return self.tf.range(n, dtype=self.tf.int32)

  def less(self, x, y):
    return self.tf.less(x, self.tf.cast(y, x.dtype))

  def less_equal(self, x, y):
    return self.tf.less_equal(x, self.tf.cast(y, x.dtype))

  def greater(self, x, y):
    return self.tf.greater(x, self.tf.cast(y, x.dtype))

  def greater_equal(self, x, y):
    return self.tf.greater_equal(x, self.tf.cast(y, x.dtype))

  def equal(self, x, y):
    return self.tf.equal(x, self.tf.cast(y, x.dtype))

  def cumsum(self, x):
    return self.tf.cumsum(x)

  def int32(self, value):
    return self.tf.constant(value, self.tf.int32)

  def fori_loop(self, lower, upper, body, init):
    """`body(i, state)` for i in [lower, upper): a `tf.while_loop`."""
    _, out = self.tf.while_loop(
        lambda i, state: i < upper, lambda i, state: (i + 1, body(i, state)),
        (self.tf.constant(lower), init))
    return out

  def float_order_key(self, x):
    """int32 keys of float32 `x` in the floats' order (-0.0 below 0.0)."""
    bits = self.tf.bitcast(x, self.tf.int32)
    return self.tf.where(bits < 0, self.tf.bitwise.bitwise_xor(
        bits, self.tf.constant(0x7FFFFFFF, self.tf.int32)), bits)

  def logical_and(self, x, y):
    return self.tf.logical_and(x, y)

  def logical_or(self, x, y):
    return self.tf.logical_or(x, y)

  def logical_not(self, x):
    return self.tf.logical_not(x)

  def count(self, x):
    return self.tf.reduce_sum(self.tf.cast(x, self.tf.int32))

  def stack(self, xs):
    return self.tf.stack(xs)

  def max(self, x):
    return self.tf.reduce_max(x)

  def uniform(self, shape, seed, step):
    """Uniform [0, 1) float32 scores keyed by (seed, step)."""
    tf = self.tf
    return tf.random.stateless_uniform(
        shape, seed=tf.stack([tf.cast(seed, tf.int64),
                              tf.constant(int(step), tf.int64)]))


class _KerasOps:
  """`core`'s operations in `keras.ops` (Keras 3, any backend)."""

  def __init__(self):
    import keras  # pylint: disable=g-import-not-at-top
    self.ops = keras.ops
    self.name = keras.backend.backend()

  def __getattr__(self, name):
    # cast, reshape, where, isnan, isfinite, abs, clip, zeros_like, less,
    # less_equal, greater, greater_equal, equal, cumsum, logical_and/or/not,
    # max, stack, fori_loop: keras.ops has them with these names.
    return getattr(self.ops, name)

  def full_like(self, x, value):
    return self.ops.full_like(x, value)

  def descending_order(self, x):
    """Indices that sort 1-D `x` descending; equal values by index."""
    if self.name == "torch":  # torch.topk does not order ties by index.
      return self.ops.argsort(self.ops.negative(x))
    return self.ops.top_k(x, k=int(x.shape[0]), sorted=True)[1]

  def scatter_1d(self, indices, values, n):
    return self.ops.scatter(self.ops.expand_dims(indices, -1), values, (n,))

  def arange(self, n):
    return self.ops.arange(n, dtype="int32")

  def int32(self, value):
    return self.ops.convert_to_tensor(value, dtype="int32")

  def float_order_key(self, x):
    """int32 keys of float32 `x` in the floats' order (-0.0 below 0.0)."""
    bits = self.ops.view(x, "int32")
    return self.ops.where(self.ops.less(bits, 0), self.ops.bitwise_xor(
        bits, self.int32(0x7FFFFFFF)), bits)

  def count(self, x):
    return self.ops.sum(self.ops.cast(x, "int32"))

  def uniform(self, shape, seed, step):
    """Uniform [0, 1) float32 scores keyed by (seed, step), drawn eagerly.

    TensorFlow draws exactly what the tf_keras front-end draws; JAX and
    PyTorch draw their own stream from the same key.
    """
    seed, step = int(seed), int(step)
    shape = tuple(int(d) for d in shape)
    if self.name == "jax":
      import jax  # pylint: disable=g-import-not-at-top
      key = jax.random.PRNGKey(seed & 0x7FFFFFFF)
      key = jax.random.fold_in(key, seed >> 31)
      key = jax.random.fold_in(key, step & 0x7FFFFFFF)
      return jax.random.uniform(key, shape, dtype="float32")
    if self.name == "torch":
      import torch  # pylint: disable=g-import-not-at-top
      gen = torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**63)
      values = torch.rand(shape, generator=gen, dtype=torch.float32)
      return self.ops.convert_to_tensor(values)
    if self.name == "tensorflow":
      return tensorflow_ops().uniform(shape, seed, step)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, step])
    return self.ops.convert_to_tensor(
        rng.random(shape, dtype=np.float32))


class _NumpyOps:
  """`core`'s operations in NumPy, on the host, with nothing to compile.

  An update that is not compiled runs here (`jit_compile` resolved to
  False, on a CPU, on every backend): it has nothing to compile, and on a
  CPU it is the fastest way we have measured (BENCHMARKS.md, "One mask
  update against model size"). The same `core` functions, the same
  selected entries; `positions` and `take` let `core.rank_select` rank a
  kernel's candidates alone, which only a namespace with shapes known at
  run time can do.
  """

  name = "numpy"

  @staticmethod
  def convert_to_tensor(x):
    return np.asarray(x)

  @staticmethod
  def cast(x, dtype):
    return np.asarray(x).astype(dtype, copy=False)

  reshape = staticmethod(np.reshape)
  where = staticmethod(np.where)
  less = staticmethod(np.less)
  less_equal = staticmethod(np.less_equal)
  greater = staticmethod(np.greater)
  greater_equal = staticmethod(np.greater_equal)
  equal = staticmethod(np.equal)
  isnan = staticmethod(np.isnan)
  isfinite = staticmethod(np.isfinite)
  abs = staticmethod(np.abs)
  clip = staticmethod(np.clip)
  zeros_like = staticmethod(np.zeros_like)
  logical_and = staticmethod(np.logical_and)
  logical_or = staticmethod(np.logical_or)
  logical_not = staticmethod(np.logical_not)
  max = staticmethod(np.max)

  @staticmethod
  def full_like(x, value):
    return np.full_like(x, value)

  @staticmethod
  def descending_order(x):
    """Indices that sort 1-D `x` descending; equal values by index."""
    return np.argsort(-x.astype(np.float64), kind="stable")

  @staticmethod
  def scatter_1d(indices, values, n):
    out = np.zeros((n,), np.asarray(values).dtype)
    out[indices] = values
    return out

  @staticmethod
  def arange(n):
    return np.arange(n, dtype=np.int32)

  @staticmethod
  def cumsum(x):
    return np.cumsum(x, dtype=x.dtype)  # int32 stays int32 (20x faster)

  @staticmethod
  def int32(value):
    return np.int32(value)

  @staticmethod
  def fori_loop(lower, upper, body, init):
    state = init
    for i in range(lower, upper):
      state = body(i, state)
    return state

  @staticmethod
  def float_order_key(x):
    """int32 keys of float32 `x` in the floats' order (-0.0 below 0.0)."""
    bits = np.ascontiguousarray(x, np.float32).view(np.int32)
    # Negative floats: all bits but the sign flipped (10x a `where`).
    return bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))

  @staticmethod
  def count(x):
    return np.int32(np.count_nonzero(x))

  stack = staticmethod(np.stack)

  @staticmethod
  def positions(mask):
    """Indices of the True entries of 1-D bool `mask`, ascending."""
    return np.flatnonzero(mask)

  @staticmethod
  def take(x, indices):
    """`x` at int `indices`: `x[indices]`."""
    return x[indices]

  @staticmethod
  def kth_largest(key, k):
    """`core.kth_largest_key` by one `np.partition` instead of 32 passes."""
    k, n = int(k), key.shape[0]
    if k <= 0:
      return np.int32(np.iinfo(np.int32).max)
    if k > n:
      return np.int32(np.iinfo(np.int32).min)
    return np.partition(key, n - k)[n - k]

  @staticmethod
  def uniform(shape, seed, step):
    raise NotImplementedError(
        "NumPy runs the update only; scores come from the model's backend.")


NUMPY = _NumpyOps()
_NAMESPACES = {}


def tensorflow_ops():
  """The TensorFlow namespace (made once; imports TensorFlow then)."""
  if "tensorflow" not in _NAMESPACES:
    _NAMESPACES["tensorflow"] = _TensorFlowOps()
  return _NAMESPACES["tensorflow"]


def keras_ops():
  """The namespace for the active Keras 3 backend (made once)."""
  if "keras" not in _NAMESPACES:
    _NAMESPACES["keras"] = _KerasOps()
  return _NAMESPACES["keras"]


def to_numpy(structure):
  """`structure` (a tensor of any backend, or lists/tuples of them) on the
  host as NumPy arrays, in one read per tensor."""
  if structure is None:  # an absent optional input (drop scores)
    return None
  if isinstance(structure, (list, tuple)):
    return type(structure)(to_numpy(x) for x in structure)
  if hasattr(structure, "detach"):  # a torch tensor (its grad left behind)
    structure = structure.detach().cpu()
  return np.asarray(structure)


def on_host(fn):
  """`fn` (written against `NUMPY`) called with its tensor arguments (lists
  of them included) as NumPy arrays: what "not compiled" means for an update.

  Example:

  >>> update = array_ops.on_host(array_ops.NUMPY.count)
  >>> int(update(tf.constant([True, False, True])))
  2
  """
  def call(*args):
    return fn(*to_numpy(args))
  return call
