"""What the training launchers share: flags, strategy, model, resume, summary.

`train_cifar.py` and `train_imagenet.py` define the same flags with their
own defaults (`define_flags`) and call `run`. A run:

1. checks the flags (one clear error line before anything starts),
2. makes the `tf.distribute` strategy and the TFDS builder,
3. builds the model, `itop_tf.sparsify`s it (unless --method=dense), adds
   L2 weight decay and compiles it (SGD, warm-up + step or cosine LR,
   label smoothing, XLA with --jit),
4. restores the latest checkpoint under --model_dir (masks, union, step,
   optimizer slots), and trains from the restored step with a data stream
   that continues exactly where the checkpoint was taken,
5. saves a checkpoint every --checkpoint_every steps and on SIGTERM
   (`tf.distribute.experimental.PreemptionCheckpointHandler`; the process
   then exits with code 42),
6. writes TensorBoard logs (loss, accuracy, learning rate, R_s, per-layer R_s,
   density and regrown counts) under --model_dir/tensorboard, and ends with
   a line `final: test_accuracy=... sparsity=... R_s=... train_flops=...x`
   and a `results.json`.

Example (what train_cifar.py does):

>>> define_flags(["cifar10", "cifar100", "fashion_mnist"], {"model": "vgg_c"})
>>> app.run(run)
"""

import functools
import hashlib
import json
import os
import shutil
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras as keras

import itop_tf
from launchers import datasets
from launchers import models

FLAGS = flags.FLAGS
METHODS = ("dense", "static", "set", "rigl")
GROW = {"static": "random", "set": "random", "rigl": "gradient"}
PREEMPTED_EXIT_CODE = 42


# The two launchers: the data sets each accepts and its defaults (the paper's).
CIFAR = (["cifar10", "cifar100", "fashion_mnist"],
         {"model": "vgg_c", "epochs": 250, "lr_milestones": ["0.5", "0.75"],
          "update_interval": 4000, "nesterov": True, "weight_decay": 5e-4,
          "bn_weight_decay": True})
IMAGENET = (["imagenet2012"],
            {"model": "resnet50", "epochs": 100,
             "lr_milestones": ["0.3", "0.6", "0.9"], "warmup_epochs": 5.0,
             "update_interval": 4000, "nesterov": False, "weight_decay": 1e-4,
             "bn_weight_decay": False, "label_smoothing": 0.1,
             "image_size": 224})


def flag_definer(flag_values):
  """`define(kind, name, default, help_text, *args)` on `flag_values`.

  `define("integer", "epochs", 250, "Epochs.")` is
  `flags.DEFINE_integer("epochs", 250, "Epochs.", flag_values=flag_values)`.
  """

  def define(kind, name, default, help_text, *args):
    getattr(flags, "DEFINE_" + kind)(name, default, *args, help_text,
                                     flag_values=flag_values)

  return define


