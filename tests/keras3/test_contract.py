"""What both front-ends promise, as one suite.

Each test runs on Keras 3 (this process's backend) and, in the process of
the TensorFlow backend, on tf_keras too, through the API that takes either
Keras: the same model (tests/model_cases.py), the same checks.
"""

import keras
import numpy as np
import pytest

import itop_tf
from itop_tf import frontends
import keras3_helpers as helpers
import model_cases

FRONT_ENDS = ["keras3"] + (["tf_keras"] if helpers.BACKEND == "tensorflow"
                           else [])


@pytest.fixture(params=FRONT_ENDS)
def keras_module(request):
  """The Keras of the front-end under test."""
  if request.param == "keras3":
    yield keras  # the Keras 3 conftest clears its session
    return
  import tf_keras  # pylint: disable=g-import-not-at-top
  yield tf_keras
  tf_keras.backend.clear_session()


def _sparse_mlp(k, grow, interval, total=200):
  model = itop_tf.sparsify(
      model_cases.mlp(k), sparsity=0.8, grow=grow, seed=0,
      schedule=itop_tf.RegrowthSchedule(update_interval=interval,
                                        total_steps=total))
  jit = helpers.JIT if k is keras else False
  model.compile(k.optimizers.SGD(0.05, momentum=0.9),
                k.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=jit)
  return model


def _state(model):
  """[(mask, weight, union, count)] of every sparse kernel, as NumPy."""
  frontend = frontends.frontend_of(model)
  frontend.sync(model)
  return [(frontend.to_numpy(sw.mask), frontend.to_numpy(sw.weight),
           frontend.to_numpy(sw.ever_active), sw.count)
          for sw in frontend.sparse_weights(model)]


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
