"""Layer density distributions for sparse training (ERK, ER, uniform).

Pure numpy: given the shapes of the sparse-able kernels and a global density,
these functions say how dense each layer is and how many weights each layer
keeps active. The global count is exact: the per-layer counts add up to
`round(density * total)`.

Example:

>>> shapes = [(3, 3, 3, 64), (3, 3, 64, 64), (1024, 10)]
>>> d = layer_densities(shapes, density=0.1)
>>> counts = exact_counts(shapes, d, density=0.1)
>>> int(counts.sum()) == round(0.1 * sum(np.prod(s) for s in shapes))
True
"""

import re

import numpy as np

DISTRIBUTIONS = ("erk", "er", "uniform")


def _sizes(shapes):
  return np.array([int(np.prod(s)) for s in shapes], dtype=np.float64)


def check_density(density, name="density"):
  """Raises ValueError unless `density` is in (0, 1]."""
  if not 0.0 < float(density) <= 1.0:
    raise ValueError(
        f"{name} must be in (0, 1], got {density!r} (sparsity = 1 - density "
        "must be in [0, 1)).")


def erk_scores(shapes, power_scale=1.0):
  """Raw Erdos-Renyi-Kernel scores `(sum(shape) / prod(shape)) ** power`.

  For a conv kernel `(kh, kw, in, out)` this is `(kh + kw + in + out) /
  (kh * kw * in * out)`; for a dense kernel `(in, out)` it is
  `(in + out) / (in * out)`.

  Args:
    shapes: sequence of kernel shapes.
    power_scale: exponent applied to the score (1.0 is ERK as published).

  Returns:
    float64 array of scores, one per shape.
  """
  return np.array([(sum(s) / float(np.prod(s))) ** power_scale for s in shapes],
                  dtype=np.float64)


def einsum_fans(equation, kernel_shape):
  """(fan-in, fan-out) of an `EinsumDense` kernel, read from its equation.

  The kernel's axes that the input shares and the output does not are
  summed over (fan-in); the ones the output keeps are fan-out. ERK scores a
  3-D attention kernel `(hidden, heads, head_dim)` as the matrix
  `(hidden, heads * head_dim)` it is, not as three layer widths.

  Args:
    equation: the layer's equation, e.g. "abc,cde->abde".
    kernel_shape: the kernel's shape (ints).

  Returns:
    `(fan_in, fan_out)`, or None when an axis of the kernel is neither
    summed over nor kept (then the kernel's own shape is the best guess).

  Example:

  >>> einsum_fans("abc,cde->abde", (64, 4, 16))
  (64, 64)
  """
  match = re.fullmatch(r"\s*([\w.]+)\s*,\s*([\w.]+)\s*->\s*([\w.]+)\s*",
                       equation)
  if not match:
    return None
  inp, kernel, out = (t.replace("...", "") for t in match.groups())
  if len(kernel) != len(kernel_shape):
    return None
  fan_in = fan_out = 1
  for axis, size in zip(kernel, kernel_shape):
    if axis in out:
      fan_out *= int(size)
    elif axis in inp:
      fan_in *= int(size)
    else:
      return None
  return fan_in, fan_out


def er_scores(shapes, power_scale=1.0):
  """Erdos-Renyi scores `(n_in + n_out) / (n_in * n_out)` on the last 2 dims.

  Args:
    shapes: sequence of kernel shapes of rank >= 2.
    power_scale: exponent applied to the score.

  Returns:
    float64 array of scores.
  """
  out = []
  for s in shapes:
    n_in, n_out = (s[-2], s[-1]) if len(s) >= 2 else (s[0], s[0])
    out.append(((n_in + n_out) / float(n_in * n_out)) ** power_scale)
  return np.array(out, dtype=np.float64)


def _solve_scaled(scores, sizes, density, fixed):
  """Densities `eps * score_i` meeting a global budget, capped at 1.

  Layers whose density would exceed 1 are made dense and moved to the dense
  side of the budget; eps is solved again until no layer exceeds 1.
  """
  n = len(sizes)
  out = np.zeros(n)
  is_fixed = np.zeros(n, dtype=bool)
  for i, d in fixed.items():
    out[i] = d
    is_fixed[i] = True
  budget = density * sizes.sum() - float((out * sizes)[is_fixed].sum())
  free = ~is_fixed
  if not free.any():
    return out
  if budget < -1e-9 or budget > sizes[free].sum() + 1e-9:
    raise ValueError(
        f"The per-layer densities given leave a budget of {budget:.0f} active "
        f"weights for the other layers, which hold {sizes[free].sum():.0f}; "
        "lower or raise the global sparsity, or give fewer per-layer densities.")
  dense = np.zeros(n, dtype=bool)
  while True:
    sparse = free & ~dense
    if not sparse.any():
      out[free] = 1.0
      return out
    rhs = budget - sizes[free & dense].sum()
    eps = rhs / float((scores[sparse] * sizes[sparse]).sum())
    over = sparse & (eps * scores > 1.0)
    if not over.any():
      out[free & dense] = 1.0
      out[sparse] = eps * scores[sparse]
      return out
    # Make the layer(s) with the largest score dense, then solve again.
    top = scores[sparse].max()
    dense |= sparse & np.isclose(scores, top, rtol=1e-12, atol=0.0)