def define_flags(dataset_names, defaults, flag_values=FLAGS):
  """Defines the launcher flags.

  Args:
    dataset_names: the --dataset values this launcher accepts.
    defaults: `{flag name: default}` overriding the generic defaults below.
    flag_values: where to define them (tests use a fresh `FlagValues`).
  """
  d = {
      "dataset": dataset_names[0], "model": "vgg_c", "method": "rigl",
      "sparsity": 0.9, "distribution": "erk", "update_interval": 4000,
      "initial_prune_fraction": 0.5, "end_step": 0, "multiplier": 1,
      "epochs": 250, "batch_size": 128, "lr": 0.1, "lr_schedule": "step",
      "lr_milestones": ["0.5", "0.75"], "lr_decay": 0.1, "warmup_epochs": 0.0,
      "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
      "bn_weight_decay": True, "label_smoothing": 0.0, "image_size": 224,
  }
  d.update(defaults)
  define = flag_definer(flag_values)

  define("enum", "dataset", d["dataset"], "Data set (TFDS).", dataset_names)
  define("string", "data_dir", None, "TFDS data directory (prepared data "
         "sets); required for imagenet2012.")
  define("string", "manual_dir", None, "Manually provided files: Fashion-MNIST"
         " IDX .gz files (default /usr/share/datasets/fashion-mnist) or "
         "ImageNet tars.")
  define("enum", "model", d["model"], "Network.", sorted(models.MODELS))
  define("enum", "method", d["method"],
         "dense; static (sparse, fixed mask); set (random regrowth); rigl "
         "(gradient regrowth). ITOP = set/rigl exploring until the end "
         "(--end_step=0) and, for more of it, --multiplier.", METHODS)
  define("float", "sparsity", d["sparsity"],
         "Global sparsity of the sparse kernels, in [0, 1).")
  define("enum", "distribution", d["distribution"], "Layer densities.",
         ["erk", "er", "uniform"])
  define("integer", "update_interval", d["update_interval"],
         "Steps between mask updates (Delta T).")
  define("float", "initial_prune_fraction", d["initial_prune_fraction"],
         "Fraction of active weights replaced at the first update; decays by "
         "cosine to 0.005.")
  define("integer", "end_step", d["end_step"],
         "Last step with updates, before --multiplier scales it (RigL stops "
         "at 75% of training); 0 explores until the end (ITOP).")
  define("integer", "multiplier", d["multiplier"],
         "Train this many times longer: epochs, LR milestones and end_step "
         "scale, Delta T does not (the paper's 2x runs).")
  define("integer", "epochs", d["epochs"], "Epochs, before --multiplier.")
  define("integer", "batch_size", d["batch_size"],
         "Global batch size (all replicas and workers).")
  define("float", "lr", d["lr"], "Peak learning rate.")
  define("enum", "lr_schedule", d["lr_schedule"],
         "step: x--lr_decay at --lr_milestones; cosine: to 0.",
         ["step", "cosine"])
  define("list", "lr_milestones", d["lr_milestones"],
         "Step-schedule milestones as fractions of training in (0, 1) "
         "(0.5,0.75 for CIFAR; 0.3,0.6,0.9 for ImageNet's 30/60/90 of 100).")
  define("float", "lr_decay", d["lr_decay"], "Factor at each milestone.")
  define("float", "warmup_epochs", d["warmup_epochs"],
         "Linear LR warm-up from 0 (not scaled by --multiplier).")
  define("float", "momentum", d["momentum"], "SGD momentum.")
  define("bool", "nesterov", d["nesterov"], "Nesterov momentum.")
  define("float", "weight_decay", d["weight_decay"],
         "L2 weight decay (PyTorch convention: grad += wd * w).")
  define("bool", "bn_weight_decay", d["bn_weight_decay"],
         "Also decay BatchNorm scales and offsets.")
  define("float", "label_smoothing", d["label_smoothing"],
         "Label smoothing in [0, 1).")
  define("integer", "image_size", d["image_size"],
         "ImageNet training/eval crop size.")
  define("integer", "seed", 0, "Seed for weights, masks, growth and data.")
  define("string", "model_dir", None,
         "Checkpoints, TensorBoard logs and results.json.")
  define("enum", "strategy", "default",
         "tf.distribute strategy; multi_worker reads TF_CONFIG.",
         ["default", "mirrored", "multi_worker", "tpu"])
  define("string", "tpu", "", "TPU name or address for --strategy=tpu.")
  define("enum", "mixed_precision", "none", "Keras mixed-precision policy.",
         ["none", "float16", "bfloat16"])
  define("bool", "jit", True, "Compile the training step with XLA.")
  define("integer", "checkpoint_every", 1000, "Save a checkpoint every this "
         "many steps (0: only at the end and on SIGTERM).")
  define("integer", "eval_every", 1,
         "Evaluate every this many epochs (0: only at the end).")
  define("bool", "deterministic", False,
         "tf.config.experimental.enable_op_determinism().")
  define("integer", "verbose", 1,
         "Keras verbosity: 1 progress bar, 2 one line per epoch, 0 silent.")
  _register_validators(flag_values)


