"""The prune-and-regrow rule, written once for every front-end and backend.

The functions here are tensor math against a small array namespace `ops`
(see `itop_tf.array_ops`): `array_ops.tensorflow_ops()` for the
tf_keras/TF-MOT front-end, `array_ops.keras_ops()` for Keras 3 on
TensorFlow, JAX or PyTorch, and `array_ops.NUMPY` for an update that is
not compiled. They hold
no state and import no framework, so both front-ends run the same copy, and
the tests run it on every backend.

- `rank_select`: the `k` best-scored candidates, exact count, ties to the
  lower index, NaN last, +-Inf clipped.
- `prune_and_grow`: one kernel's update: drop `k` smallest active weights,
  grow `k` inactive entries with the largest growth score.
- `update_kernel`: `prune_and_grow` plus what follows it (zero the grown
  weights and their optimizer slots, extend the union) and its statistics.
- `stored_gradient`: what the dense-gradient variable RigL and SNFS grow by
  holds after a step.
- `nested_kernels`: the kernels of the layers nested in a layer.
- `SparseWeight`: one sparse kernel of a wrapper and its state variables.

Example:

>>> from itop_tf import array_ops, core
>>> import tensorflow as tf
>>> core.rank_select(tf.constant([0.5, 2.0, float("nan"), 2.0]),
...                  tf.constant([True, True, True, False]),
...                  tf.constant(2), array_ops.tensorflow_ops()).numpy()
array([ True,  True, False, False])
"""

import math

import numpy as np

MAX = float(np.finfo(np.float32).max)
# The lowest score a non-NaN candidate gets: one step above NaN's (-MAX).
LOWEST = float(np.nextafter(np.float32(-MAX), np.float32(0)))


# Both compile to one program for every k (XLA, `jax.jit`) and select the
# same entries.
RANK_METHODS = ("threshold", "sort")
INT32_MIN = -2**31


def rank_select(scores, candidates, k, ops, method="threshold"):
  """Bool mask of the `k` best-scored `candidates` (ties: lower index first).

  Every candidate ranks above every non-candidate, whatever the scores hold:
  +-Inf scores are clipped to the largest finite float32 values and NaN
  scores rank below all of them, so exactly `min(k, number of candidates)`
  entries come back. No shape depends on `k`, so it compiles once (XLA,
  `jax.jit`) for every `k`.

  Both methods select the same entries: the first `k` of the order (score
  descending, index ascending).

  - "threshold" (default): finds the k-th best score by a radix search on
    its float bits (32 counting passes over the kernel, each fused into one
    reduction under XLA), takes every score above it and the lowest-index
    ties at it. It holds two int32 arrays of the kernel's size. A namespace
    with a `kth_largest(key, k)` (NumPy: one partition) finds the same
    value with it instead of the search.
  - "sort": a stable descending sort of all entries, then each entry's rank
    compared with `k`; the first implementation, several times slower and
    with sort buffers on top (BENCHMARKS.md), kept as the reference.

  A namespace with shapes known at run time (NumPy: `ops.positions`) ranks
  the candidates alone, gathered in index order, so the same rule picks the
  same entries from fewer: a prune ranks a kernel's active entries only.

  Args:
    scores: 1-D float tensor.
    candidates: 1-D bool tensor of the same size: the entries that may be
      selected.
    k: scalar int32 tensor (or int), 0 <= k.
    ops: the array namespace of the tensors' backend.
    method: "threshold" or "sort".

  Returns:
    1-D bool tensor, True at exactly `min(k, sum(candidates))` candidates.

  Raises:
    ValueError: an unknown `method`.
  """
  if method not in RANK_METHODS:
    raise ValueError(f"method must be one of {RANK_METHODS}, got {method!r}.")
  positions = getattr(ops, "positions", None)
  if positions is None:
    return _rank(scores, candidates, k, ops, method)
  at = positions(candidates)
  chosen = _rank(ops.take(scores, at), None, k, ops, method)
  return ops.scatter_1d(at, chosen, int(scores.shape[0]))


