"""Optimizers that must keep inactive kernel entries at exactly 0.

Shared by tests/test_masking.py (tf_keras) and tests/keras3/test_masking.py:
each passes its Keras module. Every one of them prunes weights whose state
is not zero (momentum, Adam moments, the EMA average, decoupled decay).
"""


def optimizers(keras, tf_keras=False):
  """{name: factory} for `keras`: tf_keras (`tf_keras=True`) or Keras 3."""
  out = {
      "sgd_nesterov": lambda: keras.optimizers.SGD(0.1, momentum=0.9,
                                                   nesterov=True),
      "adam_ema_overwrite": lambda: keras.optimizers.Adam(
          1e-2, use_ema=True, ema_overwrite_frequency=2),
      "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.05),
      "rmsprop_momentum": lambda: keras.optimizers.RMSprop(1e-3,
                                                           momentum=0.9),
      "lion": lambda: keras.optimizers.Lion(1e-3),
      "adafactor": lambda: keras.optimizers.Adafactor(0.1),
  }
  if tf_keras:
    out["nadam"] = lambda: keras.optimizers.Nadam(1e-2)
    out["legacy_adam"] = lambda: keras.optimizers.legacy.Adam(1e-2)
  return out
