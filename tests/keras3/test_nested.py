"""Kernels of layers nested in other layers, on every Keras 3 backend.

MultiHeadAttention's projections, a custom layer's Dense sublayers and
KerasHub's Transformer blocks and backbones: `sparsify` reaches their
kernels, they train with updates keeping the invariants, save and load as
`.keras`, and `strip` turns them back into plain layers.
"""

import re

import keras
import numpy as np
import pytest

import itop_tf
import keras3_helpers as helpers
import model_cases
from itop_tf import distributions
from itop_tf.keras3 import frontend as keras3_frontend


# Registered, so the `.keras` file loads it.
Block = keras.saving.register_keras_serializable(package="itop_tf_tests")(
    model_cases.block_class(keras))


MHA = ["mha/query", "mha/key", "mha/value", "mha/attention_output"]
ALL = ["emb"] + MHA + ["block/up", "block/down", "head"]


def transformer(seq=6, dim=8):
  inp = keras.Input((seq,), dtype="int32")
  x = keras.layers.Embedding(20, dim, name="emb")(inp)
  x = x + keras.layers.MultiHeadAttention(2, dim // 2, name="mha")(x, x)
  x = Block(dim, name="block")(x)
  out = keras.layers.Dense(3, name="head")(keras.ops.mean(x, axis=1))
  return keras.Model(inp, out)


def data(n=32, seq=6):
  rng = np.random.default_rng(0)
  return (rng.integers(0, 20, (n, seq)).astype("int32"),
          rng.integers(0, 3, (n,)).astype("int32"))


def counts(model):
  return {sw.name: sw.count for sw in helpers.kernels(model)}


def sparse(model=None, sparsity=0.9, grow="random", **kwargs):
  return itop_tf.sparsify(model or transformer(), sparsity=sparsity,
                          schedule=helpers.schedule(2, 40), grow=grow,
                          **kwargs)


def test_kernels_inside_attention_and_custom_layers_are_made_sparse():
  model = sparse()
  assert list(counts(model)) == ALL
  want = {"emb": (20, 8), "mha/query": (8, 2, 4), "mha/attention_output":
          (2, 4, 8), "block/up": (8, 16), "block/down": (16, 8)}
  shapes = {sw.name: sw.shape for sw in helpers.kernels(model)}
  assert {k: shapes[k] for k in want} == want
  # Exactly 10% of all the kernels, nested ones included.
  assert sum(counts(model).values()) == round(
      0.1 * sum(int(np.prod(s)) for s in shapes.values()))


@pytest.mark.parametrize("grow", ["random", "gradient"])
def test_nested_kernels_keep_the_invariants_while_training(grow):
  model = helpers.compile_model(sparse(grow=grow, sparsity=0.8))
  probe = helpers.InvariantProbe()
  x, y = data()
  model.fit(x, y, batch_size=8, epochs=2, verbose=0,
            callbacks=[itop_tf.ITOPCallback(), probe])
  assert probe.steps == 8
  # Updates moved the masks of nested kernels too.
  first, last = probe.masks[0], probe.masks[-1]
  moved = {sw.name for sw, a, b in zip(helpers.kernels(model), first, last)
           if not np.array_equal(a, b)}
  assert {"mha/query", "block/up"} <= moved


def test_nested_model_saves_loads_and_strips(tmp_path):
  model = sparse()
  x, _ = data()
  want = model.predict(x, verbose=0)
  path = str(tmp_path / "nested.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  np.testing.assert_allclose(loaded.predict(x, verbose=0), want, atol=1e-5)
  assert counts(loaded) == counts(model)
  plain = itop_tf.strip(model)
  assert not itop_tf.find_wrappers(plain)
  assert isinstance(plain.get_layer("mha"), keras.layers.MultiHeadAttention)
  assert isinstance(plain.get_layer("block"), Block)
  np.testing.assert_allclose(plain.predict(x, verbose=0), want, atol=1e-5)
  query = helpers.value(plain.get_layer("mha")._query_dense.kernel)  # pylint: disable=protected-access
  assert np.count_nonzero(query) <= counts(model)["mha/query"]


@pytest.mark.parametrize("select, names", [
    ("*/query/kernel", ["mha/query"]),
    (re.compile(r"mha/(query|key)/kernel"), ["mha/query", "mha/key"]),
    (["block", "head/kernel"], ["block/up", "block/down", "head"]),
])
def test_select_takes_kernel_paths_and_regular_expressions(select, names,
                                                           tmp_path):
  model = sparse(select=select)
  assert list(counts(model)) == names
  path = str(tmp_path / "selected.keras")
  model.save(path)
  assert list(counts(keras.saving.load_model(path))) == names


def test_layer_densities_and_dense_layers_take_kernel_paths():
  got = counts(sparse(sparsity=0.5, layer_densities={"mha/*": 0.5,
                                       "mha/value/kernel": 0.25},
                      dense_layers=["*/attention_output/kernel"]))
  assert "mha/attention_output" not in got
  assert got["mha/query"] == got["mha/key"] == 0.5 * 8 * 2 * 4
  assert got["mha/value"] == 0.25 * 8 * 2 * 4


def test_attention_kernels_are_scored_as_matrices_by_erk():
  layer = transformer().get_layer("mha")
  query = layer._query_dense  # pylint: disable=protected-access
  output = layer._output_dense  # pylint: disable=protected-access
  # (8, 2, 4) -> 8 inputs x 8 outputs; (2, 4, 8) -> 8 x 8.
  assert keras3_frontend.FRONTEND.erk_shape(query, "_kernel") == (8, 8)
  assert keras3_frontend.FRONTEND.erk_shape(output, "_kernel") == (8, 8)
  got = counts(sparse())
  erk = distributions.layer_counts(
      [(20, 8)] + [(8, 8)] * 4 + [(8, 16), (16, 8), (8, 3)], 0.1)[1]
  assert list(got.values()) == [int(c) for c in erk]


def test_a_layer_holding_no_kernel_is_refused_by_name():
  wrapped = itop_tf.keras3.PruneAndRegrow(
      keras.layers.LayerNormalization(name="norm"), helpers.schedule())
  with pytest.raises(ValueError, match="'norm'.*holds none"):
    wrapped(np.zeros((2, 4), "float32"))


# --- KerasHub backbones, built from arguments (no presets offline) ---

def _hub_backbone(name):
  keras_hub = pytest.importorskip("keras_hub")
  rng = np.random.default_rng(0)
  if name == "vit":
    model = keras_hub.models.ViTBackbone(
        image_shape=(28, 28, 1), patch_size=7, num_layers=2, num_heads=2,
        hidden_dim=32, mlp_dim=64)
    return model, rng.random((4, 28, 28, 1)).astype("float32")
  cls = {"bert": keras_hub.models.BertBackbone,
         "gpt2": keras_hub.models.GPT2Backbone}[name]
  model = cls(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=32,
              intermediate_dim=64, max_sequence_length=8)
  x = {"token_ids": rng.integers(0, 50, (4, 8)).astype("int32"),
       "padding_mask": np.ones((4, 8), "int32")}
  if name == "bert":
    x["segment_ids"] = np.zeros((4, 8), "int32")
  return model, x


def _flat(y):
  if isinstance(y, dict):
    return np.concatenate([np.ravel(v) for _, v in sorted(y.items())])
  return np.ravel(y)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert", "gpt2", "vit"])
def test_keras_hub_backbone_trains_sparse_saves_and_strips(name, tmp_path):
  backbone, x = _hub_backbone(name)
  model = itop_tf.sparsify(backbone, sparsity=0.9,
                           schedule=helpers.schedule(1, 10), grow="gradient")
  sws = helpers.kernels(model)
  # Every kernel of the Transformer layers is sparse: > 95% of their
  # parameters (the rest are biases and LayerNorms).
  prefix = "vit_encoder/" if name == "vit" else "transformer_layer_"
  encoder = [w for w in backbone.trainable_weights
             if w.path.startswith(prefix)]
  sparse_size = sum(sw.size for sw in sws if sw.name.startswith(prefix))
  assert sparse_size / sum(int(np.prod(w.shape)) for w in encoder) > 0.95

  # Train a few steps with updates: a regression head on the first output.
  head = keras.layers.Dense(1)(keras.tree.flatten(model.output)[0])
  trainer = keras.Model(model.input, head)
  trainer.compile("adam", "mse")
  probe = helpers.InvariantProbe()
  trainer.fit(x, np.ones_like(keras.ops.convert_to_numpy(trainer(x))),
              batch_size=2, epochs=2, verbose=0,
              callbacks=[itop_tf.ITOPCallback(), probe])
  assert probe.steps == 4
  assert itop_tf.exploration_rate(model) > 0.1
  want = _flat(model.predict(x, verbose=0))

  if name != "vit":  # keras_hub 0.32's ViTPatchingAndEmbedding cannot load.
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(_flat(loaded.predict(x, verbose=0)), want,
                               atol=1e-4)
  plain = itop_tf.strip(model)
  assert not itop_tf.find_wrappers(plain)
  np.testing.assert_allclose(_flat(plain.predict(x, verbose=0)), want,
                             atol=1e-4)


def _hub_task(name):
  keras_hub = pytest.importorskip("keras_hub")
  rng = np.random.default_rng(0)
  text = {"token_ids": rng.integers(0, 50, (4, 8)).astype("int32"),
          "padding_mask": np.ones((4, 8), "int32")}
  if name == "vit_classifier":
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(28, 28, 1), patch_size=7, num_layers=1, num_heads=2,
        hidden_dim=16, mlp_dim=32)
    return (keras_hub.models.ViTImageClassifier(backbone, num_classes=3,
                                                preprocessor=None),
            rng.random((4, 28, 28, 1)).astype("float32"),
            np.arange(4) % 3)
  args = dict(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
              intermediate_dim=32, max_sequence_length=8)
  if name == "bert_classifier":
    text["segment_ids"] = np.zeros((4, 8), "int32")
    return (keras_hub.models.BertTextClassifier(
        keras_hub.models.BertBackbone(**args), num_classes=3,
        preprocessor=None), text, np.arange(4) % 3)
  return (keras_hub.models.GPT2CausalLM(keras_hub.models.GPT2Backbone(**args),
                                        preprocessor=None),
          text, text["token_ids"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert_classifier", "gpt2_causal_lm",
                                  "vit_classifier"])
def test_keras_hub_task_models_train_sparse_and_strip(name, tmp_path):
  task, x, y = _hub_task(name)
  model = itop_tf.sparsify(task, sparsity=0.9, grow="gradient",
                           schedule=helpers.schedule(1, 10))
  names = [sw.name for sw in helpers.kernels(model)]
  assert len(names) == len(set(names))
  if name == "gpt2_causal_lm":
    # The tied embedding (input and, reversed, output) is one wrapper.
    assert names.count("token_embedding") == 1
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  probe = helpers.InvariantProbe()
  model.fit(x, y, batch_size=2, epochs=1, verbose=0,
            callbacks=[itop_tf.ITOPCallback(), probe])
  assert probe.steps == 2
  want = model.predict(x, verbose=0)
  if name == "bert_classifier":
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    np.testing.assert_allclose(
        keras.saving.load_model(path).predict(x, verbose=0), want, atol=1e-4)
  else:
    # The ViT's patching layer does not load from its config (keras_hub
    # 0.32), and a functional model cannot load a layer shared between a
    # nested model and itself (GPT-2's tied embedding): their weights load
    # into the same model made sparse again.
    path = str(tmp_path / f"{name}.weights.h5")
    model.save_weights(path)
    again = itop_tf.sparsify(_hub_task(name)[0], sparsity=0.9,
                             grow="gradient",
                             schedule=helpers.schedule(1, 10))
    again.load_weights(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), want, atol=1e-4)
  plain = itop_tf.strip(model)
  np.testing.assert_allclose(plain.predict(x, verbose=0), want, atol=1e-4)