def _rank(scores, candidates, k, ops, method):
  """`rank_select`'s rule; `candidates` None: every entry is one."""
  s = ops.cast(scores, "float32")
  s = ops.where(ops.isnan(s), ops.full_like(s, -MAX),
                ops.clip(s, LOWEST, MAX))
  # -0.0 and 0.0 are equal scores (ties by index; XLA's sort orders them).
  s = ops.where(ops.equal(s, 0.0), ops.zeros_like(s), s)
  if method == "sort":
    n = int(scores.shape[0])
    key = s if candidates is None else ops.where(
        candidates, s, ops.full_like(s, -np.inf))
    order = ops.descending_order(key)
    rank = ops.scatter_1d(order, ops.arange(n), n)
    chosen = ops.less(rank, k)
    return chosen if candidates is None else ops.logical_and(
        chosen, candidates)
  key = ops.float_order_key(s)
  if candidates is not None:
    key = ops.where(candidates, key, ops.full_like(key, INT32_MIN))
  # A namespace may find the same value its own way (NumPy: a partition).
  kth = getattr(ops, "kth_largest", None)
  t = kth(key, k) if kth is not None else kth_largest_key(key, k, ops)
  above = ops.greater(key, t)
  ties = ops.equal(key, t)
  # The first `k - count(above)` ties, by index.
  wanted = k - ops.count(above)
  chosen = ops.logical_or(above, ops.logical_and(
      ties, ops.less_equal(ops.cumsum(ops.cast(ties, "int32")), wanted)))
  return chosen if candidates is None else ops.logical_and(chosen, candidates)


def kth_largest_key(key, k, ops):
  """The largest int32 `t` with at least `k` entries of `key` >= `t`.

  For 1 <= k <= size that is the k-th largest value of `key`. Built bit by
  bit from the sign bit down: 32 counting passes, no sort, no buffer of
  `key`'s size. The 31 passes after the sign bit are one loop
  (`ops.fori_loop`), so the traced program stays small.

  Args:
    key: 1-D int32 tensor.
    k: scalar int (tensor).
    ops: the array namespace.

  Returns:
    Scalar int32 tensor.
  """
  def enough(t):
    return ops.greater_equal(ops.count(ops.greater_equal(key, t)), k)

  def next_bit(_, state):
    t, bit = state
    c = t + bit  # that bit of t is still 0: no overflow
    return ops.where(enough(c), c, t), bit // 2

  zero = ops.int32(0)
  t = ops.where(enough(zero), zero, ops.int32(INT32_MIN))
  t, _ = ops.fori_loop(0, 31, next_bit, (t, ops.int32(1 << 30)))
  return t


def stored_gradient(dy, previous, decay, ops):
  """What a wrapper's dense-gradient variable holds after a step's `dy`.

  Without a `decay` (RigL) the step's dense gradient, NaN as 0 and +-Inf
  kept (the rank clips it). With one (SNFS) the moving average
  `decay * previous + (1 - decay) * dy`, where an entry whose `dy` is NaN or
  +-Inf keeps `previous`: a LossScaleOptimizer's overflow step would
  otherwise leave Inf or NaN in it for good.

  Args:
    dy: the incoming dense gradient, in the variable's dtype.
    previous: the variable's value (read only with a `decay`).
    decay: None, or the moving average's decay in [0, 1).
    ops: an `itop_tf.array_ops` namespace.

  Returns:
    The value to store.
  """
  if decay is None:
    return ops.where(ops.isnan(dy), ops.zeros_like(dy), dy)
  return ops.where(ops.isfinite(dy), decay * previous + (1.0 - decay) * dy,
                   previous)


