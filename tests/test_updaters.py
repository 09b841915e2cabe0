"""Prune/grow math and MaskUpdater invariants on hand-built cases."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import itop_tf
from itop_tf import array_ops
from itop_tf import core
from itop_tf import updaters
from itop_tf.tf_keras import frontend
from tf_keras_helpers import compile_sgd, kernels, sparse_mlp, toy_data


def rank_select(scores, candidates, k):
  """`core.rank_select` on TensorFlow tensors."""
  return core.rank_select(scores, candidates, k, array_ops.tensorflow_ops())


def prune_and_grow(mask, weight, k, grow_scores):
  """`core.prune_and_grow` on TensorFlow tensors: (new_mask, kept, pruned)."""
  return core.prune_and_grow(mask, weight, k, grow_scores,
                             array_ops.tensorflow_ops())


def _count(t):
  return int(tf.reduce_sum(tf.cast(t, tf.int32)))


def test_rank_select_picks_k_largest_ties_to_lower_index():
  s = tf.constant([0.5, 2.0, 2.0, -1.0, 2.0])
  every = tf.ones([5], tf.bool)
  got = rank_select(s, every, tf.constant(2)).numpy()
  assert got.tolist() == [False, True, True, False, False]
  assert not rank_select(s, every, tf.constant(0)).numpy().any()


def test_rank_select_never_picks_a_non_candidate():
  # Non-candidates with the best scores, candidates at -inf, NaN and ties.
  s = tf.constant([9.0, -np.inf, np.nan, 9.0, -np.inf, np.inf])
  cand = tf.constant([False, True, True, False, True, False])
  got = rank_select(s, cand, tf.constant(3)).numpy()
  assert got.tolist() == [False, True, True, False, True, False]
  # NaN ranks below -inf (clipped to a finite float): -inf entries first.
  got = rank_select(s, cand, tf.constant(2)).numpy()
  assert got.tolist() == [False, True, False, False, True, False]


SHAPES = [(1,), (5,), (2, 3), (4, 4), (3, 3, 2), (2, 2, 4, 4)]


@pytest.mark.parametrize("ops", [array_ops.tensorflow_ops(), array_ops.NUMPY],
                         ids=["tensorflow", "numpy"])
@pytest.mark.parametrize("rank", itop_tf.core.RANK_METHODS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_prune_and_grow_keeps_exact_count_for_every_k(shape, rank, ops):
  # jaxpruner-style sweep: every active count n and every k in 0..n.
  size = int(np.prod(shape))
  rng = np.random.default_rng(size)
  arr = tf.constant if ops is array_ops.tensorflow_ops() else np.asarray
  for n in sorted({1, (size + 1) // 2, size}):
    flat = np.zeros(size, bool)
    flat[rng.permutation(size)[:n]] = True
    mask = flat.reshape(shape)
    w = rng.normal(size=shape).astype("float32") * mask
    scores = rng.random(shape).astype("float32")
    for k in range(n + 1):
      new, kept, pruned = (np.asarray(x) for x in itop_tf.core.prune_and_grow(
          arr(mask), arr(w), arr(np.int32(k)), arr(scores), ops, rank))
      assert new.shape == shape
      assert _count(new) == n, (n, k)
      assert _count(pruned) == k and not (pruned & ~mask).any()
      assert _count(kept) >= n - k
      if k == 0:
        np.testing.assert_array_equal(new, mask)


def test_prune_and_grow_under_xla_with_dynamic_k():
  shape = (2, 2, 4, 4)
  rng = np.random.default_rng(0)
  mask = tf.constant(rng.random(shape) < 0.3)
  n = _count(mask)
  w = tf.constant(rng.normal(size=shape).astype("float32"))
  scores = tf.constant(rng.random(shape).astype("float32"))
  fn = tf.function(prune_and_grow, jit_compile=True)
  for k in range(n + 1):
    new, _, _ = fn(mask, w, tf.constant(k), scores)
    assert _count(new) == n
    ref, _, _ = prune_and_grow(mask, w, tf.constant(k), scores)
    np.testing.assert_array_equal(new.numpy(), ref.numpy())


def test_ties_prune_and_grow_the_lowest_indices():
  mask = tf.constant([False, True, True, False, True, False, False, True])
  w = tf.ones([8]) * tf.cast(mask, tf.float32)  # all active weights equal
  new, _, pruned = prune_and_grow(mask, w, tf.constant(2),
                                           tf.zeros([8]))
  # Prunes active 1 and 2; grows the lowest inactive, 0 and 1 (1 is just
  # pruned, so eligible).
  assert pruned.numpy().tolist() == [0, 1, 1, 0, 0, 0, 0, 0]
  assert new.numpy().tolist() == [1, 1, 0, 0, 1, 0, 0, 1]


NON_FINITE = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("bad", NON_FINITE, ids=str)
@pytest.mark.parametrize("where", ["weight", "score", "both"])
def test_non_finite_values_keep_exact_counts(bad, where):
  rng = np.random.default_rng(1)
  for shape in SHAPES[2:]:
    size = int(np.prod(shape))
    flat = rng.random(size) < 0.4
    flat[0] = True
    mask = tf.constant(flat.reshape(shape))
    n = _count(mask)
    w = rng.normal(size=size).astype("float32") * flat
    s = rng.random(size).astype("float32")
    if where in ("weight", "both"):
      w[np.flatnonzero(flat)[: max(1, n // 2)]] = bad
    if where in ("score", "both"):
      s[rng.random(size) < 0.5] = bad
    for k in range(n + 1):
      new, kept, _ = prune_and_grow(
          mask, tf.constant(w.reshape(shape)), tf.constant(k),
          tf.constant(s.reshape(shape)))
      assert _count(new) == n, (shape, k)
      assert not (kept.numpy() & ~mask.numpy()).any()


def test_non_finite_weights_are_pruned_first():
  mask = tf.constant([True, True, True, True, False, False])
  w = tf.constant([0.01, np.nan, 5.0, -np.inf, 0.0, 0.0])
  new, kept, pruned = prune_and_grow(mask, w, tf.constant(2),
                                              tf.constant([0.0] * 4 + [1, 1]))
  assert pruned.numpy().tolist() == [False, True, False, True, False, False]
  assert new.numpy().tolist() == [True, False, True, False, True, True]
  assert kept.numpy().tolist() == [True, False, True, False, False, False]


def test_prune_drops_smallest_magnitude_active_weights():
  mask = tf.constant([True, True, True, True, False, False])
  w = tf.constant([0.9, -0.1, 0.5, 0.2, 0.0, 0.0])
  scores = tf.constant([0., 0., 0., 0., 1.0, 0.5])
  new, kept, _ = prune_and_grow(mask, w, tf.constant(2), scores)
  # -0.1 and 0.2 leave; the two best-scored inactive (4, 5) join.
  assert new.numpy().tolist() == [True, False, True, False, True, True]
  assert kept.numpy().tolist() == [True, False, True, False, False, False]


def test_gradient_growth_picks_top_abs_grad_inactive_weights():
  mask = tf.constant([[True, False, False], [False, True, False]])
  w = tf.constant([[1.0, 0.0, 0.0], [0.0, 0.01, 0.0]])
  grad = tf.constant([[50.0, -3.0, 0.1], [-7.0, 99.0, 2.0]])
  new, _, _ = prune_and_grow(mask, w, tf.constant(1), tf.abs(grad))
  # Prune w=0.01 at (1,1); its |grad| 99 is the largest among inactive
  # candidates, so it comes back; the next best (-7) is not needed.
  assert new.numpy().tolist() == [[True, False, False], [False, True, False]]
  new, _, _ = prune_and_grow(mask, w, tf.constant(2), tf.abs(grad))
  # k=2 prunes both; the top-2 |grad| inactive entries are 99 and 50.
  assert new.numpy().tolist() == [[True, False, False], [False, True, False]]
  grad = tf.constant([[0.0, -3.0, 0.1], [-7.0, 0.0, 2.0]])
  new, _, _ = prune_and_grow(mask, w, tf.constant(1), tf.abs(grad))
  assert new.numpy().tolist() == [[True, False, False], [True, False, False]]


def test_pruned_and_regrown_weight_keeps_its_value():
  mask = tf.constant([True, True, False])
  w = tf.constant([0.3, 0.1, 0.0])
  new, kept, _ = prune_and_grow(mask, w, tf.constant(1),
                                         tf.constant([0.0, 5.0, 1.0]))
  assert new.numpy().tolist() == [True, True, False]
  assert kept.numpy().tolist() == [True, True, False]


def _train(model, steps, callbacks=(), batch=32, opt=None, jit=False):
  x, y = toy_data()
  if opt is None:
    compile_sgd(model, jit=jit)
  else:
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), jit_compile=jit)
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat()
  model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0,
            callbacks=list(callbacks))
  return model


class Probe(keras.callbacks.Callback):
  """Records masks, unions and invariants after every batch."""

  def __init__(self):
    super().__init__()
    self.records = []

  def on_train_batch_end(self, batch, logs=None):
    rec = {"step": int(self.model.optimizer.iterations.numpy()),
           "rate": itop_tf.exploration_rate(self.model), "layers": []}
    for _, sw in kernels(self.model):
      m, w, u = sw.mask.numpy(), sw.weight.numpy(), sw.ever_active.numpy()
      rec["layers"].append({"mask": m, "union": u, "count": sw.count,
                            "active": int(m.sum()),
                            "max_pruned": float(np.abs(w[~m]).max(initial=0))})
    self.records.append(rec)


def test_rate_starts_at_one_minus_sparsity():
  model = sparse_mlp(sparsity=0.8)
  assert itop_tf.exploration_rate(model) == pytest.approx(0.2, abs=1e-3)


def test_set_changes_masks_only_at_update_steps():
  model = sparse_mlp(sparsity=0.8, interval=4)
  probe = Probe()
  _train(model, 12, [itop_tf.ITOPCallback(), probe])
  changed = []
  for prev, cur in zip(probe.records, probe.records[1:]):
    diff = any((a["mask"] != b["mask"]).any()
               for a, b in zip(prev["layers"], cur["layers"]))
    changed.append((cur["step"], diff))
  assert [s for s, d in changed if d] == [4, 8, 12]


def test_zero_prune_fraction_is_static_sparse_training(monkeypatch):
  schedule = itop_tf.RegrowthSchedule(2, 100, initial_prune_fraction=0.0)
  from tf_keras_helpers import mlp
  model = itop_tf.sparsify(mlp(), 0.8, schedule=schedule)
  before = [sw.mask.numpy().copy() for _, sw in kernels(model)]

  def no_compute(*args):
    raise AssertionError(f"an update with nothing to replace ran: {args}")

  # Nothing to replace: the update must not even run its compiled math.
  monkeypatch.setattr(updaters, "compiled_update", no_compute)
  _train(model, 10, [itop_tf.ITOPCallback()])
  after = [sw.mask.numpy() for _, sw in kernels(model)]
  assert all((a == b).all() for a, b in zip(before, after))
  assert itop_tf.exploration_rate(model) == pytest.approx(0.2, abs=1e-3)


def test_pruned_weights_stay_zero_under_momentum_between_updates():
  # Momentum would revive a pruned weight if its slot were not zeroed.
  model = sparse_mlp(sparsity=0.7, interval=2, total=400)
  probe = Probe()
  _train(model, 9, [itop_tf.ITOPCallback(), probe],
         opt=keras.optimizers.SGD(0.1, momentum=0.99, nesterov=True))
  assert all(l["max_pruned"] == 0.0 for r in probe.records
             for l in r["layers"])


def test_dense_gradient_is_captured_only_before_updates():
  model = sparse_mlp(sparsity=0.8, interval=5, grow="gradient")
  _train(model, 3, [itop_tf.ITOPCallback()])
  assert all(not sw.dense_grad.numpy().any() for _, sw in kernels(model))


def _reference_gradients(model, xb, yb):
  """d loss / d masked kernel on (xb, yb), from a plain copy of `model`."""
  plain = itop_tf.strip(model)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  kernels_ = [l.kernel for l in plain.layers]
  with tf.GradientTape() as tape:
    loss = loss_fn(yb, plain(xb, training=True))
  return [g.numpy() for g in tape.gradient(loss, kernels_)]


def _xla_train_step(model, opt):
  """A custom-loop training step, XLA-compiled, as a user would write it."""
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function(jit_compile=True)
  def train_step(xb, yb):
    with tf.GradientTape() as tape:
      loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  return train_step


def test_captured_gradient_is_the_dense_gradient_of_the_update_step():
  # Capture runs inside the XLA-compiled step of step 5 (the update step):
  # it must equal tape.gradient of that step's batch at that step's weights,
  # at inactive entries too, and not the gradient of an earlier batch.
  model = sparse_mlp(sparsity=0.8, interval=5, grow="gradient")
  opt = keras.optimizers.SGD(0.1, momentum=0.9)
  train_step = _xla_train_step(model, opt)
  x, y = toy_data()
  updater = itop_tf.MaskUpdater(model, opt)
  updater.initialize(0)
  batches = [(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16])
             for i in range(5)]
  for i, (xb, yb) in enumerate(batches):
    if i == 4:
      expected = _reference_gradients(model, xb, yb)  # weights of step 5
      earlier = _reference_gradients(model, *batches[3])
    updater.before_step()
    train_step(xb, yb)
    if i < 4:
      assert all(not sw.dense_grad.numpy().any() for _, sw in kernels(model))
  captured = [sw.dense_grad.numpy() for _, sw in kernels(model)]
  for got, want, old, (_, sw) in zip(captured, expected, earlier,
                                     kernels(model)):
    inactive = ~sw.mask.numpy()
    assert np.abs(want[inactive]).sum() > 0  # dense, not masked
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert not np.allclose(got, old, rtol=1e-4, atol=1e-6)
  assert updater.after_step()["step"] == 5


def test_custom_training_loop_with_mask_updater():
  model = sparse_mlp(sparsity=0.8, interval=3, grow="gradient")
  opt = keras.optimizers.SGD(0.05, momentum=0.9)
  train_step = _xla_train_step(model, opt)
  x, y = toy_data()
  updater = itop_tf.MaskUpdater(model, opt)
  updater.initialize(0)
  updates = []
  for i in range(10):
    updater.before_step()
    train_step(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16])
    stats = updater.after_step()
    if stats:
      updates.append(stats["step"])
  assert updates == [3, 6, 9]
  for _, sw in kernels(model):
    assert int(sw.mask.numpy().sum()) == sw.count
    assert (sw.weight.numpy()[~sw.mask.numpy()] == 0).all()
  assert itop_tf.exploration_rate(model) > 0.2


def test_steps_per_execution_runs_overdue_update():
  model = sparse_mlp(sparsity=0.8, interval=4)
  x, y = toy_data()
  model.compile(keras.optimizers.SGD(0.05), keras.losses.
                SparseCategoricalCrossentropy(from_logits=True),
                steps_per_execution=3)
  cb = itop_tf.ITOPCallback()
  model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[cb])
  # 8 steps in calls of 3: updates due at 4 and 8 run at steps 6 and 8.
  assert cb.updater.last_stats["step"] == 8
  assert itop_tf.exploration_rate(model) > 0.2


@pytest.mark.parametrize("spe, late", [(3, 2), (4, 0), (1, 0)])
def test_callback_warns_when_steps_per_execution_delays_updates(spe, late,
                                                                 caplog):
  # 8 steps an epoch, updates due at 4 and 8: calls of 3 end at 3, 6, 8
  # (the update of step 4 waits 2 steps); calls of 4 end on both.
  model = sparse_mlp(sparsity=0.8, interval=4)
  x, y = toy_data()
  model.compile(keras.optimizers.SGD(0.05), keras.losses.
                SparseCategoricalCrossentropy(from_logits=True),
                steps_per_execution=spe)
  with caplog.at_level("WARNING"):
    model.fit(x, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[itop_tf.ITOPCallback()])
  warned = [m for m in caplog.messages if "steps_per_execution" in m]
  if late:
    assert len(warned) == 1
    assert f"steps_per_execution={spe}" in warned[0]
    assert f"up to {late} steps late" in warned[0]
  else:
    assert not warned


def test_capture_flag_is_written_only_when_it_changes(monkeypatch):
  model = compile_sgd(sparse_mlp(sparsity=0.8, interval=5, grow="gradient"))
  updater = itop_tf.MaskUpdater(model)
  updater.initialize(0)
  writes = []
  flag = updater.wrappers[0].capture
  orig = type(flag).assign
  monkeypatch.setattr(type(flag), "assign",
                      lambda self, v, *a, **k: writes.append(bool(v)) or
                      orig(self, v, *a, **k))
  for step in range(0, 9):
    updater.before_step(step)
  # Off at step 0, armed for the step ending on update 5, off again after:
  # 3 writes per wrapper in 9 steps (not 9).
  n = len(updater.wrappers)
  assert writes == [False] * n + [True] * n + [False] * n
  assert not bool(flag.numpy())


def test_pruned_and_regrown_non_finite_weight_restarts_at_zero():
  mask = tf.constant([True, True, False])
  w = tf.constant([np.nan, 0.5, 0.0])
  new, kept, pruned = prune_and_grow(mask, w, tf.constant(1),
                                              tf.constant([9.0, 0.0, 1.0]))
  assert pruned.numpy().tolist() == [True, False, False]
  assert new.numpy().tolist() == [True, True, False]  # regrown: best score
  assert kept.numpy().tolist() == [False, True, False]


def test_auto_jit_compiles_on_accelerators_only():
  accelerator = bool(tf.config.list_logical_devices("GPU") or
                     tf.config.list_logical_devices("TPU"))
  assert updaters.resolve_jit_compile("auto", "tensorflow") is accelerator
  assert updaters.resolve_jit_compile("auto") is accelerator
  jax = pytest.importorskip("jax")
  # JAX on a CPU: NumPy, as TensorFlow there.
  assert updaters.resolve_jit_compile("auto", "jax") is (
      jax.default_backend() != "cpu")
  assert updaters.resolve_jit_compile(False, "jax") is False
  # PyTorch's "auto": tests/keras3 (importing torch here may crash TF).
  assert updaters.resolve_jit_compile(True, "torch") is True
  model = compile_sgd(sparse_mlp())  # 600 weights
  assert itop_tf.MaskUpdater(model).jit_compile is accelerator
  assert itop_tf.MaskUpdater(model, jit_compile=True).jit_compile is True


@pytest.mark.parametrize("value", ["xla", 1.5, None])
def test_bad_jit_compile_names_the_choices(value):
  with pytest.raises(ValueError, match="jit_compile must be one of"):
    updaters.resolve_jit_compile(value)
  with pytest.raises(ValueError, match="jit_compile must be one of"):
    itop_tf.ITOPCallback(jit_compile=value)


def _one_update(rank_method, group_entries, jit_compile, grow="gradient"):
  """Masks, weights and slots after 3 steps and a forced update at step 100."""
  tf.keras.utils.set_random_seed(0)
  model = sparse_mlp(sparsity=0.7, interval=1000, total=2000, grow=grow)
  optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
  _train(model, 3, [itop_tf.ITOPCallback()], opt=optimizer)
  updater = itop_tf.MaskUpdater(model, jit_compile=jit_compile,
                                rank_method=rank_method,
                                group_entries=group_entries)
  stats = updater.update(step=100)
  assert sum(stats["regrown"].values()) > 0
  state = []
  for _, sw in kernels(model):
    state += [sw.mask.numpy(), sw.ever_active.numpy(), sw.weight.numpy()]
    state += [s.numpy() for s in frontend.optimizer_slots(optimizer,
                                                          sw.weight)]
  return updater, state


@pytest.mark.parametrize("jit_compile", [False, True], ids=["numpy", "xla"])
def test_group_by_group_update_equals_one_call(jit_compile):
  one, want = _one_update("threshold", 10**9, jit_compile)
  each, got = _one_update("threshold", 1, jit_compile)
  assert len(one._groups) == 1  # pylint: disable=protected-access
  assert len(each._groups) == len(kernels(each.model))  # pylint: disable=protected-access
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("grow", ["random", "gradient"])
@pytest.mark.parametrize("rank,jit", [("threshold", False), ("threshold", True),
                                      ("sort", False)],
                         ids=["threshold-numpy", "threshold-xla", "sort-numpy"])
def test_every_rank_and_mode_updates_as_the_xla_sort_did(rank, jit, grow):
  _, want = _one_update("sort", 10**9, True, grow)
  _, got = _one_update(rank, 10**9, jit, grow)
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)


def test_update_runs_in_numpy_unless_compiled():
  model = compile_sgd(sparse_mlp())
  for jit in (False, True):
    updater = itop_tf.MaskUpdater(model, jit_compile=jit)
    assert updater.rank_method == "threshold"  # "auto"
    ops = updaters.update_ops(updater.frontend, updater.jit_compile)
    assert (ops is array_ops.NUMPY) is not jit
  assert itop_tf.ITOPCallback().rank_method == "auto"
  with pytest.raises(ValueError, match="rank_method must be one of"):
    itop_tf.MaskUpdater(model, rank_method="topk")  # graph mode's, removed


def test_bad_rank_method_or_group_size_is_a_value_error():
  model = compile_sgd(sparse_mlp())
  with pytest.raises(ValueError, match="rank_method must be one of"):
    itop_tf.MaskUpdater(model, rank_method="bisect")
  with pytest.raises(ValueError, match="group_entries must be an int >= 1"):
    itop_tf.MaskUpdater(model, group_entries=0)
  with pytest.raises(ValueError, match="rank_method must be one of"):
    itop_tf.ITOPCallback(rank_method="bisect")
  with pytest.raises(ValueError, match="group_entries must be an int >= 1"):
    itop_tf.ITOPCallback(group_entries=2.5)
