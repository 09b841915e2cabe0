"""Keras 3 front-end: the invariants of DESIGN.md during `fit`, this backend."""

import os
import threading

import keras
import numpy as np
import pytest

import itop_tf
from itop_tf import array_ops
from itop_tf import distributions
from itop_tf.keras3 import wrapper as keras3_wrapper
import keras3_helpers as helpers
from keras3_helpers import value


def test_sparsify_returns_a_keras3_model_with_exact_erk_counts():
  model = helpers.small_cnn()
  sparse = itop_tf.sparsify(model, 0.9, schedule=helpers.schedule())
  assert isinstance(sparse, keras.Model)
  sws = helpers.kernels(sparse)
  assert [sw.name for sw in sws] == ["conv1", "dw", "conv2", "head"]
  _, want = distributions.layer_counts([sw.shape for sw in sws], 0.1, "erk")
  assert [sw.count for sw in sws] == [int(c) for c in want]
  for sw in sws:
    m = value(sw.mask)
    assert m.sum() == sw.count
    np.testing.assert_array_equal(value(sw.ever_active), m)
    assert np.all(value(sw.weight)[~m] == 0)
  total = sum(sw.size for sw in sws)
  assert itop_tf.exploration_rate(sparse) == pytest.approx(
      sum(sw.count for sw in sws) / total)
  assert sum(sw.count for sw in sws) == round(0.1 * total)


def test_uniform_and_er_distributions_and_layer_densities():
  sparse = itop_tf.sparsify(helpers.mlp(), 0.5, schedule=helpers.schedule(),
                            distribution="uniform")
  assert [sw.count for sw in helpers.kernels(sparse)] == [256, 64]
  sparse = itop_tf.sparsify(helpers.mlp(), 0.5, schedule=helpers.schedule(),
                            layer_densities={"fc2": 1.0})
  assert helpers.kernels(sparse)[1].count == 128


def test_original_model_is_left_unchanged_and_weights_are_copied():
  model = helpers.mlp()
  before = [w.copy() for w in model.get_weights()]
  sparse = itop_tf.sparsify(model, 0.8, schedule=helpers.schedule())
  for a, b in zip(before, model.get_weights()):
    np.testing.assert_array_equal(a, b)
  sw = helpers.kernels(sparse)[0]
  m = value(sw.mask)
  np.testing.assert_array_equal(value(sw.weight)[m], before[0][m])


def _linear_rigl(rows, seed, interval=5):
  """A bias-free Dense(3) on 6 inputs, 50% sparse with RigL, MSE, SGD at
  learning rate 0 (only updates move the kernel); `rows` random examples.

  Returns:
    (model, x, y).
  """
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(rows, 6)).astype("float32")
  y = rng.normal(size=(rows, 3)).astype("float32")
  model = keras.Sequential([keras.Input((6,)),
                            keras.layers.Dense(3, use_bias=False)])
  sparse = itop_tf.sparsify(model, 0.5,
                            schedule=helpers.schedule(interval=interval),
                            grow="gradient", distribution="uniform")
  sparse.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=helpers.JIT)
  return sparse, x, y


def _mse_gradient(w, x, y):
  """The loss's gradient for kernel `w`: 2/N X^T (X W - Y), N = y.size."""
  return 2.0 / y.size * x.T @ (x @ w - y)


def test_captured_gradient_is_the_gradient_of_the_loss():
  """One linear layer, MSE: the gradient is 2/N X^T (X W_masked - Y)."""
  sparse, x, y = _linear_rigl(16, seed=1)
  sw = helpers.kernels(sparse)[0]
  w = value(sw.weight)
  sparse.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
  helpers.sync(sparse)
  np.testing.assert_allclose(value(sw.dense_grad), _mse_gradient(w, x, y),
                             rtol=1e-4, atol=1e-6)


