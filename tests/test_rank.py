"""`core.rank_select` on TensorFlow and NumPy: every method, numpy's answer.

The "threshold" method (radix search on the float bits; in NumPy one
partition) replaced the full sort; "sort" stays as the reference. Each must
select exactly the first `k` candidates of (score descending, index
ascending) for every case of tests/rank_cases.py, eagerly, in graph mode and
under XLA with one compiled program for every k, and on `array_ops.NUMPY`
(where an update that is not compiled runs).
"""

import numpy as np
import pytest
import tensorflow as tf

from itop_tf import array_ops
from itop_tf import core
import rank_cases

METHODS = core.RANK_METHODS


def _select(method, compiled=None):
  def fn(s, c, k):
    return core.rank_select(s, c, k, array_ops.tensorflow_ops(), method)
  if compiled is None:
    return fn
  return tf.function(fn, jit_compile=compiled)


MODES = [(m, mode) for m in METHODS for mode in ("eager", "graph", "xla")]


@pytest.mark.parametrize("method,mode", MODES)
def test_rank_select_matches_numpy_for_every_case(method, mode):
  select = _select(method, {"eager": None, "graph": False, "xla": True}[mode])
  checked = 0
  for name, s, c, ks in rank_cases.cases():
    for k in ks:
      got = select(tf.constant(s), tf.constant(c),
                   tf.constant(k, tf.int32)).numpy()
      want = rank_cases.expected(s, c, k)
      np.testing.assert_array_equal(got, want, err_msg=f"{name} k={k}")
      assert got.sum() == min(k, c.sum())
      checked += 1
  assert checked > 150


@pytest.mark.parametrize("method", METHODS)
def test_numpy_namespace_selects_what_numpy_expects_for_every_case(method):
  # An update that is not compiled (small models on a CPU) runs on NUMPY.
  checked = 0
  for name, s, c, ks in rank_cases.cases():
    for k in ks:
      got = core.rank_select(s, c, np.int32(k), array_ops.NUMPY, method)
      np.testing.assert_array_equal(got, rank_cases.expected(s, c, k),
                                    err_msg=f"{name} k={k}")
      checked += 1
  assert checked > 150


def test_numpy_ranks_the_candidates_alone(monkeypatch):
  # NumPy's update gathers a kernel's candidates and ranks only those (a
  # prune at 90% sparsity ranks a tenth of the kernel): the k-th value is
  # searched among exactly the candidates, and the answer is unchanged.
  seen = []
  kth = array_ops.NUMPY.kth_largest
  monkeypatch.setattr(array_ops.NUMPY, "kth_largest",
                      lambda key, k: seen.append(key.shape[0]) or kth(key, k))
  rng = np.random.default_rng(3)
  s = rng.standard_normal(1000).astype(np.float32)
  c = rng.random(1000) < 0.1
  got = core.rank_select(s, c, np.int32(7), array_ops.NUMPY)
  assert seen == [c.sum()]
  np.testing.assert_array_equal(got, rank_cases.expected(s, c, 7))


@pytest.mark.parametrize("method", METHODS)
def test_rank_select_is_one_xla_program_for_every_k(method):
  select = _select(method, compiled=True)
  rng = np.random.default_rng(3)
  s = tf.constant(rng.standard_normal(300).astype(np.float32))
  c = tf.constant(rng.random(300) < 0.5)
  for k in range(0, 301, 25):
    select(s, c, tf.constant(k, tf.int32))
  assert select.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_every_method_agrees_on_a_large_kernel():
  # 3x3x256x256, half the scores on a few values: many ties at the k-th.
  rng = np.random.default_rng(4)
  n = 3 * 3 * 256 * 256
  s = rng.standard_normal(n).astype(np.float32)
  s[::2] = np.round(s[::2])
  c = rng.random(n) < 0.2
  for k in (0, 1, 777, int(c.sum()) - 1, int(c.sum()), n):
    args = (tf.constant(s), tf.constant(c), tf.constant(k, tf.int32))
    a = _select("threshold", compiled=True)(*args).numpy()
    b = _select("sort")(*args).numpy()
    n_ = core.rank_select(s, c, np.int32(k), array_ops.NUMPY)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(n_, b)
    assert a.sum() == min(k, c.sum())


@pytest.mark.parametrize("keys", [
    [5], [-3, -3, -3], [2**31 - 1, -2**31, 0, -1, 1],
    list(range(-50, 50, 3))], ids=str)
def test_kth_largest_key_is_the_kth_largest(keys):
  key = tf.constant(keys, tf.int32)
  ordered = sorted(keys, reverse=True)
  for k in range(1, len(keys) + 1):
    t = core.kth_largest_key(key, tf.constant(k), array_ops.tensorflow_ops())
    assert int(t) == ordered[k - 1]
    # NumPy's partition finds the same value, and so does the bit search
    # run on the NumPy namespace (its fori_loop and int32 serve only that).
    assert array_ops.NUMPY.kth_largest(np.array(keys, np.int32),
                                       k) == ordered[k - 1]
    assert int(core.kth_largest_key(np.array(keys, np.int32), k,
                                    array_ops.NUMPY)) == ordered[k - 1]


def test_float_order_key_orders_as_the_floats():
  x = np.array([-np.inf, -MAX_, -1.5, -1e-30, -0.0, 0.0, 1e-30, 1.0, MAX_,
                np.inf], np.float32)
  key = array_ops.tensorflow_ops().float_order_key(tf.constant(x)).numpy()
  assert (np.diff(key) > 0).all()
  np.testing.assert_array_equal(array_ops.NUMPY.float_order_key(x), key)


def test_numpy_update_equals_the_tensorflow_update():
  """`core.update_kernels` on NumPy and on TensorFlow: the same state."""
  rng = np.random.default_rng(5)
  shapes = [(30, 20), (3, 3, 4, 8), (7,)]
  masks = [rng.random(sh) < 0.3 for sh in shapes]
  weights = [np.where(m, rng.standard_normal(m.shape), 0).astype(np.float32)
             for m in masks]
  flat = weights[0].reshape(-1)
  flat[np.flatnonzero(masks[0])[:3]] = [np.nan, np.inf, -np.inf]
  weights[1].reshape(-1)[np.flatnonzero(~masks[1])[:2]] = 0.5  # drifted
  unions = [m | (rng.random(m.shape) < 0.1) for m in masks]
  scores = [np.round(rng.standard_normal(sh), 1).astype(np.float32)
            for sh in shapes]  # ties
  slots = [[rng.standard_normal(sh).astype(np.float32)] for sh in shapes]
  ks = [np.int32(max(1, int(m.sum()) // 3)) for m in masks]
  got = core.update_kernels(masks, weights, unions, scores, slots, ks,
                            array_ops.NUMPY)
  want = core.update_kernels(
      *tf.nest.map_structure(tf.constant,
                             (masks, weights, unions, scores, slots)),
      [tf.constant(k) for k in ks], array_ops.tensorflow_ops())
  for a, b in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
    np.testing.assert_array_equal(np.asarray(a), b.numpy())
  assert got[6][0] == 3 and got[7][1] == 2  # non-finite, drifted


def test_unknown_rank_method_is_a_value_error():
  with pytest.raises(ValueError, match="method must be one of"):
    core.rank_select(tf.constant([1.0]), tf.constant([True]), 1,
                     array_ops.tensorflow_ops(), "bisect")


MAX_ = float(np.finfo(np.float32).max)