def _check(condition, message):
  if not condition:
    raise flags.ValidationError(message)
  return True


def _register_validators(fv):
  """One clear error line per bad flag, at parse time."""

  def v(name, checker, message="Flag validation failed"):
    flags.register_validator(name, checker, message, flag_values=fv)

  v("sparsity", lambda s: 0.0 <= s < 1.0,
    "--sparsity must be in [0, 1): 0.9 keeps 10% of the weights.")
  v("update_interval", lambda x: x >= 1, "--update_interval must be >= 1.")
  v("initial_prune_fraction", lambda x: 0.0 <= x <= 1.0,
    "--initial_prune_fraction must be in [0, 1].")
  v("end_step", lambda x: x >= 0,
    "--end_step must be >= 0 (0: explore until the end).")
  v("multiplier", lambda x: x >= 1, "--multiplier must be an integer >= 1.")
  v("epochs", lambda x: x >= 1, "--epochs must be >= 1.")
  v("batch_size", lambda x: x >= 1, "--batch_size must be >= 1.")
  v("lr", lambda x: x > 0, "--lr must be > 0.")
  v("lr_decay", lambda x: 0 < x <= 1, "--lr_decay must be in (0, 1].")
  v("momentum", lambda x: 0 <= x < 1, "--momentum must be in [0, 1).")
  v("weight_decay", lambda x: x >= 0, "--weight_decay must be >= 0.")
  v("label_smoothing", lambda x: 0 <= x < 1,
    "--label_smoothing must be in [0, 1).")
  v("image_size", lambda x: x >= 32, "--image_size must be >= 32.")
  v("checkpoint_every", lambda x: x >= 0, "--checkpoint_every must be >= 0.")
  v("eval_every", lambda x: x >= 0, "--eval_every must be >= 0.")
  v("seed", lambda x: 0 <= x < 2**31 - 1, "--seed must be in [0, 2**31 - 1).")

  def milestones(values):
    try:
      m = [float(x) for x in values]
    except ValueError:
      return _check(False, f"--lr_milestones must be numbers, got {values}.")
    return _check(all(0 < x < 1 for x in m) and m == sorted(m),
                  "--lr_milestones must be increasing fractions of training "
                  f"in (0, 1), got {values}.")

  v("lr_milestones", milestones)
  multi = functools.partial(flags.register_multi_flags_validator,
                            flag_values=fv)
  multi(
      ["dataset", "data_dir"],
      lambda f: _check(f["dataset"] != "imagenet2012" or f["data_dir"],
                       "--dataset=imagenet2012 needs --data_dir: the TFDS "
                       "directory holding the prepared imagenet2012."))
  multi(
      ["warmup_epochs", "epochs"],
      lambda f: _check(0 <= f["warmup_epochs"] < f["epochs"],
                       "--warmup_epochs must be in [0, --epochs)."))
  multi(
      ["model", "dataset"],
      lambda f: _check(
          f["model"] != "resnet50" or f["dataset"] == "imagenet2012",
          "--model=resnet50 is the ImageNet network: use resnet34_cifar or "
          "vgg_c for CIFAR, lenet_300_100 or small_cnn for Fashion-MNIST."))


