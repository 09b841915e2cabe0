"""What both front-ends promise, as one suite.

Each test runs on Keras 3 (this process's backend) and, in the process of
the TensorFlow backend, on tf_keras too, through the API that takes either
Keras: the same model (tests/model_cases.py), the same checks.
"""

import os

import keras
import numpy as np
import pytest

import digits_task
import itop_tf
from itop_tf import core
from itop_tf import distributions
from itop_tf import frontends
import keras3_helpers as helpers
import model_cases

FRONT_ENDS = ["keras3"] + (["tf_keras"] if helpers.BACKEND == "tensorflow"
                           else [])


@pytest.fixture(params=FRONT_ENDS)
def keras_module(request):
  """The Keras of the front-end under test."""
  k = _keras_of(request.param)
  yield k
  if k is not keras:  # the Keras 3 conftest clears its own session
    k.backend.clear_session()


def _sparse_mlp(k, grow="random", interval=5, total=200, sparsity=0.8,
                seed=0, optimizer=None):
  """The test MLP made sparse and compiled (SGD with momentum by default)."""
  model = itop_tf.sparsify(
      model_cases.mlp(k), sparsity=sparsity, grow=grow, seed=seed,
      schedule=itop_tf.RegrowthSchedule(update_interval=interval,
                                        total_steps=total))
  jit = helpers.JIT if k is keras else False
  model.compile(optimizer or k.optimizers.SGD(0.05, momentum=0.9),
                k.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=jit)
  return model


def _optimizers(k):
  """{name: factory} of optimizers with per-entry state, for Keras `k`."""
  out = {
      "sgd_momentum": lambda: k.optimizers.SGD(0.05, momentum=0.9),
      "adam": lambda: k.optimizers.Adam(1e-2),
      "adamw": lambda: k.optimizers.AdamW(1e-2, weight_decay=1e-3),
  }
  if k is keras:
    out["loss_scale"] = lambda: keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.05, momentum=0.9))
  else:
    out["loss_scale"] = lambda: k.mixed_precision.LossScaleOptimizer(
        k.optimizers.SGD(0.05, momentum=0.9))
    out["legacy_sgd"] = lambda: k.optimizers.legacy.SGD(0.05, momentum=0.9)
  return out


def _keras_of(name):
  if name == "keras3":
    return keras
  import tf_keras  # pylint: disable=g-import-not-at-top
  return tf_keras


OPTIMIZER_CASES = [(fe, name) for fe in FRONT_ENDS
                   for name in sorted(_optimizers(_keras_of(fe)))]


def _state(model):
  """[(mask, weight, union, count)] of every sparse kernel, as NumPy."""
  frontend = frontends.frontend_of(model)
  frontend.sync(model)
  return [(frontend.to_numpy(sw.mask), frontend.to_numpy(sw.weight),
           frontend.to_numpy(sw.ever_active), sw.count)
          for sw in frontend.sparse_weights(model)]


def _fit(model, epochs=1, n=256, callbacks=None):
  x, y = model_cases.toy_data(n=n)
  return model.fit(x, y, batch_size=32, epochs=epochs, verbose=0,
                   callbacks=[itop_tf.ITOPCallback()] if callbacks is None
                   else callbacks)


def _numpy(model, value):
  return frontends.frontend_of(model).to_numpy(value)


def _write_inactive(model, number):
  """Writes `number` into every inactive kernel entry, behind the wrapper."""
  frontend = frontends.frontend_of(model)
  for sw in frontend.sparse_weights(model):
    w = frontend.to_numpy(sw.weight).copy()
    w[~frontend.to_numpy(sw.mask)] = number
    sw.weight.assign(w)


