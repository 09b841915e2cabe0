"""The prune-and-regrow rule, written once for every front-end and backend.

The functions here are tensor math against a small array namespace `ops`
(see `itop_tf.array_ops`): `array_ops.TF` for the tf_keras/TF-MOT front-end,
`array_ops.keras_ops()` for Keras 3 on TensorFlow, JAX or PyTorch. They hold
no state and import no framework, so both front-ends run the same copy, and
the tests run it on every backend.

- `rank_select`: the `k` best-scored candidates, exact count, ties to the
  lower index, NaN last, +-Inf clipped.
- `prune_and_grow`: one kernel's update: drop `k` smallest active weights,
  grow `k` inactive entries with the largest growth score.
- `update_kernel`: `prune_and_grow` plus what follows it (zero the grown
  weights and their optimizer slots, extend the union) and its statistics.
- `SparseWeight`: one sparse kernel of a wrapper and its state variables.

Example:

>>> from itop_tf import array_ops, core
>>> import tensorflow as tf
>>> core.rank_select(tf.constant([0.5, 2.0, float("nan"), 2.0]),
...                  tf.constant([True, True, True, False]),
...                  tf.constant(2), array_ops.TF).numpy()
array([ True,  True, False, False])
"""

import math

import numpy as np

MAX = float(np.finfo(np.float32).max)
# The lowest score a non-NaN candidate gets: one step above NaN's (-MAX).
LOWEST = float(np.nextafter(np.float32(-MAX), np.float32(0)))


def rank_select(scores, candidates, k, ops):
  """Bool mask of the `k` best-scored `candidates` (ties: lower index first).

  Every candidate ranks above every non-candidate, whatever the scores hold:
  +-Inf scores are clipped to the largest finite float32 values and NaN
  scores rank below all of them, so exactly `min(k, number of candidates)`
  entries come back. No shape depends on `k`, so it compiles once (XLA,
  `jax.jit`) for every `k`: it ranks with a stable descending sort of all
  entries and compares ranks with `k`.

  Args:
    scores: 1-D float tensor.
    candidates: 1-D bool tensor of the same size: the entries that may be
      selected.
    k: scalar int32 tensor (or int), 0 <= k.
    ops: the array namespace of the tensors' backend.

  Returns:
    1-D bool tensor, True at exactly `min(k, sum(candidates))` candidates.
  """
  n = int(scores.shape[0])
  s = ops.cast(scores, "float32")
  s = ops.where(ops.isnan(s), ops.full_like(s, -MAX),
                ops.clip(s, LOWEST, MAX))
  key = ops.where(candidates, s, ops.full_like(s, -np.inf))
  order = ops.descending_order(key)
  rank = ops.scatter_1d(order, ops.arange(n), n)
  return ops.logical_and(ops.less(rank, k), candidates)


def prune_and_grow(mask, weight, k, grow_scores, ops):
  """One update of one kernel: drop `k` smallest active, grow `k` inactive.

  Non-finite values never break the exact count: NaN or +-Inf weights that
  are active are the first pruned (they are no use to the network, and
  pruning them zeroes them), and NaN grow scores rank last.

  Args:
    mask: bool tensor, the active connections.
    weight: float tensor of the same shape.
    k: scalar int32, number of connections to replace (<= active count).
    grow_scores: float tensor of the mask's shape; the `k` inactive entries
      (after pruning; just-pruned ones are eligible) with the largest score
      are grown.
    ops: the array namespace of the tensors' backend.

  Returns:
    (new_mask, kept, pruned): bool tensors of the mask's shape. `new_mask`
    has exactly as many active entries as `mask`; `kept` (within
    `mask & new_mask`) are the entries whose value and optimizer state
    survive: a connection pruned and regrown in the same update keeps its
    value unless it was NaN or Inf, newly grown ones start at 0; `pruned`
    are the `k` entries pruned, regrown or not.
  """
  shape = tuple(mask.shape)
  m = ops.reshape(mask, (-1,))
  w = ops.cast(ops.reshape(weight, (-1,)), "float32")
  finite = ops.isfinite(w)
  # Smallest magnitude first; a non-finite weight before any finite one.
  prune_key = ops.where(finite, -ops.abs(w), ops.full_like(w, np.inf))
  prune = rank_select(prune_key, m, k, ops)
  after_prune = ops.logical_and(m, ops.logical_not(prune))
  s = ops.reshape(grow_scores, (-1,))
  grow = rank_select(s, ops.logical_not(after_prune), k, ops)
  new_mask = ops.logical_or(after_prune, grow)
  # A weight pruned and regrown keeps its value, unless it was not finite.
  kept = ops.logical_and(new_mask, ops.logical_or(
      after_prune, ops.logical_and(prune, finite)))
  return (ops.reshape(new_mask, shape), ops.reshape(kept, shape),
          ops.reshape(prune, shape))