class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from 0 to `lr`, then `lr * decay**k` after k milestones.

  Args:
    lr: peak learning rate.
    warmup_steps: steps of linear warm-up (0: none).
    boundaries: increasing steps where the rate is multiplied by `decay`.
    decay: the factor.
  """

  def __init__(self, lr, warmup_steps, boundaries, decay):
    super().__init__()
    self.lr = float(lr)
    self.warmup_steps = int(warmup_steps)
    self.boundaries = [int(b) for b in boundaries]
    self.decay = float(decay)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    k = tf.zeros([], tf.float32)
    for b in self.boundaries:
      k += tf.cast(step >= b, tf.float32)
    rate = self.lr * tf.pow(self.decay, k)
    if self.warmup_steps:
      rate = tf.minimum(rate, self.lr * (step + 1.0) / self.warmup_steps)
    return rate

  def get_config(self):
    return {"lr": self.lr, "warmup_steps": self.warmup_steps,
            "boundaries": self.boundaries, "decay": self.decay}


def learning_rate(f, total_steps, steps_per_epoch):
  """The LR schedule the flags describe, over `total_steps` steps."""
  warmup = int(round(f.warmup_epochs * steps_per_epoch))
  if f.lr_schedule == "cosine":
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else f.lr, max(total_steps - warmup, 1),
        warmup_target=f.lr if warmup else None, warmup_steps=warmup)
  boundaries = [int(round(float(m) * total_steps))
                for m in f.lr_milestones]
  return WarmupStepDecay(f.lr, warmup, boundaries, f.lr_decay)


def make_strategy(f):
  """The `tf.distribute` strategy of --strategy."""
  if f.strategy == "mirrored":
    return tf.distribute.MirroredStrategy()
  if f.strategy == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if f.strategy == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=f.tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  return tf.distribute.get_strategy()


def add_weight_decay(model, weight_decay, bn_weight_decay):
  """Adds `weight_decay * sum(w**2) / 2` over the trainable weights.

  This is PyTorch's SGD weight decay (the gradient gains `wd * w`), which the
  paper's code uses. Pruned weights are 0, so they add nothing.

  Args:
    model: the (sparsified) model.
    weight_decay: the coefficient; 0 adds nothing.
    bn_weight_decay: also decay BatchNorm `gamma` and `beta`.
  """
  if not weight_decay:
    return
  bn = {id(v) for layer in model.submodules
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.trainable_weights}
  decayed = [v for v in model.trainable_weights
             if bn_weight_decay or id(v) not in bn]
  model.add_loss(lambda: weight_decay * tf.add_n(
      [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in decayed]))


def build_model(f, spec, total_steps, multiplier):
  """Builds, sparsifies (unless dense) and regularises the model."""
  model = models.build(f.model, spec.image_shape, spec.num_classes)
  if f.method != "dense":
    end = f.end_step * multiplier if f.end_step else None
    if end is not None and end >= total_steps:
      end = None
    schedule = itop_tf.RegrowthSchedule(
        update_interval=f.update_interval, total_steps=total_steps,
        initial_prune_fraction=(0.0 if f.method == "static"
                                else f.initial_prune_fraction),
        end_step=end)
    model = itop_tf.sparsify(
        model, sparsity=f.sparsity, schedule=schedule,
        distribution=f.distribution, grow=GROW[f.method],
        seed=f.seed)
  add_weight_decay(model, f.weight_decay, f.bn_weight_decay)
  return model


class CheckpointEverySteps(keras.callbacks.Callback):
  """Saves every `every` optimizer steps and when the job is preempted.

  Preemption (SIGTERM) is `tf.distribute.experimental.
  PreemptionCheckpointHandler`'s: it saves at a step all workers agree on,
  then exits the process with `PREEMPTED_EXIT_CODE`.
  """

  def __init__(self, manager, handler, every):
    super().__init__()
    self.manager = manager
    self.handler = handler
    self.every = every

  def on_train_begin(self, logs=None):
    # Read the step once; counting batches avoids a device sync every step.
    self._step = int(self.model.optimizer.iterations.numpy())

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1
    self.handler.save_checkpoint_if_preempted(checkpoint_number=self._step)
    if self.every and self._step % self.every == 0:
      self.manager.save(checkpoint_number=self._step)


def _preempted():
  logging.warning("Preempted: checkpoint saved, exiting with code %d.",
                  PREEMPTED_EXIT_CODE)
  sys.exit(PREEMPTED_EXIT_CODE)


def _worker_dir(f, strategy):
  """(is_chief, directory this worker writes to)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  task_type = getattr(resolver, "task_type", None)
  task_id = getattr(resolver, "task_id", None)
  is_chief = (task_type in (None, "chief") or
              (task_type == "worker" and task_id == 0 and
               "chief" not in resolver.cluster_spec().as_dict()))
  if is_chief:
    return True, f.model_dir
  return False, os.path.join(f.model_dir, "workers",
                             f"{task_type}_{task_id}")