@pytest.mark.parametrize("grow", ["random", "gradient", "momentum"])
def test_invariants_hold_after_every_step(keras_module, grow):
  model = _sparse_mlp(keras_module, grow, interval=3)
  records = []

  class Probe(keras_module.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
      records.append((_state(model), itop_tf.exploration_rate(model)))

  x, y = model_cases.toy_data()
  history = model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                      callbacks=[itop_tf.ITOPCallback(), Probe()])
  assert len(records) == 24
  for kernels, rate in records:
    for mask, weight, union, count in kernels:
      assert mask.sum() == count            # exact count, every step
      assert np.all(weight[~mask] == 0)     # pruned weights exactly 0
      assert np.all(union[mask])            # the mask is in the union
    numpy_rate = (sum(int(u.sum()) for _, _, u, _ in kernels) /
                  sum(u.size for _, _, u, _ in kernels))
    assert rate == pytest.approx(numpy_rate, rel=1e-6)  # R_s = |union|/size
  for (before, rate0), (after, rate1) in zip(records, records[1:]):
    assert rate1 >= rate0
    for (_, _, u0, _), (_, _, u1, _) in zip(before, after):
      assert np.all(u1[u0]), "the union lost an entry"
  # Masks moved at the update steps (3, 6, ...) and only there.
  moved = [i + 1 for i in range(1, len(records))
           if any(not np.array_equal(a[0], b[0])
                  for a, b in zip(records[i - 1][0], records[i][0]))]
  assert moved and all(step % 3 == 0 for step in moved)
  rates = history.history["itop_rate"]
  assert rates[0] > 0.2 + 1e-9 and rates == sorted(rates)
  assert rates[-1] > 0.2 + 0.01  # exploration happened
  assert rates[-1] == pytest.approx(itop_tf.exploration_rate(model))


def test_rigl_grows_where_the_dense_gradient_is_largest(keras_module):
  model = _sparse_mlp(keras_module, "gradient", interval=1000, total=2000)
  frontend = frontends.frontend_of(model)
  x, y = model_cases.toy_data()
  updater = itop_tf.MaskUpdater(model)
  updater.initialize()
  updater.before_step(step=999)  # the next step ends on the update step
  model.train_on_batch(x[:32], y[:32])
  frontend.sync(model)
  sws = frontend.sparse_weights(model)
  old = [frontend.to_numpy(sw.mask) for sw in sws]
  grads = [np.abs(frontend.to_numpy(sw.dense_grad)) for sw in sws]
  for mask, grad in zip(old, grads):
    assert grad[~mask].max() > 0, "the captured gradient is dense"
  stats = updater.update(1000)
  for sw, mask, grad in zip(sws, old, grads):
    new = frontend.to_numpy(sw.mask)
    grown = new & ~mask
    assert grown.sum() == stats["regrown"][sw.name] > 0
    # Every grown entry beats every inactive one that was not grown.
    assert grad[grown].min() >= grad[~new & ~mask].max()


@pytest.mark.parametrize("keras_module, optimizer", OPTIMIZER_CASES,
                         indirect=["keras_module"])
def test_grown_weights_start_at_zero_with_zeroed_optimizer_slots(
    keras_module, optimizer):
  model = _sparse_mlp(keras_module, sparsity=0.7, interval=1000, total=2000,
                      optimizer=_optimizers(keras_module)[optimizer]())
  _fit(model, callbacks=[])  # builds the slots and fills the active ones
  frontend = frontends.frontend_of(model)
  frontend.sync(model)
  updater = itop_tf.MaskUpdater(model)
  updater.initialize()
  sws = frontend.sparse_weights(model)
  old, slots = [], []
  for sw in sws:
    mask = frontend.to_numpy(sw.mask)
    slot_vars = frontend.slots(model.optimizer, sw.weight)
    assert slot_vars, f"no optimizer slots found for {sw.name}"
    assert all(np.abs(frontend.to_numpy(v)[mask]).sum() > 0
               for v in slot_vars)
    # Inactive entries carry non-zero weights and slot values, so an update
    # that kept them where it grows (not zeroing grown entries) would show.
    for var, fill in [(sw.weight, 7.0)] + [(v, 3.0) for v in slot_vars]:
      var.assign(np.where(mask, frontend.to_numpy(var), fill)
                 .astype("float32"))
    old.append((mask, frontend.to_numpy(sw.weight),
                [frontend.to_numpy(v) for v in slot_vars]))
    slots.append(slot_vars)
  stats = updater.update(1000)
  for sw, (mask, weight, slot_values), slot_vars in zip(sws, old, slots):
    new_mask = frontend.to_numpy(sw.mask)
    new_weight = frontend.to_numpy(sw.weight)
    grown, kept = new_mask & ~mask, new_mask & mask
    assert grown.sum() == stats["regrown"][sw.name] > 0
    assert (mask & ~new_mask).any()
    assert np.all(new_weight[grown] == 0)
    assert np.all(new_weight[~new_mask] == 0)
    np.testing.assert_array_equal(new_weight[kept], weight[kept])
    for before, var in zip(slot_values, slot_vars):
      after = frontend.to_numpy(var)
      assert np.all(after[grown] == 0) and np.all(after[~new_mask] == 0)
      np.testing.assert_array_equal(after[kept], before[kept])