def update_kernel(mask, weight, union, scores, slots, k, ops):
  """A kernel's whole update: new state and statistics.

  Args:
    mask, weight, union: the kernel's mask, value and ever-active union.
    scores: growth scores of the kernel's shape.
    slots: list of optimizer slot values of the kernel's shape.
    k: number of connections to replace.
    ops: the array namespace of the tensors' backend.

  Returns:
    dict with "mask", "weight" (grown entries 0, the rest kept), "union",
    "slots" (zero where the weight is not kept), "regrown" (number of newly
    active entries), "threshold" (largest finite magnitude pruned) and
    "non_finite" (active NaN/Inf weights before the update).
  """
  new_m, kept, pruned = prune_and_grow(mask, weight, k, scores, ops)
  finite = ops.isfinite(weight)
  magnitude = ops.abs(ops.cast(weight, "float32"))
  return {
      "mask": new_m,
      "weight": ops.where(kept, weight, ops.zeros_like(weight)),
      "union": ops.logical_or(union, new_m),
      "slots": [ops.where(kept, v, ops.zeros_like(v)) for v in slots],
      "regrown": ops.count(ops.logical_and(new_m, ops.logical_not(mask))),
      "threshold": ops.max(ops.where(ops.logical_and(pruned, finite),
                                     magnitude, ops.zeros_like(magnitude))),
      "non_finite": ops.count(ops.logical_and(mask, ops.logical_not(finite))),
  }


def update_kernels(masks, weights, unions, scores, slots, ks, ops):
  """`update_kernel` over lists (one entry per kernel), as lists.

  This is the function each front-end compiles (XLA via `tf.function`,
  `jax.jit`) into one program per model.

  Returns:
    (masks, weights, unions, slots, regrown, thresholds, non_finite).
  """
  out = [update_kernel(*args, ops=ops)
         for args in zip(masks, weights, unions, scores, slots, ks)]
  keys = ("mask", "weight", "union", "slots", "regrown", "threshold",
          "non_finite")
  return tuple([o[key] for o in out] for key in keys)


def kernel_seed(seed, index):
  """Seed of a wrapper's `index`-th kernel (its mask and its random growth).

  Args:
    seed: the wrapper's seed (a Python int or an int64 tensor).
    index: the kernel's position in the wrapper.

  Returns:
    `seed * 16 + index`, of `seed`'s type.
  """
  return seed * 16 + index


def check_density(density):
  """Raises ValueError unless `density` (a wrapper's argument) is in (0, 1]."""
  if not 0.0 < float(density) <= 1.0:
    raise ValueError(
        f"density must be in (0, 1], got {density!r} "
        "(sparsity = 1 - density must be in [0, 1)).")


def active_counts(layer_name, sizes, density, counts=None):
  """Active entries of each of a wrapper's kernels, each in [1, size].

  Args:
    layer_name: the wrapped layer's name, for the error.
    sizes: the number of entries of each sparse kernel.
    density: the wrapper's density, used when `counts` is None.
    counts: optional exact counts, one per kernel.

  Returns:
    A list of ints.

  Raises:
    ValueError: `counts` does not have one entry per kernel.
  """
  if counts is not None and len(counts) != len(sizes):
    raise ValueError(
        f"counts has {len(counts)} entries but layer {layer_name!r} has "
        f"{len(sizes)} sparse kernels.")
  wanted = counts if counts is not None else [
      int(round(density * size)) for size in sizes]
  return [min(max(int(c), 1), size) for c, size in zip(wanted, sizes)]


def prune_count(fraction, count):
  """Connections an update replaces: `ceil(fraction * count)`, at most all."""
  return min(math.ceil(fraction * count), count)


class SparseWeight:
  """One sparse kernel of a wrapper and its state variables.

  The same record on both front-ends; the variables are tf_keras or Keras 3
  variables.

  Attributes:
    wrapper: the `PruneAndRegrow` layer holding it.
    index: its position among the wrapper's sparse kernels.
    name: display name: the inner layer's name, then `/index` for a second
      kernel (e.g. "lstm/1" for a recurrent kernel).
    owner, attr: where the layer reads the kernel (`owner.attr`).
    weight: the kernel variable.
    mask, ever_active: bool variables of the kernel's shape.
    dense_grad: variable of the kernel's shape holding the dense gradient
      (or its moving average), or None unless the growth rule needs it.
    threshold: float32 scalar variable, the largest magnitude pruned by the
      last update.
    count: number of active entries (constant over training).
    size: number of entries.
  """

  def __init__(self, wrapper, index, owner, attr, weight, mask, ever_active,
               dense_grad, threshold, count):
    self.wrapper, self.index = wrapper, index
    self.owner, self.attr, self.weight = owner, attr, weight
    self.mask, self.ever_active, self.dense_grad = mask, ever_active, dense_grad
    self.threshold = threshold
    self.count = int(count)
    self.size = int(math.prod(weight.shape))
    base = wrapper.layer.name
    self.name = base if index == 0 else f"{base}/{index}"

  @property
  def is_dense(self):
    return self.count >= self.size

  @property
  def shape(self):
    return tuple(int(d) for d in self.weight.shape)

  def seed(self):
    """Seed of this kernel's random growth (int, or an int64 tensor)."""
    return kernel_seed(self.wrapper.growth_seed(), self.index)
