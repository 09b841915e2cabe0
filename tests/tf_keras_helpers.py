"""Small tf_keras models, data and helpers for the tf_keras suite."""

import tf_keras as keras

import itop_tf
import model_cases


def mlp(**kwargs):
  return model_cases.mlp(keras, **kwargs)


def small_cnn(**kwargs):
  return model_cases.small_cnn(keras, **kwargs)


toy_data = model_cases.toy_data


def compile_sgd(model, jit=False, momentum=0.9, lr=0.05):
  model.compile(
      keras.optimizers.SGD(lr, momentum=momentum),
      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"], jit_compile=jit)
  return model


def sparse_mlp(sparsity=0.8, interval=5, total=200, grow="random", seed=0,
               **kw):
  schedule = itop_tf.RegrowthSchedule(update_interval=interval,
                                      total_steps=total)
  return itop_tf.sparsify(mlp(), sparsity=sparsity, schedule=schedule,
                          grow=grow, seed=seed, **kw)


def kernels(model):
  """(wrapper, sparse weight) pairs of a sparsified model."""
  return [(w, sw) for w in itop_tf.MaskUpdater(model).wrappers
          for sw in w.sparse_weights]