def test_training_reads_the_kernel_as_it_is_and_inference_masks_it(
    keras_module):
  model = _sparse_mlp(keras_module)
  x, _ = model_cases.toy_data(n=32)
  want = _numpy(model, model(x))
  _write_inactive(model, 5.0)  # behind the wrapper's back
  # (Equal up to rounding: the paths may multiply by the mask or select.)
  for out in (model(x), model(x, training=False)):
    np.testing.assert_allclose(_numpy(model, out), want, atol=1e-6)
  np.testing.assert_allclose(model.predict(x, verbose=0), want, atol=1e-6)
  # Training does not copy the kernel masked: it relies on the zeros.
  assert np.abs(_numpy(model, model(x, training=True)) - want).max() > 1.0


def test_fit_zeroes_weights_written_into_inactive_entries_before_it(
    keras_module):
  model = _sparse_mlp(keras_module, optimizer=keras_module.optimizers.SGD(0.0))
  x, y = model_cases.toy_data(n=32)
  want = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
  _write_inactive(model, 5.0)
  history = _fit(model, n=32)
  assert history.history["loss"][0] == pytest.approx(want, rel=1e-5)
  for mask, weight, _, _ in _state(model):
    assert np.all(weight[~mask] == 0)


def test_initial_masks_come_from_the_one_shared_generator(keras_module):
  """The same seed gives the same masks on every front-end and backend."""
  model = _sparse_mlp(keras_module, seed=5)
  for wrapper in itop_tf.find_wrappers(model):
    for sw in wrapper.sparse_weights:
      want = distributions.exact_count_mask(
          tuple(sw.weight.shape), sw.count,
          core.kernel_seed(wrapper.seed, sw.index))
      np.testing.assert_array_equal(_numpy(model, sw.mask), want)


def test_strip_gives_the_same_predictions_with_exact_zeros(keras_module):
  model = _sparse_mlp(keras_module, grow="gradient", interval=3)
  _fit(model)
  plain = itop_tf.strip(model)
  assert not itop_tf.find_wrappers(plain)
  x, _ = model_cases.toy_data()
  np.testing.assert_allclose(plain.predict(x, verbose=0),
                             model.predict(x, verbose=0), atol=1e-6)
  for (mask, weight, _, _), name in zip(_state(model), ["fc1", "fc2"]):
    kernel = _numpy(plain, plain.get_layer(name).kernel)
    np.testing.assert_array_equal(kernel != 0, mask & (weight != 0))


def _load(k, path):
  if k is keras:
    return keras.models.load_model(path)  # registered: no scope needed
  with itop_tf.tf_keras.scope():
    return k.models.load_model(path)


