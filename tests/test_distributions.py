"""ERK/ER/uniform layer densities and exact counts (numpy only)."""

import numpy as np
import pytest

from itop_tf import distributions as D


def vgg_c_shapes():
  cfg = [64, 64, "M", 128, 128, "M", 256, 256, (1, 256), "M", 512, 512,
         (1, 512), "M", 512, 512, (1, 512), "M"]
  shapes, cin = [], 3
  for v in cfg:
    if v == "M":
      continue
    k, c = v if isinstance(v, tuple) else (3, v)
    shapes.append((k, k, cin, c))
    cin = c
  return shapes + [(2048, 512), (512, 512), (512, 10)]


def resnet34_cifar_shapes(classes=100):
  shapes, cin = [(3, 3, 3, 64)], 64
  for planes, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2),
                                 (512, 3, 2)]:
    for b in range(blocks):
      s = stride if b == 0 else 1
      shapes += [(3, 3, cin, planes), (3, 3, planes, planes)]
      if s != 1 or cin != planes:
        shapes.append((1, 1, cin, planes))
      cin = planes
  return shapes + [(512, classes)]


def eps_of(shapes, d):
  scores = D.erk_scores(shapes)
  sparse = d < 1.0
  ratios = d[sparse] / scores[sparse]
  np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)
  return ratios[0]


def test_erk_scores_by_hand():
  np.testing.assert_allclose(
      D.erk_scores([(3, 3, 16, 32), (100, 10)]),
      [(3 + 3 + 16 + 32) / (3 * 3 * 16 * 32), 110 / 1000])


def test_erk_matches_hand_solution_without_capping():
  shapes = [(100, 100), (200, 100)]
  d = D.layer_densities(shapes, 0.1)
  # eps * (0.02 * 10000 + 0.015 * 20000) = 0.1 * 30000  ->  eps = 6
  np.testing.assert_allclose(d, [6 * 0.02, 6 * 0.015])


def test_erk_caps_layers_above_one_and_resolves():
  shapes = [(3, 3, 3, 8), (300, 300)]
  d = D.layer_densities(shapes, 0.2)
  assert d[0] == 1.0
  n = np.array([216, 90000])
  # The dense layer moves to the dense side of the budget.
  np.testing.assert_allclose(d[1], (0.2 * n.sum() - 216) / 90000)


def test_erk_vgg_c_anchor_density_0_1():
  shapes = vgg_c_shapes()
  d = D.layer_densities(shapes, 0.1)
  assert eps_of(shapes, d) == pytest.approx(97.6, abs=0.05)
  assert list(np.where(d >= 1.0)[0]) == [0, len(shapes) - 1]


def test_erk_resnet34_anchor_density_0_02():
  shapes = resnet34_cifar_shapes()
  d = D.layer_densities(shapes, 0.02)
  assert eps_of(shapes, d) == pytest.approx(25.3, abs=0.06)
  assert list(np.where(d >= 1.0)[0]) == [0]


@pytest.mark.parametrize("distribution", ["erk", "er", "uniform"])
@pytest.mark.parametrize("density", [0.02, 0.1, 0.5, 1.0])
def test_global_density_is_exact(distribution, density):
  shapes = resnet34_cifar_shapes()
  d, counts = D.layer_counts(shapes, density, distribution)
  sizes = np.array([np.prod(s) for s in shapes])
  assert np.all(d <= 1.0) and np.all(d > 0)
  assert counts.sum() == round(density * sizes.sum())
  assert np.all(counts <= sizes) and np.all(counts >= 1)


def test_uniform_gives_every_layer_the_target():
  d = D.layer_densities([(784, 300), (300, 100), (100, 10)], 0.1, "uniform")
  np.testing.assert_allclose(d, 0.1)


def test_er_uses_last_two_dims():
  shapes = [(3, 3, 10, 20), (50, 40)]
  np.testing.assert_allclose(D.er_scores(shapes), [30 / 200, 90 / 2000])


def test_power_scale_flattens_erk():
  shapes = [(64, 64), (512, 512)]
  d0 = D.layer_densities(shapes, 0.1, power_scale=0.0)
  np.testing.assert_allclose(d0, 0.1)


def test_fixed_layers_keep_their_density_and_total_stays_exact():
  shapes = [(100, 100), (200, 100), (50, 10)]
  d, counts = D.layer_counts(shapes, 0.1, fixed={2: 1.0})
  assert d[2] == 1.0
  assert counts.sum() == round(0.1 * 30500)


def test_infeasible_fixed_densities_raise():
  with pytest.raises(ValueError, match="budget"):
    D.layer_densities([(100, 100), (10, 10)], 0.01, fixed={0: 0.5})


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_bad_density_raises(bad):
  with pytest.raises(ValueError, match=r"\(0, 1\]"):
    D.layer_densities([(10, 10)], bad)


def test_unknown_distribution_raises():
  with pytest.raises(ValueError, match="Unknown distribution 'erdos'"):
    D.layer_densities([(10, 10)], 0.5, "erdos")


@pytest.mark.parametrize("equation, shape, fans", [
    ("abc,cde->abde", (64, 4, 16), (64, 64)),     # attention query
    ("abcd,cde->abe", (4, 16, 64), (64, 64)),     # attention output
    ("ab,bc->ac", (3, 5), (3, 5)),
    ("...b,bc->...c", (3, 5), (3, 5)),
    ("ab,bcd->acd", (3, 5, 2), (3, 10)),
    ("ab,bz->a", (3, 5), None),                   # z neither in nor out
    ("ab,b->ab", (3, 5), None),                   # kernel rank differs
])
def test_einsum_kernel_fans_come_from_the_equation(equation, shape, fans):
  assert D.einsum_fans(equation, shape) == fans
