"""A layer used more than once per step (shared, tied embeddings), Keras 3.

One mask per variable however many calls; the dense gradient RigL and SNFS
store is the sum of the calls' gradients counted once, equal to what the
backend's own autodiff (`GradientTape`, `jax.grad`, `torch.autograd`) gives
for the masked kernel, with and without `LossScaleOptimizer`.
"""

import keras
import numpy as np
import pytest

import itop_tf
import keras3_helpers as helpers


def shared_dense_model():
  inp = keras.Input((8,))
  shared = keras.layers.Dense(8, name="shared")
  h = shared(keras.activations.tanh(shared(inp)))
  return keras.Model(inp, keras.layers.Dense(3, name="head")(h))


def tied_embedding_model():
  keras_hub = pytest.importorskip("keras_hub")
  inp = keras.Input((5,), dtype="int32")
  emb = keras_hub.layers.ReversibleEmbedding(12, 8, name="shared")
  h = keras.activations.tanh(keras.ops.mean(emb(inp), axis=1))
  return keras.Model(inp, emb(h, reverse=True))


MODELS = {"shared_dense": (shared_dense_model, 3),
          "tied_embedding": (tied_embedding_model, 12)}


def _data(name, n=16):
  rng = np.random.default_rng(1)
  classes = MODELS[name][1]
  if name == "tied_embedding":
    x = rng.integers(0, 12, (n, 5)).astype("int32")
  else:
    x = rng.normal(size=(n, 8)).astype("float32")
  return x, rng.integers(0, classes, (n,)).astype("int32")


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def reference_gradient(model, x, y, variable):
  """d loss / d `variable` by the backend's own autodiff."""
  backend = keras.backend.backend()
  if backend == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    trainable = [v.value for v in model.trainable_variables]
    others = [v.value for v in model.non_trainable_variables]

    def loss(values):
      pred, _ = model.stateless_call(values, others, x, training=True)
      return LOSS(y, pred)

    index = next(i for i, v in enumerate(model.trainable_variables)
                 if v is variable)
    return np.asarray(jax.grad(loss)(trainable)[index])
  if backend == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.GradientTape() as tape:
      loss = LOSS(y, model(x, training=True))
    return tape.gradient(loss, variable.value).numpy()
  loss = LOSS(y, model(x, training=True))
  loss.backward()
  return variable.value.grad.detach().cpu().numpy()


def _trained(name, grow, loss_scale, steps):
  """The model made sparse and trained `steps` steps on one batch, lr 0."""
  build, _ = MODELS[name]
  model = itop_tf.sparsify(build(), sparsity=0.5, grow=grow,
                           schedule=helpers.schedule(1000, 2000))
  optimizer = keras.optimizers.SGD(0.0)
  if loss_scale:
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  model.compile(optimizer, LOSS, jit_compile=helpers.JIT)
  x, y = _data(name)
  model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)
  helpers.sync(model)
  return model, optimizer, x, y


def _want(model, x, y):
  """The gradient of the masked shared kernel, by the backend's autodiff."""
  plain = itop_tf.strip(model)
  kernel = next(v for v in plain.get_layer("shared").trainable_variables
                if v.path.endswith(("kernel", "embeddings")))
  return reference_gradient(plain, x, y, kernel)


@pytest.mark.parametrize("loss_scale", [False, True], ids=["plain", "lso"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_rigl_stores_the_sum_of_the_calls_gradients_once(name, loss_scale):
  model, optimizer, x, y = _trained(name, "gradient", loss_scale, steps=2)
  wrapper = model.get_layer("shared")
  assert len(wrapper.sparse_weights) == 1   # one mask for both calls
  assert float(helpers.value(wrapper.calls)) == 2.0
  scale = float(helpers.value(optimizer.dynamic_scale)) if loss_scale else 1.0
  want = _want(model, x, y) * scale   # the scaled loss's gradient
  got = helpers.value(wrapper.sparse_weights[0].dense_grad)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * scale)

  # Steps that do not capture keep it as it is (before: twice it per step).
  wrapper.capture.assign(False)
  model.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
  helpers.sync(model)
  np.testing.assert_allclose(
      helpers.value(wrapper.sparse_weights[0].dense_grad), got, rtol=1e-6)
  if loss_scale:  # no overflow from a growing stored value
    assert float(helpers.value(optimizer.dynamic_scale)) == scale


@pytest.mark.parametrize("loss_scale", [False, True], ids=["plain", "lso"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_snfs_moving_average_counts_each_step_once(name, loss_scale):
  steps = 4
  model, optimizer, x, y = _trained(name, "momentum", loss_scale, steps)
  wrapper = model.get_layer("shared")
  decay = wrapper.growth.gradient_decay
  scale = float(helpers.value(optimizer.dynamic_scale)) if loss_scale else 1.0
  # The same gradient every step (lr 0), from 0: (1 - decay^steps) of it.
  want = (1.0 - decay**steps) * _want(model, x, y) * scale
  np.testing.assert_allclose(
      helpers.value(wrapper.sparse_weights[0].dense_grad), want, rtol=1e-4,
      atol=1e-6 * scale)


def test_a_file_saved_before_the_call_counter_loads():
  model = itop_tf.sparsify(shared_dense_model(), sparsity=0.5,
                           grow="gradient", schedule=helpers.schedule())
  wrapper = model.get_layer("shared")
  # The wrapper's own variables, in the order Keras saves them.
  variables = wrapper._trainable_variables + wrapper._non_trainable_variables  # pylint: disable=protected-access
  old = [v for v in variables if v is not wrapper.calls]
  store = {str(i): np.ones(v.shape, v.dtype) for i, v in enumerate(old)}
  wrapper.calls.assign(5.0)
  wrapper.load_own_variables(store)
  assert float(helpers.value(wrapper.calls)) == 1.0
  assert helpers.value(wrapper.sparse_weights[0].mask).all()
