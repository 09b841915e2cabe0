"""The paper's networks as functional models of either Keras (dense).

- `resnet50`: ImageNet ResNet-50 (`keras.applications.ResNet50`, random init).
- `resnet20_cifar`: He et al.'s CIFAR ResNet-20 (16-32-64 channels, 0.27M
  parameters), with 1x1 projection shortcuts; the benchmarks' small network.
- `resnet34_cifar`: ResNet-34 with the CIFAR stem (3x3 conv, stride 1, no
  max-pool), bias-free convolutions and classifier, as in the ITOP code.
- `vgg_c`: VGG-16 variant "C" of SNIP with BatchNorm: 1x1 convolutions (with
  padding 1, as the official code has them) in the last three blocks and a
  2048-512-512 classifier with BatchNorm instead of dropout.
- `lenet_300_100`: the 784-300-100-10 MLP.
- `small_cnn`: conv32-conv64 with max-pooling and a 128-unit dense layer, for
  the offline Fashion-MNIST runs.

Every builder takes the Keras module to build with: `tf_keras` (default,
the TF-MOT front-end) or Keras 3 (`import keras`), so a benchmark compares
the same network on both.

Example:

>>> model = build("vgg_c", input_shape=(32, 32, 3), num_classes=10)
>>> import keras
>>> model3 = build("resnet20_cifar", (32, 32, 3), 10, keras_module=keras)
"""

from launchers import lazy_imports

tf_keras = lazy_imports.TF_KERAS  # imported when a tf_keras model is built


def resnet50(input_shape, num_classes, keras=tf_keras):
  """ImageNet ResNet-50 (Keras Applications), randomly initialised."""
  return keras.applications.ResNet50(
      weights=None, input_shape=tuple(input_shape), classes=num_classes,
      classifier_activation=None)


def _conv_bn(x, filters, kernel, strides, name, keras):
  x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same",
                    use_bias=False, kernel_initializer="he_normal",
                    name=name)(x)
  return keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9,
                                   name=name + "_bn")(x)


def _basic_resnet(input_shape, num_classes, stages, name, keras):
  """CIFAR-stem ResNet of basic blocks; stages: [(planes, blocks, stride)]."""
  inputs = keras.Input(input_shape)
  in_planes = stages[0][0]
  x = keras.layers.ReLU()(_conv_bn(inputs, in_planes, 3, 1, "conv1", keras))
  for stage, (planes, blocks, stride) in enumerate(stages, start=1):
    for block in range(blocks):
      s = stride if block == 0 else 1
      prefix = f"layer{stage}_{block}"
      out = keras.layers.ReLU()(_conv_bn(x, planes, 3, s, prefix + "_conv1", keras))
      out = _conv_bn(out, planes, 3, 1, prefix + "_conv2", keras)
      shortcut = x
      if s != 1 or in_planes != planes:
        shortcut = _conv_bn(x, planes, 1, s, prefix + "_shortcut", keras)
      x = keras.layers.ReLU()(keras.layers.Add()([out, shortcut]))
      in_planes = planes
  x = keras.layers.GlobalAveragePooling2D()(x)
  outputs = keras.layers.Dense(num_classes, use_bias=False, name="classifier")(x)
  return keras.Model(inputs, outputs, name=name)


def resnet20_cifar(input_shape, num_classes, keras=tf_keras):
  """ResNet-20 (3 stages of 3 basic blocks, 16-32-64 channels)."""
  return _basic_resnet(input_shape, num_classes,
                       [(16, 3, 1), (32, 3, 2), (64, 3, 2)], "resnet20_cifar",
                       keras)


def resnet34_cifar(input_shape, num_classes, keras=tf_keras):
  """ResNet-34 (basic blocks 3-4-6-3) with the CIFAR stem."""
  return _basic_resnet(input_shape, num_classes,
                       [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)],
                       "resnet34_cifar", keras)


# Channels, or (kernel size, channels); "M" is a 2x2 max-pool.
_VGG_C = [64, 64, "M", 128, 128, "M", 256, 256, (1, 256), "M",
          512, 512, (1, 512), "M", 512, 512, (1, 512), "M"]