def test_callback_captures_only_the_gradient_of_the_step_before_an_update():
  """RigL with `ITOPCallback`: updates at steps 2 and 4 (interval 2), each
  from the gradient of its own step; the steps in between leave the
  captured gradient as it is, and a fit without the callback captures every
  step again. Learning rate 0: only the updates move the kernel."""
  sparse, x, y = _linear_rigl(48, seed=2, interval=2)
  sw = helpers.kernels(sparse)[0]

  def kernel():
    helpers.sync(sparse)
    return value(sw.weight)

  def gradient(w, batch):  # over one batch of 16
    rows = slice(16 * batch, 16 * (batch + 1))
    return _mse_gradient(w, x[rows], y[rows])

  def fit(start, stop, callbacks):
    sparse.fit(x[start:stop], y[start:stop], batch_size=16, epochs=1,
               verbose=0, shuffle=False, callbacks=callbacks)
    helpers.sync(sparse)
    return value(sw.dense_grad)

  w0 = kernel()
  # Steps 1-3 on batches 0-2; the update after step 2 used batch 1's.
  got = fit(0, 48, [itop_tf.ITOPCallback()])
  np.testing.assert_allclose(got, gradient(w0, 1), rtol=1e-4, atol=1e-6)
  w1 = kernel()
  assert not np.array_equal(w1 != 0, w0 != 0), "the update moved the mask"
  # A second fit, a new callback: steps 4-5 on batches 1-2, an update
  # after step 4.
  got = fit(16, 48, [itop_tf.ITOPCallback()])
  np.testing.assert_allclose(got, gradient(w1, 1), rtol=1e-4, atol=1e-6)
  w2 = kernel()
  # Without the callback every step captures (batch 0, the last one).
  got = fit(0, 16, [])
  np.testing.assert_allclose(got, gradient(w2, 0), rtol=1e-4, atol=1e-6)
  assert all(bool(value(w.capture))
             for w in itop_tf.find_wrappers(sparse))


def test_callback_trains_rigl_with_the_train_function_keras_traced():
  # The capture is armed by a variable the step reads: no train function is
  # traced or swapped in for it, before, during or after fit.
  sparse, x, y = _linear_rigl(48, seed=5, interval=2)
  sparse.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0)
  traced = sparse.train_function
  seen = []

  class Probe(keras.callbacks.Callback):

    def on_train_batch_begin(self, batch, logs=None):
      seen.append(self.model.train_function)

  sparse.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
             callbacks=[itop_tf.ITOPCallback(), Probe()])
  assert len(seen) == 6
  assert all(f is traced for f in seen + [sparse.train_function])


def test_before_step_arms_the_capture_in_a_custom_loop():
  """Keras 3 custom loop, updates after step 3: every step captures until
  the first `before_step`; then only the step before the update does, and
  `release_capture` turns the every-step capture back on."""
  sparse, x, y = _linear_rigl(48, seed=4, interval=3)
  sw = helpers.kernels(sparse)[0]
  updater = itop_tf.MaskUpdater(sparse)
  updater.initialize(0)

  def train(batch):
    rows = slice(16 * batch, 16 * (batch + 1))
    sparse.train_on_batch(x[rows], y[rows])
    helpers.sync(sparse)
    return value(sw.dense_grad), _mse_gradient(value(sw.weight), x[rows],
                                                y[rows])

  got, want = train(0)  # step 1, no before_step yet
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  updater.before_step(1)  # step 2 is not followed by an update
  kept, other = train(1)
  np.testing.assert_array_equal(kept, got)
  assert not np.allclose(other, got), "batches 0 and 1 differ"
  updater.before_step(2)  # step 3 is
  got, want = train(2)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  assert updater.after_step(3) is not None
  updater.before_step(3)
  kept, _ = train(0)
  np.testing.assert_array_equal(kept, got)
  updater.release_capture()
  got, want = train(1)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_a_fit_that_raises_leaves_the_next_updater_capturing_every_step():
  # Keras skips on_train_end when fit raises; the step that raised ran with
  # the capture off. A custom loop after it (MaskUpdater, train_on_batch)
  # must capture every step again.
  sparse, x, y = _linear_rigl(32, seed=3, interval=4)

  class Boom(keras.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
      raise RuntimeError("boom")

  with pytest.raises(RuntimeError, match="boom"):
    sparse.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0,
               callbacks=[itop_tf.ITOPCallback(), Boom()])
  itop_tf.MaskUpdater(sparse)
  sparse.train_on_batch(x[16:], y[16:])
  helpers.sync(sparse)
  sw = helpers.kernels(sparse)[0]
  np.testing.assert_allclose(
      value(sw.dense_grad), _mse_gradient(value(sw.weight), x[16:], y[16:]),
      rtol=1e-4, atol=1e-6)