def mask_digest(model):
  """sha256 of every mask and union, to compare runs and workers."""
  h = hashlib.sha256()
  for wrapper in itop_tf.find_wrappers(model):
    for sw in wrapper.sparse_weights:
      h.update(np.packbits(sw.mask.numpy()).tobytes())
      h.update(np.packbits(sw.ever_active.numpy()).tobytes())
  return h.hexdigest()


def run(argv):
  """`app.run` entry point: trains, evaluates and reports as flags say."""
  del argv
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("WARNING")
  train(FLAGS)


def train(f):
  """Trains, evaluates and reports as the flags say.

  Args:
    f: parsed flag values (`FLAGS`, or a `FlagValues` given to
      `define_flags`).

  Returns:
    The results dict also written to results.json.

  Raises:
    app.UsageError: the batch does not split over the replicas, or is
      larger than the training split.
  """
  if f.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = make_strategy(f)
  replicas = strategy.num_replicas_in_sync
  if f.batch_size % replicas:
    raise app.UsageError(
        f"--batch_size={f.batch_size} is not divisible by the "
        f"{replicas} replicas: use a multiple of {replicas}.")
  if (f.jit and replicas > 1 and not tf.config.list_logical_devices("GPU")
      and f.strategy != "tpu"):
    raise app.UsageError(
        f"--jit with {replicas} CPU replicas fails in TensorFlow (XLA has no "
        "CPU collectives, b/194942685): pass --nojit (the mask updates stay "
        "XLA-compiled), or run on GPUs/TPUs.")
  if f.mixed_precision != "none":
    keras.mixed_precision.set_global_policy("mixed_" + f.mixed_precision)
  # Global seed 1 + seed: with a global seed of 0, tf.data cannot take the
  # per-epoch shuffle seed as a tensor (TF reads (0, 0) as "unseeded").
  keras.utils.set_random_seed(f.seed + 1)

  spec = datasets.DATASETS[f.dataset]
  if f.dataset == "imagenet2012":
    spec = datasets.with_image_size(spec, f.image_size)
  builder = datasets.builder(spec, f.data_dir, f.manual_dir)
  steps_per_epoch = datasets.num_train_examples(builder, spec) // f.batch_size
  if steps_per_epoch < 1:
    raise app.UsageError(
        f"--batch_size={f.batch_size} is larger than the training split.")
  multiplier = f.multiplier
  epochs = f.epochs * multiplier
  total_steps = epochs * steps_per_epoch
  model_dir = f.model_dir or os.path.join(
      "runs", f"{f.dataset}_{f.model}_{f.method}_"
      f"{f.sparsity:g}_{multiplier}x_seed{f.seed}")
  f.model_dir = model_dir
  is_chief, write_dir = _worker_dir(f, strategy)

  with strategy.scope():
    model = build_model(f, spec, total_steps, multiplier)
    optimizer = keras.optimizers.SGD(
        learning_rate(f, total_steps, steps_per_epoch), momentum=f.momentum,
        nesterov=f.nesterov)
    metrics = ["accuracy"]
    if spec.num_classes > 10:
      metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
    model.compile(
        optimizer,
        keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=f.label_smoothing),
        metrics=metrics, jit_compile=f.jit)
    optimizer = model.optimizer  # LossScaleOptimizer under float16
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  ckpt_dir = os.path.join(model_dir, "checkpoints")
  latest = tf.train.latest_checkpoint(ckpt_dir)
  if latest:
    checkpoint.restore(latest).assert_existing_objects_matched()
  write_ckpt_dir = os.path.join(write_dir, "checkpoints")
  if not is_chief and os.path.isdir(write_ckpt_dir):
    shutil.rmtree(write_ckpt_dir)
  manager = tf.train.CheckpointManager(checkpoint, write_ckpt_dir,
                                       max_to_keep=3)
  handler = tf.distribute.experimental.PreemptionCheckpointHandler(
      strategy.cluster_resolver, manager,
      termination_config=tf.distribute.experimental.TerminationConfig(
          exit_fn=_preempted))
  start = int(optimizer.iterations.numpy())
  if start:
    print(f"Resuming from {latest} at step {start} of {total_steps}.")

  callbacks = [CheckpointEverySteps(manager, handler, f.checkpoint_every),
               keras.callbacks.TensorBoard(
                   os.path.join(write_dir, "tensorboard"), update_freq="epoch")]
  if f.method != "dense":
    callbacks.insert(0, itop_tf.ITOPCallback(
        log_dir=os.path.join(write_dir, "tensorboard", "itop")))
  eval_ds = datasets.make_eval_dataset(spec, builder, f.batch_size)

  def fit(first_step, epoch, steps, end_epoch):
    train = strategy.distribute_datasets_from_function(
        datasets.make_train_fn(spec, builder, f.batch_size, f.seed,
                               steps_per_epoch, first_step, epochs))
    validation = {}
    if f.eval_every:
      validation = {"validation_data": eval_ds,
                    "validation_freq": f.eval_every}
    model.fit(train, initial_epoch=epoch, epochs=end_epoch,
              steps_per_epoch=steps, callbacks=callbacks,
              verbose=f.verbose, **validation)

  epoch, offset = divmod(start, steps_per_epoch)
  if start < total_steps and offset:
    # Finish the interrupted epoch first, then run whole epochs.
    fit(start, epoch, steps_per_epoch - offset, epoch + 1)
    epoch += 1
  if epoch < epochs:
    fit(epoch * steps_per_epoch, epoch, steps_per_epoch, epochs)
  step = int(optimizer.iterations.numpy())
  if step != start:
    manager.save(checkpoint_number=step)

  results = evaluate_and_report(f, model, eval_ds, multiplier, step)
  os.makedirs(write_dir, exist_ok=True)
  with open(os.path.join(write_dir, "results.json"), "w") as out:
    json.dump(results, out, indent=1)
  if not is_chief:
    shutil.rmtree(write_ckpt_dir, ignore_errors=True)
  print(summary_line(results))
  return results


