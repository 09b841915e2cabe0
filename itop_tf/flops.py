"""FLOPs of sparse training, counted the way the RigL and ITOP papers do.

Models of either Keras (tf_keras or Keras 3, any backend).

A training step costs a forward pass (`f`) and a backward pass at twice the
forward (`2f`): `3f` in all. For a sparse model, `f_S` counts every
convolution and dense layer at its kernel density; the dense model costs
`f_D`. RigL's update step also needs the dense gradient of the weights, so
that step costs `2 f_S + f_D` instead of `3 f_S`; SNFS (`grow="momentum"`)
pays it at every step. Only Dense, Conv (1D/2D/3D, transposed), Depthwise and
Separable convolutions are counted (they dominate; normalisation, activations
and pooling are left out, as in the papers' tables). FLOPs are
multiply-adds times 2.

Example:

>>> dense_f, sparse_f = itop_tf.forward_flops(model)   # per example
>>> itop_tf.training_flops_ratio(model)  # RigL, 90% ERK, ResNet-50
0.25
"""

import numpy as np

from itop_tf import frontends
from itop_tf import growth as growth_lib
from itop_tf import prune


def _shape(shape, layer, what):
  if isinstance(shape, list):
    if len(shape) != 1:
      raise ValueError(f"Layer {layer.name!r} has several {what}s; FLOPs are "
                       "counted for single-input layers only.")
    shape = shape[0]
  return [int(d) if d is not None else None for d in shape]


def layer_flops(layer, input_shape, output_shape):
  """Forward FLOPs per example of one layer's kernel(s) when dense.

  Args:
    layer: a layer of either Keras (not a wrapper).
    input_shape: the layer's input shape, batch dimension included.
    output_shape: the layer's output shape, batch dimension included.

  Returns:
    A list with one FLOP count per kernel of `prunable_kernels(layer)` order
    (Separable convolutions have two), or `[]` for a layer that is not
    counted.
  """
  keras = frontends.frontend_of(layer).keras
  convs = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
  if not isinstance(layer, (keras.layers.Dense, keras.layers.DepthwiseConv2D,
                            keras.layers.SeparableConv2D) + convs):
    return []
  inp = _shape(input_shape, layer, "input")[1:]
  out = _shape(output_shape, layer, "output")[1:]
  if any(d is None for d in inp + out):
    raise ValueError(
        f"Layer {layer.name!r} has an unknown dimension (input {inp}, output "
        f"{out}); give the model a fixed input shape to count FLOPs.")
  if isinstance(layer, keras.layers.Dense):
    return [2.0 * np.prod(inp[:-1]) * inp[-1] * layer.units]
  if isinstance(layer, keras.layers.SeparableConv2D):
    kh, kw = layer.kernel_size
    cin, mult = inp[-1], layer.depth_multiplier
    # Depthwise runs at the input resolution after striding, like the output.
    positions = np.prod(out[:-1])
    return [2.0 * positions * kh * kw * cin * mult,
            2.0 * positions * cin * mult * layer.filters]
  if isinstance(layer, keras.layers.DepthwiseConv2D):
    kh, kw = layer.kernel_size
    return [2.0 * np.prod(out) * kh * kw]
  # The other convolutions (the first check admitted nothing else).
  if isinstance(layer, (keras.layers.Conv1DTranspose,
                        keras.layers.Conv2DTranspose,
                        keras.layers.Conv3DTranspose)):
    # Every input position scatters a full kernel into the output.
    kernel = int(np.prod(layer.kernel_size)) * layer.filters
    return [2.0 * np.prod(inp[:-1]) * kernel * inp[-1]]
  kernel = int(np.prod(layer.kernel_size)) * inp[-1] // layer.groups
  return [2.0 * np.prod(out) * kernel]


def _io_shapes(layer):
  """A layer's (input shape, output shape) in its model, batch included."""
  if hasattr(layer, "input_shape"):  # tf_keras
    return layer.input_shape, layer.output_shape
  def shape(t):
    if isinstance(t, (list, tuple)):
      return [tuple(x.shape) for x in t]
    return tuple(t.shape)

  return shape(layer.input), shape(layer.output)


def forward_flops(model):
  """Forward FLOPs per example of `model`, dense and at its current masks.

  Args:
    model: a built functional or Sequential model of either Keras,
      sparsified or not.

  Returns:
    `(dense_flops, sparse_flops)`: floats. For a model without itop_tf
    layers both are equal.

  Raises:
    ValueError: a counted layer has unknown dimensions.
  """
  fe = frontends.frontend_of(model)
  dense = sparse = 0.0
  for layer in prune.leaf_layers(model, fe.keras):
    inner = layer.layer if isinstance(layer, fe.wrapper) else layer
    flops = layer_flops(inner, *_io_shapes(layer))
    if not flops:
      continue
    densities = [1.0] * len(flops)
    if inner is not layer:
      by_kernel = {(id(sw.owner), sw.attr): fe.count(sw.mask) / sw.size
                   for sw in layer.sparse_weights}
      densities = [by_kernel.get((id(o), a), 1.0)
                   for o, a in fe.prunable_kernels(inner)]
    dense += sum(flops)
    sparse += sum(f * d for f, d in zip(flops, densities))
  return dense, sparse


def training_flops(dense_flops, sparse_flops, total_steps, num_updates=0,
                   grow="random"):
  """Training FLOPs per example, summed over `total_steps` steps.

  Args:
    dense_flops: forward FLOPs of the dense model (`f_D`).
    sparse_flops: forward FLOPs of the sparse model (`f_S`).
    total_steps: training steps.
    num_updates: prune-and-regrow updates made during training.
    grow: the growth rule, a name or `itop_tf.growth.Growth`: "random"
      (SET, static: `3 f_S` a step), "gradient" (RigL: an update step costs
      `2 f_S + f_D`) or "momentum" (every step does).

  Returns:
    float, FLOPs per example over the whole training.
  """
  dense_grad_steps = growth_lib.get(grow).dense_gradient_steps(
      total_steps, num_updates)
  return (3.0 * sparse_flops * (total_steps - dense_grad_steps) +
          (2.0 * sparse_flops + dense_flops) * dense_grad_steps)


def training_flops_ratio(model, multiplier=1.0):
  """Training FLOPs of a sparsified model relative to training it dense.

  The schedule and grow method are read from the model's itop_tf layers;
  the densities are the current ones (they do not change during training,
  since updates keep each layer's count). The baseline is the dense model
  trained for `total_steps / multiplier` steps, as the paper's tables compare
  extended (2x) sparse runs against a 1x dense run.

  Args:
    model: a sparsified model.
    multiplier: how much longer than the dense baseline this run trains.

  Returns:
    float; e.g. about 0.25 for ResNet-50 at 90% ERK with RigL.

  Raises:
    ValueError: the model has no itop_tf layers.
  """
  wrapper = frontends.frontend_of(model).sparse_weights(model)[0].wrapper
  schedule = wrapper.schedule
  dense, sparse = forward_flops(model)
  total = schedule.total_steps
  cost = training_flops(dense, sparse, total, schedule.num_updates,
                        wrapper.growth)
  return cost / (3.0 * dense * total / float(multiplier))