def _backend_gradients(fn, *arrays):
  """The gradients of the scalar `fn(*arrays)` by each array, this backend."""
  backend = keras.backend.backend()
  if backend == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    return jax.grad(fn, argnums=tuple(range(len(arrays))))(*arrays)
  if backend == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tensors = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
      tape.watch(tensors)
      out = fn(*tensors)
    return tape.gradient(out, tensors)
  import torch  # pylint: disable=g-import-not-at-top
  tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
  return torch.autograd.grad(fn(*tensors), tensors)


@pytest.mark.parametrize("decay", [None, 0.9], ids=["rigl", "momentum"])
def test_captured_gradient_keeps_its_value_where_the_gradient_is_not_finite(
    decay):
  """RigL's capture stores NaN as 0 and leaves +-Inf to the rank's clip; the
  SNFS moving average keeps its value where the gradient is NaN or +-Inf
  (before, an Inf left there stayed for good), as on tf_keras."""
  rng = np.random.default_rng(0)
  w = rng.normal(size=(3, 4)).astype("float32")
  mask = rng.random((3, 4)) < 0.5
  before = rng.normal(size=(3, 4)).astype("float32")
  upstream = rng.normal(size=(3, 4)).astype("float32")
  upstream.flat[:3] = [np.nan, np.inf, -np.inf]

  def loss(kernel, grad_var):
    masked = keras3_wrapper._masked_gradient(
        kernel, keras.ops.convert_to_tensor(mask), grad_var, decay)
    return keras.ops.sum(masked * keras.ops.convert_to_tensor(upstream))

  dw, stored = _backend_gradients(loss, w, before)
  np.testing.assert_array_equal(value(dw), np.where(mask, upstream, 0))
  if decay is None:
    want = np.where(np.isnan(upstream), 0, upstream)
  else:
    want = np.where(np.isfinite(upstream),
                    decay * before + (1 - decay) * upstream, before)
  np.testing.assert_allclose(value(stored), want, rtol=1e-6)


def test_the_step_after_an_update_trains_with_the_new_mask():
  """fit, update from the callback, then the next compiled step sees it."""
  model = helpers.compile_model(
      helpers.sparse_mlp(grow="random", interval=4, total=400),
      keras.optimizers.SGD(0.1))
  x, y = helpers.toy_data()
  probe = helpers.InvariantProbe()
  model.fit(x[:160], y[:160], batch_size=32, epochs=1, verbose=0,
            shuffle=False, callbacks=[itop_tf.ITOPCallback(), probe])
  # Update after step 4; step 5 trained with the new mask: entries grown
  # at step 4 (value 0) have moved, entries pruned there stay 0.
  before, after = probe.masks[2][0], probe.masks[3][0]
  grown = after & ~before
  assert grown.sum() > 0
  helpers.sync(model)
  w = value(helpers.kernels(model)[0].weight)
  assert np.count_nonzero(w[grown]) > 0, "the new mask did not train"
  assert np.all(w[~after] == 0)


def test_cosine_prune_fraction_sets_how_many_connections_move():
  sched = helpers.schedule(interval=10, total=100)
  model = helpers.compile_model(itop_tf.sparsify(
      helpers.mlp(hidden=64), 0.5, schedule=sched, distribution="uniform"))
  updater = itop_tf.MaskUpdater(model)
  updater.initialize(0)
  sw = helpers.kernels(model)[0]
  for step in (10, 50, 90):
    old = value(sw.mask)
    updater.update(step)
    new = value(sw.mask)
    k = itop_tf.core.prune_count(sched.prune_fraction(step), sw.count)
    left = (old & ~new).sum()
    # k pruned; random regrowth may pick a few of them back.
    assert k * 0.5 <= left <= k


