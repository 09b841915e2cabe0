"""The one prune/grow rule (`itop_tf.core`) on this Keras 3 backend's ops.

Every result is compared with the same function on TensorFlow ops, which the
tf_keras front-end runs: one copy of the algorithm, the same answers.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from itop_tf import array_ops
from itop_tf import core
from itop_tf.keras3 import frontend
import rank_cases

K = array_ops.keras_ops()


def _np(x):
  return keras.ops.convert_to_numpy(x)


def _both(fn, *arrays, k):
  """fn on this backend and on TensorFlow, as numpy."""
  mine = fn(*[keras.ops.convert_to_tensor(a) for a in arrays],
            keras.ops.convert_to_tensor(k, "int32"), K)
  ref = fn(*[tf.constant(a) for a in arrays], tf.constant(k, tf.int32),
           array_ops.tensorflow_ops())
  return mine, ref


# Eager "threshold" runs its 32-pass search op by op (20 s on JAX): slow
# tier; the compiled cases check the same rule.
CASES = [pytest.param(m, c, marks=[pytest.mark.slow] if not c else [])
         for m in core.RANK_METHODS for c in (False, True)]


@pytest.mark.parametrize("method,compiled", CASES)
def test_rank_select_matches_numpy_for_every_case(method, compiled):
  """Every rank method, eager and compiled (XLA / jax.jit; PyTorch eager)."""
  def fn(s, c, k):
    return core.rank_select(s, c, k, K, method)
  select = frontend.FRONTEND.compile(fn, compiled)
  t = keras.ops.convert_to_tensor
  checked = 0
  for name, s, c, ks in rank_cases.cases(seed=1):
    for k in ks:
      got = _np(select(t(s), t(c), t(k, "int32")))
      np.testing.assert_array_equal(got, rank_cases.expected(s, c, k),
                                    err_msg=f"{name} k={k}")
      checked += 1
  assert checked > 150


def test_rank_select_ties_go_to_the_lower_index():
  s = np.array([1.0, 3.0, 3.0, 2.0, 3.0], np.float32)
  every = np.ones(5, bool)
  mine, ref = _both(lambda s, c, k, ops: core.rank_select(s, c, k, ops),
                    s, every, k=2)
  np.testing.assert_array_equal(_np(mine), [False, True, True, False, False])
  np.testing.assert_array_equal(_np(mine), ref.numpy())


def test_rank_select_nan_ranks_last_and_inf_is_clipped():
  s = np.array([np.nan, -np.inf, np.inf, 0.0, np.nan], np.float32)
  cand = np.array([True, True, True, True, False])
  for k in range(6):
    mine, ref = _both(lambda s, c, k, ops: core.rank_select(s, c, k, ops),
                      s, cand, k=k)
    got = _np(mine)
    assert got.sum() == min(k, 4)
    assert not got[4]
    np.testing.assert_array_equal(got, ref.numpy())
  # The NaN candidate is picked last.
  mine, _ = _both(lambda s, c, k, ops: core.rank_select(s, c, k, ops),
                  s, cand, k=3)
  assert not _np(mine)[0]


@pytest.mark.parametrize("shape", [
    (1,), (7,), pytest.param((4, 3), marks=pytest.mark.slow),
    pytest.param((2, 2, 3, 2), marks=pytest.mark.slow)])
def test_prune_and_grow_keeps_exact_count_for_every_k_as_tensorflow(shape):
  rng = np.random.default_rng(sum(shape))
  n = int(np.prod(shape))
  for active in {1, max(1, n // 3), n}:
    mask = np.zeros(n, bool)
    mask[rng.permutation(n)[:active]] = True
    mask = mask.reshape(shape)
    w = np.where(mask, rng.normal(size=shape), 0).astype(np.float32)
    scores = rng.normal(size=shape).astype(np.float32)
    for k in range(active + 1):
      (new, kept, pruned), ref = _both(
          lambda m, w, s, k, ops: core.prune_and_grow(m, w, k, s, ops),
          mask, w, scores, k=k)
      new, kept, pruned = _np(new), _np(kept), _np(pruned)
      assert new.sum() == active
      assert pruned.sum() == k
      assert np.all(kept <= (mask & new))
      for a, b in zip((new, kept, pruned), ref):
        np.testing.assert_array_equal(a, b.numpy())


def test_all_equal_scores_grow_the_lowest_inactive_indices():
  mask = np.array([True, True, False, False, False, False])
  w = np.array([1.0, 2.0, 0, 0, 0, 0], np.float32)
  (new, _, pruned), _ = _both(
      lambda m, w, s, k, ops: core.prune_and_grow(m, w, k, s, ops),
      mask, w, np.zeros(6, np.float32), k=1)
  # Prune the smaller (index 0), then grow the lowest inactive: index 0.
  np.testing.assert_array_equal(_np(pruned), [1, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(_np(new), [1, 1, 0, 0, 0, 0])


def test_non_finite_active_weights_are_pruned_first():
  mask = np.array([True, True, True, False])
  w = np.array([np.nan, 5.0, np.inf, 0.0], np.float32)
  (new, kept, pruned), _ = _both(
      lambda m, w, s, k, ops: core.prune_and_grow(m, w, k, s, ops),
      mask, w, np.array([0, 0, 0, 1], np.float32), k=2)
  np.testing.assert_array_equal(_np(pruned), [True, False, True, False])
  assert _np(new).sum() == 3
  assert not _np(kept)[[0, 2]].any()


def test_compiled_update_takes_a_new_k_without_changing_its_answer():
  """The backend's compiled update (XLA / jax.jit) against eager, k varying."""
  rng = np.random.default_rng(0)
  mask = np.zeros(64, bool)
  mask[rng.permutation(64)[:20]] = True
  w = np.where(mask, rng.normal(size=64), 0).astype(np.float32)
  s = rng.normal(size=64).astype(np.float32)
  slot = rng.normal(size=64).astype(np.float32)

  def fn(masks, weights, unions, scores, slots, ks):
    return core.update_kernels(masks, weights, unions, scores, slots, ks, K)

  compiled = frontend.FRONTEND.compile(fn, True)
  t = keras.ops.convert_to_tensor
  for k in (0, 1, 7, 20):
    args = ([t(mask)], [t(w)], [t(mask)], [t(s)], [[t(slot)]],
            [t(k, "int32")])
    got, want = compiled(*args), fn(*args)
    for a, b in zip(got[:3], want[:3]):
      np.testing.assert_array_equal(_np(a[0]), _np(b[0]))
    np.testing.assert_array_equal(_np(got[3][0][0]), _np(want[3][0][0]))
    assert int(got[4][0]) == int(want[4][0])


def test_random_growth_scores_depend_on_seed_and_step_only():
  a = _np(K.uniform((5, 3), 17, 100))
  np.testing.assert_array_equal(a, _np(K.uniform((5, 3), 17, 100)))
  assert not np.array_equal(a, _np(K.uniform((5, 3), 17, 101)))
  assert not np.array_equal(a, _np(K.uniform((5, 3), 18, 100)))
  assert a.min() >= 0 and a.max() < 1
  if keras.backend.backend() == "tensorflow":
    # The same stream as the tf_keras front-end draws.
    np.testing.assert_array_equal(
        a, array_ops.tensorflow_ops().uniform((5, 3), 17, 100))