def evaluate_and_report(f, model, eval_ds, multiplier, step):
  """Test metrics, sparsity, R_s and training FLOPs as a dict."""
  values = model.evaluate(eval_ds, verbose=0, return_dict=True)
  results = {"dataset": f.dataset, "model": f.model,
             "method": f.method, "multiplier": multiplier,
             "seed": f.seed, "step": step,
             "test_accuracy": float(values["accuracy"]),
             "test_loss": float(values["loss"])}
  if "top5" in values:
    results["test_top5"] = float(values["top5"])
  if f.method == "dense":
    results.update(sparsity=0.0, exploration_rate=1.0,
                   train_flops=float(multiplier))
    return results
  rows = itop_tf.sparsity_report(model)
  size = sum(r["size"] for r in rows)
  results.update(
      sparsity=1.0 - sum(r["active"] for r in rows) / size,
      exploration_rate=itop_tf.exploration_rate(model),
      train_flops=float(itop_tf.training_flops_ratio(model, multiplier)),
      mask_digest=mask_digest(model),
      layers=[{k: (list(v) if isinstance(v, tuple) else v)
               for k, v in r.items()} for r in rows])
  return results


def summary_line(results):
  """The launcher's last line: accuracy, sparsity, R_s, training FLOPs."""
  return (f"final: test_accuracy={results['test_accuracy']:.4f} "
          f"sparsity={results['sparsity']:.3f} "
          f"R_s={results['exploration_rate']:.4f} "
          f"train_flops={results['train_flops']:.3f}x dense "
          f"({results['method']}, {results['multiplier']}x, "
          f"step {results['step']})")