def test_hand_wrapped_layers_in_a_subclassed_model_are_found():

  class Net(keras.Model):

    def __init__(self):
      super().__init__()
      self.fc1 = itop_tf.keras3.PruneAndRegrow(
          keras.layers.Dense(32, activation="relu"), helpers.schedule(3, 100),
          density=0.25)
      self.fc2 = keras.layers.Dense(4)

    def call(self, x):
      return self.fc2(self.fc1(x))

  model = Net()
  model(np.zeros((1, 16), "float32"))
  helpers.compile_model(model)
  x, y = helpers.toy_data()
  probe = helpers.InvariantProbe()
  hist = model.fit(x, y, batch_size=32, epochs=2, verbose=0,
                   callbacks=[itop_tf.ITOPCallback(), probe])
  assert hist.history["itop_rate"][-1] > 0.25
  assert [sw.count for sw in helpers.kernels(model)] == [128]


def test_mixed_precision_trains_with_a_loss_scale_optimizer():
  keras.config.set_dtype_policy("mixed_float16")
  model = helpers.compile_model(helpers.sparse_mlp(grow="gradient",
                                                 interval=3))
  assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
  x, y = helpers.toy_data()
  probe = helpers.InvariantProbe()
  hist = model.fit(x, y, batch_size=32, epochs=2, verbose=0,
                   callbacks=[itop_tf.ITOPCallback(), probe])
  assert np.isfinite(hist.history["loss"]).all()
  assert hist.history["itop_rate"][-1] > hist.history["itop_rate"][0] - 1e-9
  sw = helpers.kernels(model)[0]
  assert str(sw.weight.dtype) == "float32"


def _state_after_update(rank_method, group_entries, jit_compile="auto"):
  keras.utils.set_random_seed(0)
  model = helpers.compile_model(
      helpers.sparse_mlp(grow="gradient", interval=1000, total=4000))
  x, y = helpers.toy_data()
  model.fit(x, y, batch_size=32, epochs=1, verbose=0)
  updater = itop_tf.MaskUpdater(model, rank_method=rank_method,
                                group_entries=group_entries,
                                jit_compile=jit_compile)
  stats = updater.update(1000)
  assert sum(stats["regrown"].values()) > 0
  out = []
  for sw in helpers.kernels(model):
    out += [value(sw.mask), value(sw.ever_active), value(sw.weight)]
    out += [value(s) for s in itop_tf.keras3.frontend.optimizer_slots(
        model.optimizer, sw.weight)]
  return updater, out


@pytest.mark.slow
def test_group_by_group_and_sort_rank_update_as_one_threshold_call():
  one, want = _state_after_update("threshold", 10**9)
  each, got = _state_after_update("threshold", 1)
  _, by_sort = _state_after_update("sort", 10**9)
  auto, by_auto = _state_after_update("auto", 10**9)
  # In the backend (XLA, jax.jit, eager torch ops) and in NumPy on the
  # host: the same update.
  flipped, by_flipped = _state_after_update("auto", 10**9,
                                            not auto.jit_compile)
  assert flipped.jit_compile is not auto.jit_compile
  if helpers.BACKEND == "torch":  # NumPy unless on CUDA (2.6-5x faster)
    import torch  # pylint: disable=g-import-not-at-top
    assert auto.jit_compile is torch.cuda.is_available()
  for updater in (auto, flipped):
    ops = itop_tf.updaters.update_ops(updater.frontend, updater.jit_compile)
    assert (ops is array_ops.NUMPY) is not updater.jit_compile
  assert len(one._groups) == 1  # pylint: disable=protected-access
  assert len(each._groups) == len(helpers.kernels(each.model))  # pylint: disable=protected-access
  assert auto.rank_method == "threshold"
  for a, b, c, d, e in zip(got, want, by_sort, by_auto, by_flipped):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, b)
    np.testing.assert_array_equal(d, b)
    np.testing.assert_array_equal(e, b)