def prune_and_grow(mask, weight, k, grow_scores, ops, rank="threshold",
                   drop_scores=None):
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
    rank: the `rank_select` method.
    drop_scores: None drops the `k` active entries of smallest magnitude;
      else a float tensor of the mask's shape, and the `k` active entries
      with the lowest score are dropped (`Growth.drop_scores`).

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
  # Smallest magnitude (or drop score) first; a non-finite weight before any
  # finite one.
  keep = ops.abs(w) if drop_scores is None else ops.cast(
      ops.reshape(drop_scores, (-1,)), "float32")
  prune_key = ops.where(finite, -keep, ops.full_like(w, np.inf))
  prune = rank_select(prune_key, m, k, ops, rank)
  after_prune = ops.logical_and(m, ops.logical_not(prune))
  s = ops.reshape(grow_scores, (-1,))
  grow = rank_select(s, ops.logical_not(after_prune), k, ops, rank)
  new_mask = ops.logical_or(after_prune, grow)
  # A weight pruned and regrown keeps its value, unless it was not finite.
  kept = ops.logical_and(new_mask, ops.logical_or(
      after_prune, ops.logical_and(prune, finite)))
  return (ops.reshape(new_mask, shape), ops.reshape(kept, shape),
          ops.reshape(prune, shape))


def update_kernel(mask, weight, union, scores, slots, k, ops,
                  rank="threshold", drop_scores=None):
  """A kernel's whole update: new state and statistics.

  Args:
    mask, weight, union: the kernel's mask, value and ever-active union.
    scores: growth scores of the kernel's shape.
    slots: list of optimizer slot values of the kernel's shape.
    k: number of connections to replace.
    ops: the array namespace of the tensors' backend.
    rank: the `rank_select` method.
    drop_scores: see `prune_and_grow`.

  Returns:
    dict with "mask", "weight" (grown entries 0, the rest kept), "union",
    "slots" (zero where the weight is not kept), "regrown" (number of newly
    active entries), "threshold" (largest finite magnitude pruned) and
    "non_finite" (active NaN/Inf weights before the update) and "drifted"
    (inactive entries that were not 0 before the update: the update zeroes
    them; see `MaskUpdater.update`).
  """
  new_m, kept, pruned = prune_and_grow(mask, weight, k, scores, ops, rank,
                                       drop_scores)
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
      "drifted": ops.count(ops.logical_and(
          ops.logical_not(mask), ops.logical_not(ops.equal(
              weight, ops.zeros_like(weight))))),
  }


def update_kernels(masks, weights, unions, scores, slots, ks, ops,
                   rank="threshold", drop_scores=None):
  """`update_kernel` over lists (one entry per kernel), as lists.

  This is the function each front-end compiles (XLA via `tf.function`,
  `jax.jit`) into one program per model. `drop_scores` is None or a list
  with one entry per kernel (None: by magnitude).

  Returns:
    (masks, weights, unions, slots, regrown, thresholds, non_finite,
    drifted).
  """
  if drop_scores is None:
    drop_scores = [None] * len(masks)
  out = [update_kernel(*args, ops=ops, rank=rank, drop_scores=drop)
         for *args, drop in zip(masks, weights, unions, scores, slots, ks,
                                drop_scores)]
  keys = ("mask", "weight", "union", "slots", "regrown", "threshold",
          "non_finite", "drifted")
  return tuple([o[key] for o in out] for key in keys)


def size_groups(sizes, max_entries):
  """Splits kernels, in order, into groups of at most `max_entries` entries.

  An update runs one group at a time, so its transient memory is bounded by
  the largest group, not the model. A kernel larger than `max_entries` is a
  group of its own.

  Args:
    sizes: the number of entries of each kernel.
    max_entries: the bound (>= 1).

  Returns:
    A list of lists of kernel positions, covering every kernel once.

  Example:

  >>> size_groups([3, 3, 5, 1, 9], max_entries=6)
  [[0, 1], [2, 3], [4]]
  """
  if max_entries < 1:
    raise ValueError(f"max_entries must be >= 1, got {max_entries}.")
  groups, total = [], 0
  for i, size in enumerate(sizes):
    if not groups or total + size > max_entries:
      groups.append([])
      total = 0
    groups[-1].append(i)
    total += size
  return groups


