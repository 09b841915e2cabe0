"""Rank-selection cases and their answer in numpy, for every front-end's tests.

`core.rank_select` must pick the first `k` candidates of the order (score
descending, index ascending), with NaN scores below every other and +-Inf
clipped to the largest finite float32 values. `expected` says so in numpy,
independently of both rank methods; `cases` yields the inputs the trust
issue named: shape sweeps, ties, k = 0 and k = size, all-equal scores,
NaN/+-Inf, signed zeros, no candidates. Denormal scores are left out: CPU
TensorFlow and XLA flush them to zero (ties), PyTorch does not.
"""

import numpy as np

MAX = np.finfo(np.float32).max


def expected(scores, candidates, k):
  """The selection `core.rank_select` must return, computed with numpy."""
  s = np.asarray(scores, np.float32)
  s = np.where(np.isnan(s), -MAX, np.clip(s, np.nextafter(-MAX, 0), MAX))
  s = s + np.float32(0.0)  # -0.0 and 0.0 are one score
  idx = np.flatnonzero(candidates)
  # lexsort: last key first; by score descending then index ascending.
  order = idx[np.lexsort((idx, -s[idx]))]
  out = np.zeros(len(s), bool)
  out[order[:k]] = True
  return out


def cases(seed=0):
  """(name, scores, candidates, ks) tuples, each with float32 scores."""
  rng = np.random.default_rng(seed)
  special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0,
                      MAX, -MAX], np.float32)
  for n in (1, 2, 7, 64, 257):
    for name, s in (
        ("normal", rng.standard_normal(n)),
        ("ties", rng.integers(-2, 3, n)),
        ("all_equal", np.full(n, 0.5)),
        ("special", special[rng.integers(0, len(special), n)]),
    ):
      s = np.asarray(s, np.float32)
      for density in (0.0, 0.3, 1.0):
        c = rng.random(n) < density
        if density == 1.0:
          c[:] = True
        ks = sorted({0, 1, int(c.sum()) // 2, int(c.sum()), n})
        yield f"{name}-n{n}-d{density}", s, c, ks