class _RecordingITOPCallback(itop_tf.ITOPCallback):
  """ITOPCallback recording whether Keras ran its batch-end hook off-thread."""

  def __init__(self):
    super().__init__()
    self.off_thread = 0

  def on_train_batch_end(self, batch, logs=None):
    if threading.get_ident() != self._fit_thread:
      self.off_thread += 1
    super().on_train_batch_end(batch, logs)


class _InStep(keras.callbacks.Callback):
  """A batch-end hook that is not async-safe: Keras then runs every hook in
  step with training."""

  def on_train_batch_end(self, batch, logs=None):
    del batch, logs


def _fit_state(*extra_callbacks, steps_per_execution=1):
  keras.utils.set_random_seed(0)
  model = helpers.sparse_mlp(grow="gradient", interval=2, total=40)
  model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=helpers.JIT,
                steps_per_execution=steps_per_execution)
  # 4 steps an epoch and an update every 2: every other update falls on an
  # epoch's last step.
  x, y = helpers.toy_data(n=128)
  callback = _RecordingITOPCallback()
  history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False,
                      callbacks=[callback, *extra_callbacks])
  helpers.sync(model)
  state = [helpers.value(v) for sw in helpers.kernels(model)
           for v in (sw.mask, sw.weight, sw.ever_active)]
  return state, history.history["itop_rate"], callback


@pytest.mark.parametrize("steps_per_execution",
                         [1, pytest.param(3, marks=pytest.mark.slow)])
def test_async_dispatch_trains_exactly_as_a_run_in_step(steps_per_execution):
  # On JAX and PyTorch Keras runs async-safe batch-end hooks in a thread of
  # its own; ITOPCallback then updates at the next batch's start or at epoch
  # end. A missed, late (after the next step) or doubled update, or one run
  # from Keras' thread, gives other masks or weights than the run that a
  # non-async-safe callback keeps in step. With 3 steps per call, updates
  # fall inside a call and run after it, in both modes.
  spe = steps_per_execution
  if spe > 1 and helpers.BACKEND == "torch":
    pytest.skip("Keras runs PyTorch with steps_per_execution=1 only.")
  async_state, async_rates, async_cb = _fit_state(steps_per_execution=spe)
  step_state, step_rates, step_cb = _fit_state(_InStep(),
                                               steps_per_execution=spe)
  assert step_cb.off_thread == 0
  if keras.src.backend.IS_THREAD_SAFE:  # JAX, PyTorch: not TensorFlow
    assert async_cb.off_thread > 0
  assert async_cb.updater.last_stats["step"] == step_cb.updater.last_stats[
      "step"] == 12
  np.testing.assert_allclose(async_rates, step_rates, rtol=1e-6)
  assert async_rates[0] > 0.2  # updates ran in the first epoch
  for a, s in zip(async_state, step_state):
    np.testing.assert_allclose(a, s, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("checkpoint", ["ModelCheckpoint", "BackupAndRestore"])
def test_keras_checkpoint_callbacks_keep_the_update_in_step(tmp_path,
                                                            checkpoint):
  # Under async dispatch an epoch-end checkpoint listed before ITOPCallback
  # would save before an update due at the epoch's last step. Keras' own
  # checkpoint callbacks have batch-end hooks that are not async-safe, so
  # Keras runs every hook in step with them and the update runs at the
  # step's end. Fails if a Keras release makes them async-safe.
  cb = (keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"))
        if checkpoint == "ModelCheckpoint" else
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")))
  _, _, itop_cb = _fit_state(cb)
  assert itop_cb.off_thread == 0
  assert itop_cb.updater.last_stats["step"] == 12


def test_wrapped_layers_keep_the_users_layer_names(tmp_path):
  model = helpers.sparse_mlp()
  assert [l.name for l in model.layers] == ["fc1", "fc2"]
  assert model.get_layer("fc2").layer.name == "fc2"
  path = os.path.join(tmp_path, "m.keras")
  model.save(path)
  assert keras.models.load_model(path).get_layer("fc1").layer.name == "fc1"