def kernel_seed(seed, index):
  """Seed of a wrapper's `index`-th kernel (its mask and its random growth).

  Args:
    seed: the wrapper's seed (a Python int or an int64 tensor).
    index: the kernel's position in the wrapper.

  Returns:
    `seed * 16 + index`, of `seed`'s type.
  """
  return seed * 16 + index


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


def nested_kernels(layer, direct, sublayers):
  """The kernels of the sparse-able layers nested in `layer`, depth first.

  A Transformer block, a `MultiHeadAttention` or a user's custom layer is
  not a layer type itop_tf wraps, but its Dense/EinsumDense/Conv/Embedding
  sublayers are: their kernels are what a wrapper of the outer layer makes
  sparse. A sublayer that `direct` knows is not searched further; a sublayer
  reached twice (shared) counts once.

  Args:
    layer: a built layer.
    direct: `direct(sublayer)` returns `(owner, attr, name)` for each of the
      sublayer's own kernels (`name`: the variable's name, e.g. "kernel"),
      or None when it is not a type itop_tf wraps.
    sublayers: `sublayers(layer)` returns the layer's direct sublayers in
      the order the layer tracks them.

  Returns:
    A list of `(owner, attr, path)`, `path` being the kernel's place below
    `layer` by layer names (e.g. "self_attention/query/kernel"), in a fixed
    order for a given layer class and configuration: the order wrappers
    index kernels by.

  Example:

  >>> [p for _, _, p in nested_kernels(mha, direct, sublayers)]
  ['query/kernel', 'key/kernel', 'value/kernel', 'attention_output/kernel']
  """
  out, seen = [], {id(layer)}

  def visit(parent, prefix):
    for sub in sublayers(parent):
      if id(sub) in seen:
        continue
      seen.add(id(sub))
      own = direct(sub)
      if own is None:
        visit(sub, f"{prefix}{sub.name}/")
      else:
        out.extend((o, a, f"{prefix}{sub.name}/{n}") for o, a, n in own)

  visit(layer, "")
  return out


def chosen_kernels(layer_name, found, kernels=None):
  """The entries of `found` (a layer's sparse-able kernels) at `kernels`.

  Args:
    layer_name: the layer's name, for the error.
    found: every kernel the wrapper could take, in its order.
    kernels: indices into `found`, or None for all of them.

  Raises:
    ValueError: an index out of range.
  """
  if kernels is None:
    return list(found)
  if not all(0 <= i < len(found) for i in kernels):
    raise ValueError(f"Layer {layer_name!r} has {len(found)} sparse-able "
                     f"kernels; kernels={list(kernels)} is out of range.")
  return [found[i] for i in kernels]


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
      kernel (e.g. "lstm/1" for a recurrent kernel), or, for a kernel of a
      nested layer, its path (e.g. "encoder_0/self_attention/query").
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
               dense_grad, threshold, count, name=None):
    self.wrapper, self.index = wrapper, index
    self.owner, self.attr, self.weight = owner, attr, weight
    self.mask, self.ever_active, self.dense_grad = mask, ever_active, dense_grad
    self.threshold = threshold
    self.count = int(count)
    self.size = int(math.prod(weight.shape))
    base = wrapper.layer.name
    if name is None:
      name = base if index == 0 else f"{base}/{index}"
    self.name = name

  @property
  def is_dense(self):
    return self.count >= self.size

  @property
  def shape(self):
    return tuple(int(d) for d in self.weight.shape)

  def seed(self):
    """Seed of this kernel's random growth (int, or an int64 tensor)."""
    return kernel_seed(self.wrapper.growth_seed(), self.index)