def test_keras_file_brings_back_masks_union_schedule_and_growth(
    keras_module, tmp_path):
  model = _sparse_mlp(keras_module, grow="gradient", interval=3, seed=5)
  _fit(model)
  path = os.path.join(tmp_path, "model.keras")
  model.save(path)
  loaded = _load(keras_module, path)
  for (m0, w0, u0, _), (m1, w1, u1, _) in zip(_state(model), _state(loaded)):
    np.testing.assert_array_equal(m1, m0)
    np.testing.assert_array_equal(u1, u0)
    np.testing.assert_array_equal(w1, w0)
  for w0, w1 in zip(itop_tf.find_wrappers(model),
                    itop_tf.find_wrappers(loaded)):
    assert w1.schedule == w0.schedule
    assert (w1.grow, w1.counts, w1.seed) == ("gradient", w0.counts, w0.seed)
  assert itop_tf.exploration_rate(loaded) == itop_tf.exploration_rate(model)
  assert int(_numpy(loaded, loaded.optimizer.iterations)) == 8
  x, _ = model_cases.toy_data()
  np.testing.assert_allclose(loaded.predict(x, verbose=0),
                             model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.slow
def test_rigl_itop_learns_digits_at_90_percent_sparsity(keras_module):
  # The end-to-end task of tests/digits_task.py. Where the threshold comes
  # from (2026-11-25, test accuracy over seeds 0-3, seed 0 first): tf_keras
  # 0.916 0.926 0.892 0.913; Keras 3 TensorFlow 0.926 0.902 0.886 0.919;
  # Keras 3 JAX 0.896 0.936 0.899 0.919. Seed 0 must beat the lowest of the
  # twelve runs less 1.5 points (0.87).
  jit = helpers.JIT if keras_module is keras else True
  result = digits_task.run(keras_module, jit_compile=jit)
  plain = digits_task.check(result, min_accuracy=0.87)
  model = result[2]
  frontend = frontends.frontend_of(model)
  frontend.sync(model)
  for sw in frontend.sparse_weights(model):
    kernel = plain.get_layer(sw.wrapper.layer.name).kernel
    assert np.count_nonzero(frontend.to_numpy(kernel)) <= sw.count


def _model_with_raw_ops(k):
  """A functional MLP with ops that are no layers: `+`, slicing, keras.ops."""
  inp = k.Input((16,))
  h = k.layers.Dense(16, activation="relu", name="fc1")(inp)
  h = h + inp
  h = h - h[:, :1]  # slicing (PyTorch takes no negative step)
  if k is keras:
    h = keras.ops.mean(keras.ops.stack([h, 2.0 * h]), axis=0)
  return k.Model(inp, k.layers.Dense(4, name="fc2")(h))


def test_raw_ops_in_a_functional_graph_are_cloned_not_wrapped(keras_module,
                                                              tmp_path):
  model = itop_tf.sparsify(
      _model_with_raw_ops(keras_module), sparsity=0.8, grow="gradient",
      schedule=itop_tf.RegrowthSchedule(update_interval=3, total_steps=200))
  model.compile(keras_module.optimizers.SGD(0.05, momentum=0.9),
                keras_module.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  _fit(model)
  kernels = _state(model)
  assert [sw.wrapper.layer.name for sw in itop_tf.find_wrappers(model)
          for sw in sw.sparse_weights] == ["fc1", "fc2"]
  for mask, weight, union, count in kernels:
    assert mask.sum() == count and np.all(weight[~mask] == 0)
    assert union.sum() > count  # the updates moved the masks
  x, _ = model_cases.toy_data(n=32)
  want = model.predict(x, verbose=0)
  plain = itop_tf.strip(model)
  np.testing.assert_allclose(plain.predict(x, verbose=0), want, atol=1e-5)
  path = os.path.join(tmp_path, "model.keras")
  model.save(path)
  np.testing.assert_allclose(_load(keras_module, path).predict(x, verbose=0),
                             want, atol=1e-6)


def _functional_subclass(k):
  """A keras.Model subclass built with the functional API (as KerasHub's
  backbones are): a Functional, not a subclassed model."""

  class Backbone(k.Model):

    def __init__(self, hidden=32, **kwargs):
      inp = k.Input((16,))
      h = k.layers.Dense(hidden, activation="relu", name="fc1")(inp)
      super().__init__(inp, k.layers.Dense(4, name="fc2")(h), **kwargs)
      self.hidden = hidden

  return Backbone()


def test_a_functional_subclass_is_sparsified_as_its_graph(keras_module):
  model = _functional_subclass(keras_module)
  sparse = itop_tf.sparsify(model, sparsity=0.8, seed=0,
                            schedule=itop_tf.RegrowthSchedule(3, 200))
  assert isinstance(sparse, keras_module.Model)
  sws = frontends.frontend_of(sparse).sparse_weights(sparse)
  assert [sw.name for sw in sws] == ["fc1", "fc2"]
  assert sum(sw.count for sw in sws) == round(0.2 * (16 * 32 + 32 * 4))
  x, _ = model_cases.toy_data(n=32)
  plain = itop_tf.strip(sparse)
  np.testing.assert_allclose(plain.predict(x, verbose=0),
                             sparse.predict(x, verbose=0), atol=1e-6)


def test_strip_names_wrappers_inside_custom_layers_instead_of_keeping_them(
    keras_module):
  k = keras_module
  wrapper = frontends.frontend_of(k.layers.Dense(1)).wrapper

  class Block(k.layers.Layer):

    def __init__(self, **kwargs):
      super().__init__(**kwargs)
      self.fc = wrapper(k.layers.Dense(8, name="inner_fc"),
                        itop_tf.RegrowthSchedule(3, 100), density=0.5)

    def call(self, x):
      return self.fc(x)

  inp = k.Input((16,))
  model = k.Model(inp, k.layers.Dense(4, name="head")(Block()(inp)))
  assert len(itop_tf.find_wrappers(model)) == 1
  with pytest.raises(ValueError, match=r"cannot reach the wrapped layers "
                     r"\['inner_fc'\]"):
    itop_tf.strip(model)


def _sparse_kernels(k, **kwargs):
  """{layer name: active count} of the test MLP made 80% sparse."""
  model = itop_tf.sparsify(model_cases.mlp(k), sparsity=0.8,
                           schedule=itop_tf.RegrowthSchedule(3, 200),
                           **kwargs)
  return {sw.name: sw.count
          for sw in frontends.frontend_of(model).sparse_weights(model)}


@pytest.mark.parametrize("select", ["fc1", ["f?1"], "*1",
                                    lambda layer: layer.name == "fc1"])
def test_select_picks_the_layers_to_make_sparse(keras_module, select):
  # fc1 alone carries the whole budget: 20% of its 16 x 32 kernel.
  assert _sparse_kernels(keras_module, select=select) == {
      "fc1": round(0.2 * 16 * 32)}


def test_layer_densities_take_glob_patterns_and_exact_names_win(
    keras_module):
  counts = _sparse_kernels(keras_module,
                           layer_densities={"fc*": 0.5, "fc2": 0.25})
  assert counts == {"fc1": 0.5 * 16 * 32, "fc2": 0.25 * 32 * 4}
  assert _sparse_kernels(keras_module, dense_layers=["*2"]).keys() == {"fc1"}


@pytest.mark.parametrize("kwargs, message", [
    ({"select": "conv*"}, r"select \['conv\*'\] matches no layer"),
    ({"select": [3]}, "glob pattern, a compiled regular expression, a list"),
    ({"layer_densities": {"head*": 0.5}},
     r"layer_densities \['head\*'\] matches no layer or kernel"),
])
def test_selection_that_matches_nothing_names_the_layers(keras_module, kwargs,
                                                         message):
  with pytest.raises(ValueError, match=message):
    _sparse_kernels(keras_module, **kwargs)


@pytest.mark.parametrize("grow", ["random", "gradient"])
def test_kernels_of_a_custom_layers_sublayers_train_sparse_and_strip(
    keras_module, grow):
  model = itop_tf.sparsify(model_cases.block_model(keras_module),
                           sparsity=0.8, grow=grow,
                           schedule=itop_tf.RegrowthSchedule(2, 100))
  frontend = frontends.frontend_of(model)
  sws = frontend.sparse_weights(model)
  assert [sw.name for sw in sws] == ["block/up", "block/down", "head"]
  assert sum(sw.count for sw in sws) == round(0.2 * sum(sw.size for sw in sws))
  model.compile(keras_module.optimizers.SGD(0.05, momentum=0.9),
                keras_module.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  before = [m.copy() for m, _, _, _ in _state(model)]
  _fit(model, epochs=2)
  state = _state(model)
  for (mask, weight, union, count), old in zip(state, before):
    assert mask.sum() == count and np.all(weight[~mask] == 0)
    assert np.all(union[mask]) and np.all(union[old])
  assert any(not np.array_equal(m, old)
             for (m, _, _, _), old in zip(state, before[:2]))
  x, _ = model_cases.toy_data(n=16)
  plain = itop_tf.strip(model)
  assert not itop_tf.find_wrappers(plain)
  assert type(plain.get_layer("block")).__name__ == "Block"
  np.testing.assert_allclose(plain.predict(x, verbose=0),
                             model.predict(x, verbose=0), atol=1e-5)


# --- A layer used more than once per step (shared, tied embeddings): one
# mask, and the dense gradient RigL and SNFS store is the sum of the calls'
# gradients counted once, as the backend's autodiff gives it for the masked
# kernel, with and without LossScaleOptimizer. ---

SHARED_MODELS = ["shared_dense", "tied_embedding"]
# With LossScaleOptimizer in the full suite only: the fast tier stays short.
LOSS_SCALE = [pytest.param(False, id="plain"),
              pytest.param(True, id="lso", marks=pytest.mark.slow)]


def _shared_trained(k, name, grow, loss_scale, steps):
  """The model made sparse and trained `steps` steps on one batch, lr 0."""
  if name == "tied_embedding":
    if k is not keras:
      pytest.skip("keras_hub's ReversibleEmbedding is a Keras 3 layer")
    pytest.importorskip("keras_hub")
  model = itop_tf.sparsify(getattr(model_cases, name)(k), sparsity=0.5,
                           grow=grow,
                           schedule=itop_tf.RegrowthSchedule(1000, 2000))
  optimizer = k.optimizers.SGD(0.0)
  if loss_scale:
    optimizer = (k.optimizers.LossScaleOptimizer(optimizer) if k is keras
                 else k.mixed_precision.LossScaleOptimizer(optimizer))
  loss = k.losses.SparseCategoricalCrossentropy(from_logits=True)
  model.compile(optimizer, loss)
  wrapper = next(w for w in itop_tf.find_wrappers(model)
                 if w.layer.name == "shared")
  if wrapper.capture is not None:
    wrapper.capture.assign(True)   # tf_keras captures only when armed
  x, y = model_cases.shared_data(name)
  model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)
  frontends.frontend_of(model).sync(model)
  scale = 1.0
  if loss_scale:
    scale = float(_numpy(model, optimizer.dynamic_scale if k is keras
                         else optimizer.loss_scale))
  plain = itop_tf.strip(model)
  kernel = next(v for v in plain.get_layer("shared").trainable_weights
                if len(v.shape) == 2)
  # The gradient of the scaled loss (what the optimizer differentiates).
  want = scale * helpers.reference_gradient(plain, x, y, kernel, loss)
  return model, wrapper, (x, y), scale, want


@pytest.mark.parametrize("loss_scale", LOSS_SCALE)
@pytest.mark.parametrize("name", SHARED_MODELS)
def test_rigl_stores_the_sum_of_a_shared_layers_gradients_once(
    keras_module, name, loss_scale):
  model, wrapper, (x, y), scale, want = _shared_trained(
      keras_module, name, "gradient", loss_scale, steps=2)
  assert len(wrapper.sparse_weights) == 1   # one mask for both calls
  got = _numpy(model, wrapper.sparse_weights[0].dense_grad)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * scale)
  # Steps that do not capture keep it (before, Keras 3 doubled it per step).
  wrapper.capture.assign(False)
  model.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
  frontends.frontend_of(model).sync(model)
  np.testing.assert_allclose(
      _numpy(model, wrapper.sparse_weights[0].dense_grad), got, rtol=1e-6)


@pytest.mark.parametrize("loss_scale", LOSS_SCALE)
@pytest.mark.parametrize("name", SHARED_MODELS)
def test_snfs_averages_a_shared_layers_gradient_once_per_step(
    keras_module, name, loss_scale):
  steps = 4
  model, wrapper, _, scale, want = _shared_trained(
      keras_module, name, "momentum", loss_scale, steps)
  decay = wrapper.growth.gradient_decay
  # The same gradient every step (lr 0), from 0: (1 - decay^steps) of it.
  np.testing.assert_allclose(
      _numpy(model, wrapper.sparse_weights[0].dense_grad),
      (1.0 - decay**steps) * want, rtol=1e-4, atol=1e-6 * scale)


def test_attention_projections_train_sparse_and_strip(keras_module):
  k = keras_module
  model = itop_tf.sparsify(model_cases.attention(k), sparsity=0.8,
                           grow="gradient",
                           schedule=itop_tf.RegrowthSchedule(2, 100))
  sws = frontends.frontend_of(model).sparse_weights(model)
  projections = ["query", "key", "value", "attention_output"]
  assert [sw.name for sw in sws] == (
      [f"self_mha/{p}" for p in projections] +
      [f"cross_mha/{p}" for p in projections] + ["head"])
  # ERK over the einsum kernels as matrices: (12, 2, 4) is 12 x 8.
  counts = distributions.layer_counts(
      [(8, 8)] * 5 + [(12, 8)] * 2 + [(8, 8), (8, 3)], 0.2)[1]
  assert [sw.count for sw in sws] == [int(c) for c in counts]
  model.compile(k.optimizers.Adam(0.01),
                k.losses.SparseCategoricalCrossentropy(from_logits=True))
  before = [m.copy() for m, _, _, _ in _state(model)]
  x, y = model_cases.attention_data()
  model.fit(x, y, batch_size=8, epochs=2, verbose=0,
            callbacks=[itop_tf.ITOPCallback()])
  state = _state(model)
  for (mask, weight, union, count), old in zip(state, before):
    assert mask.sum() == count and np.all(weight[~mask] == 0)
    assert np.all(union[mask]) and np.all(union[old])
  assert not np.array_equal(state[5][0], before[5])   # cross_mha/key moved
  plain = itop_tf.strip(model)
  assert not itop_tf.find_wrappers(plain)
  assert isinstance(plain.get_layer("cross_mha"),
                    k.layers.MultiHeadAttention)
  np.testing.assert_allclose(plain.predict(x, verbose=0),
                             model.predict(x, verbose=0), atol=1e-5)
