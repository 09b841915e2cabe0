"""Small Keras 3 models, data and helpers for the Keras 3 suite."""

import keras
import numpy as np
import pytest

import itop_tf
import model_cases
from itop_tf.keras3 import frontend as keras3_frontend

BACKEND = keras.backend.backend()
# jit_compile=True is torch.compile on PyTorch: minutes of compiling for
# these tiny models on CPU, so the PyTorch run trains eagerly.
JIT = BACKEND != "torch"


def sync(model):
  """On JAX, puts fit's state back into the variables before reading them."""
  if BACKEND == "jax":
    model.jax_state_sync()


def value(variable):
  return keras.ops.convert_to_numpy(variable)


def mlp(**kwargs):
  return model_cases.mlp(keras, **kwargs)


def small_cnn(**kwargs):
  return model_cases.small_cnn(keras, **kwargs)


toy_data = model_cases.toy_data


def schedule(interval=5, total=200, **kw):
  return itop_tf.RegrowthSchedule(update_interval=interval, total_steps=total,
                                  **kw)


def sparse_mlp(sparsity=0.8, grow="random", seed=0, interval=5, total=200,
               **kw):
  return itop_tf.sparsify(mlp(), sparsity=sparsity,
                          schedule=schedule(interval, total), grow=grow,
                          seed=seed, **kw)


def compile_model(model, optimizer=None, jit=JIT):
  model.compile(
      optimizer or keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"], jit_compile=jit)
  return model


def kernels(model):
  """The model's `core.SparseWeight`s."""
  return keras3_frontend.FRONTEND.sparse_weights(model)


class InvariantProbe(keras.callbacks.Callback):
  """Checks the invariants after every training step (syncs on JAX).

  Exact active count per kernel, inactive weights exactly 0, union a
  superset of the mask and of the previous union, R_s equal to |union| /
  size counted here by NumPy. Records the masks.
  """

  def __init__(self):
    super().__init__()
    self.unions = None
    self.masks = []
    self.steps = 0

  def on_train_batch_end(self, batch, logs=None):
    model = self.model  # syncs on JAX
    sws = kernels(model)
    unions = []
    for sw in sws:
      m, w, u = value(sw.mask), value(sw.weight), value(sw.ever_active)
      assert m.sum() == sw.count, (sw.name, m.sum(), sw.count)
      assert np.all(w[~m] == 0), sw.name
      assert np.all(u[m]), sw.name
      unions.append(u)
    numpy_rate = sum(int(u.sum()) for u in unions) / sum(u.size for u in unions)
    assert itop_tf.exploration_rate(model) == pytest.approx(numpy_rate,
                                                            rel=1e-6)
    if self.unions is not None:
      for old, new in zip(self.unions, unions):
        assert np.all(new[old]), "the union lost an entry"
    self.unions = unions
    self.masks.append([value(sw.mask).copy() for sw in sws])
    self.steps += 1


def reference_gradient(model, x, y, variable, loss):
  """d loss(y, model(x)) / d `variable` by the backend's own autodiff.

  `GradientTape` (also for a tf_keras model), `jax.grad` or
  `torch.autograd`.
  """
  if BACKEND == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    target = variable.value if isinstance(variable, keras.Variable) else (
        variable)
    with tf.GradientTape() as tape:
      value_ = loss(y, model(x, training=True))
    return tape.gradient(value_, target).numpy()
  if BACKEND == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    trainable = [v.value for v in model.trainable_variables]
    others = [v.value for v in model.non_trainable_variables]

    def loss_of(values):
      pred, _ = model.stateless_call(values, others, x, training=True)
      return loss(y, pred)

    index = next(i for i, v in enumerate(model.trainable_variables)
                 if v is variable)
    return np.asarray(jax.grad(loss_of)(trainable)[index])
  value_ = loss(y, model(x, training=True))
  value_.backward()
  return variable.value.grad.detach().cpu().numpy()