def layer_densities(shapes, density, distribution="erk", power_scale=1.0,
                    fixed=None):
  """Per-layer densities for a global `density` over all `shapes`.

  Args:
    shapes: sequence of kernel shapes (every layer that is sparse-able).
    density: global fraction of active weights, in (0, 1].
    distribution: "erk" (default), "er" or "uniform".
    power_scale: exponent on the ERK/ER scores (`erk_power_scale`).
    fixed: optional `{index: density}` of layers whose density is given; the
      others share what is left of the global budget.

  Returns:
    float64 array of densities in (0, 1], one per shape.

  Raises:
    ValueError: unknown distribution, density out of range, or fixed
      densities that leave an infeasible budget.

  Example:

  >>> layer_densities([(784, 300), (300, 100), (100, 10)], 0.1, "uniform")
  array([0.1, 0.1, 0.1])
  """
  check_density(density)
  fixed = dict(fixed or {})
  for i, d in fixed.items():
    check_density(d, f"density of layer {i}")
  sizes = _sizes(shapes)
  if distribution == "uniform":
    scores = np.ones(len(shapes))
  elif distribution == "erk":
    scores = erk_scores(shapes, power_scale)
  elif distribution == "er":
    scores = er_scores(shapes, power_scale)
  else:
    raise ValueError(
        f"Unknown distribution {distribution!r}: use one of {DISTRIBUTIONS}.")
  return _solve_scaled(scores, sizes, density, fixed)


def exact_counts(shapes, densities, density=None):
  """Active-weight counts per layer that add up exactly.

  Each layer gets `floor(density_i * N_i)`; the remainder up to the target
  total is handed out by largest fractional part (ties to the lower index).
  The target total is `round(density * sum(N))` when the global `density` is
  given, else `round(sum(density_i * N_i))`. Every layer keeps at least one
  weight.

  Args:
    shapes: sequence of kernel shapes.
    densities: per-layer densities (from `layer_densities`).
    density: optional global density that fixes the total.

  Returns:
    int64 array of counts with `1 <= count_i <= N_i`.
  """
  sizes = _sizes(shapes)
  ideal = np.asarray(densities, dtype=np.float64) * sizes
  if density is None:
    total = int(round(ideal.sum()))
  else:
    total = int(round(density * sizes.sum()))
  counts = np.floor(ideal + 1e-9).astype(np.int64)
  counts = np.minimum(counts, sizes.astype(np.int64))
  short = total - int(counts.sum())
  if short > 0:
    frac = ideal - counts
    frac[counts >= sizes] = -1.0
    order = np.argsort(-frac, kind="stable")
    for i in order[:short]:
      if frac[i] >= 0:
        counts[i] += 1
  return np.maximum(counts, 1)


def layer_counts(shapes, density, distribution="erk", power_scale=1.0,
                 fixed=None):
  """Densities and exact active counts in one call.

  Args: as `layer_densities`.

  Returns:
    (densities, counts): float64 and int64 arrays.
  """
  d = layer_densities(shapes, density, distribution, power_scale, fixed)
  return d, exact_counts(shapes, d, density)


def exact_count_mask(shape, count, seed):
  """Random bool mask of `shape` with exactly `count` True entries.

  The one initial-mask generator of every front-end and backend: the mask
  depends on (shape, count, seed) only, so one seed gives the same masks on
  tf_keras and on Keras 3 with TensorFlow, JAX or PyTorch.

  Args:
    shape: the kernel's shape (ints).
    count: number of True entries, in [0, prod(shape)].
    seed: integer seed (any size; negative seeds are taken modulo 2**64).

  Returns:
    A NumPy bool array.

  Example:

  >>> exact_count_mask((2, 3), 2, seed=0).sum()
  2
  """
  n = int(np.prod(shape))
  seed = int(seed) % 2**64
  rng = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32])
  flat = np.zeros(n, bool)
  flat[rng.permutation(n)[:int(count)]] = True
  return flat.reshape(shape)