def vgg_c(input_shape, num_classes, keras=tf_keras):
  """VGG-16 "C" of SNIP/ITOP with BatchNorm (2048-512-512 classifier)."""
  inputs = keras.Input(input_shape)
  x = inputs
  index = 0
  for v in _VGG_C:
    if v == "M":
      x = keras.layers.MaxPool2D(2)(x)
      continue
    kernel, filters = v if isinstance(v, tuple) else (3, v)
    index += 1
    # The official code pads every conv by 1, the 1x1 ones included.
    x = keras.layers.ZeroPadding2D(1)(x)
    x = keras.layers.Conv2D(filters, kernel, name=f"conv{index}")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
  x = keras.layers.Flatten()(x)
  for i in (1, 2):
    x = keras.layers.Dense(512, activation="relu", name=f"fc{i}")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9)(x)
  outputs = keras.layers.Dense(num_classes, name="fc3")(x)
  return keras.Model(inputs, outputs, name="vgg_c")


def lenet_300_100(input_shape, num_classes, keras=tf_keras):
  """The 300-100 MLP on flattened inputs."""
  inputs = keras.Input(input_shape)
  x = keras.layers.Flatten()(inputs)
  x = keras.layers.Dense(300, activation="relu", name="fc1")(x)
  x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
  outputs = keras.layers.Dense(num_classes, name="fc3")(x)
  return keras.Model(inputs, outputs, name="lenet_300_100")


def small_cnn(input_shape, num_classes, keras=tf_keras):
  """conv32 - pool - conv64 - pool - dense128 - classifier."""
  inputs = keras.Input(input_shape)
  x = keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
  x = keras.layers.MaxPool2D(2)(x)
  x = keras.layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
  x = keras.layers.MaxPool2D(2)(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(128, activation="relu", name="fc1")(x)
  outputs = keras.layers.Dense(num_classes, name="fc2")(x)
  return keras.Model(inputs, outputs, name="small_cnn")


MODELS = {
    "resnet50": resnet50,
    "resnet20_cifar": resnet20_cifar,
    "resnet34_cifar": resnet34_cifar,
    "vgg_c": vgg_c,
    "lenet_300_100": lenet_300_100,
    "small_cnn": small_cnn,
}


def with_weight_decay(model, keras_module, coefficient, batch_norm=True):
  """`model` rebuilt from its config with L2 weight decay on its weights.

  `coefficient / 2 * sum(w**2)` joins the loss for every kernel and bias
  (and BatchNorm scale and offset with `batch_norm`): the gradient gains
  `coefficient * w`, PyTorch SGD's `weight_decay=coefficient`, which the
  paper's code uses. Layer regularizers, so it works on every backend; the
  model is built anew (fresh weights, drawn from Keras' seed).

  Args:
    model: a dense functional model (not yet sparse).
    keras_module: its Keras (tf_keras or Keras 3).
    coefficient: the decay; 0 returns `model` unchanged.
    batch_norm: also decay BatchNormalization's gamma and beta.

  Returns:
    The rebuilt model.
  """
  if not coefficient:
    return model
  l2 = keras_module.regularizers.serialize(
      keras_module.regularizers.L2(coefficient / 2))
  config = model.get_config()
  for layer in config["layers"]:
    cfg = layer["config"]
    is_bn = layer["class_name"] == "BatchNormalization"
    for key in cfg:
      if (key.endswith("_regularizer") and key != "activity_regularizer"
          and (batch_norm or not is_bn)):
        cfg[key] = l2
  return model.__class__.from_config(config)


def build(name, input_shape, num_classes, keras_module=tf_keras):
  """Builds model `name` for inputs of `input_shape` (no batch dimension).

  Args:
    name: one of `MODELS`.
    input_shape: e.g. (32, 32, 3).
    num_classes: size of the classifier output (logits).
    keras_module: `tf_keras` (default) or Keras 3 (`import keras`).

  Returns:
    A built, dense functional model of that Keras.

  Raises:
    ValueError: unknown model name.
  """
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}: use one of {sorted(MODELS)}.")
  return MODELS[name](tuple(input_shape), int(num_classes), keras_module)
