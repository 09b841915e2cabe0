"""The launchers' flags: definitions, defaults per launcher and validators.

`train_cifar.py` and `train_imagenet.py` define the same flags with their
own defaults; every bad value gets one clear error line at parse time. The
benchmarks reuse `flag_definer` for their own flags. This module needs
neither TFDS nor a model.

Example (what train_cifar.py does):

>>> define_flags(*CIFAR)
>>> app.run(trainer.run)
"""

import functools

from absl import flags

from launchers import models

FLAGS = flags.FLAGS
METHODS = ("dense", "static", "set", "rigl")

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

  define("enum", "frontend", "keras3",
         "keras3: Keras 3 on the backend Keras is configured with "
         "(KERAS_BACKEND=jax, tensorflow or torch); tf_keras: tf_keras with "
         "TF-MOT (TensorFlow).", ["keras3", "tf_keras"])
  define("enum", "input", "auto",
         "Input pipeline (Keras 3): tfds (TFDS through tf.data); idx "
         "(Fashion-MNIST's IDX files, NumPy); data_source (a TFDS data set "
         "prepared as ArrayRecord, read without TensorFlow); auto: tfds on "
         "the TensorFlow backend; on JAX and PyTorch idx for Fashion-MNIST "
         "when its files are there, else tfds where TensorFlow can be "
         "imported, else data_source.",
         ["auto", "tfds", "idx", "data_source"])
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
         "tf_keras and Keras 3 on TensorFlow: the tf.distribute strategy "
         "(multi_worker reads TF_CONFIG). Keras 3 on JAX: keras.distribution "
         "DataParallel over all devices (default, mirrored, tpu), and over "
         "several hosts with multi_worker (--coordinator_address, "
         "--num_processes, --process_id).",
         ["default", "mirrored", "multi_worker", "tpu"])
  define("string", "tpu", "", "TPU name or address for --strategy=tpu.")
  define("string", "coordinator_address", None,
         "Keras 3 on JAX, --strategy=multi_worker: host:port of process 0 "
         "(keras.distribution.initialize).")
  define("integer", "num_processes", 0,
         "Keras 3 on JAX, --strategy=multi_worker: processes (hosts).")
  define("integer", "process_id", 0,
         "Keras 3 on JAX, --strategy=multi_worker: this process, in "
         "[0, --num_processes).")
  define("enum", "mixed_precision", "none", "Keras mixed-precision policy.",
         ["none", "float16", "bfloat16"])
  define("bool", "jit", True, "Compile the training step with XLA.")
  define("integer", "checkpoint_every", 1000, "Save a checkpoint every this "
         "many steps (0: only at the end and on SIGTERM).")
  define("integer", "eval_every", 1,
         "Evaluate every this many epochs (0: only at the end).")
  define("bool", "deterministic", False,
         "tf.config.experimental.enable_op_determinism().")
  define("enum", "export", "none",
         "After training, write a LiteRT file with sparse weights into "
         "--model_dir (model.tflite, or model_int8.tflite: int8 post-training "
         "quantization calibrated on training inputs) and report its size "
         "against the dense export and its test accuracy in the LiteRT "
         "interpreter.", ["none", "tflite", "tflite_int8"])
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
  v("num_processes", lambda x: x >= 0, "--num_processes must be >= 0.")

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
      ["export", "method"],
      lambda f: _check(f["export"] == "none" or f["method"] != "dense",
                       "--export writes a sparse model: --method=dense has "
                       "none (use static, set or rigl)."))
  multi(
      ["process_id", "num_processes"],
      lambda f: _check(0 <= f["process_id"] < max(f["num_processes"], 1),
                       "--process_id must be in [0, --num_processes)."))
  multi(
      ["frontend", "input"],
      lambda f: _check(f["frontend"] == "keras3" or f["input"] in (
          "auto", "tfds"), "--input=idx and --input=data_source are Keras 3 "
                           "pipelines: tf_keras reads TFDS (--input=tfds)."))
  multi(
      ["input", "dataset"],
      lambda f: _check(f["input"] != "idx" or f["dataset"] == "fashion_mnist",
                       "--input=idx reads Fashion-MNIST's IDX files: use "
                       "--input=tfds or data_source for other data sets."))
  multi(
      ["model", "dataset"],
      lambda f: _check(
          f["model"] != "resnet50" or f["dataset"] == "imagenet2012",
          "--model=resnet50 is the ImageNet network: use resnet34_cifar or "
          "vgg_c for CIFAR, lenet_300_100 or small_cnn for Fashion-MNIST."))
