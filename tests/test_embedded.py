"""The shipped embedded model: its files, its loader, and that it knows its facts.

One real forward pass over 100 of its prompts; about 10 s on 2 CPU cores.
"""

import numpy as np
import pytest

from hydra_jax.train import embedded
from hydra_jax.model import transformer as model_lib
from hydra_jax.model.config import ModelConfig
from hydra_jax.train import synthetic

MAX_ASSET_BYTES = 20 * 2**20


@pytest.fixture(scope="module")
def bundle():
  return embedded.load()


def test_assets_fit_in_20_megabytes():
  files = [f for f in embedded.ASSET_DIR.rglob("*") if f.is_file()]
  names = {f.name for f in files}
  assert {"config.json", "params.safetensors", embedded.TOKENIZER_FILE, embedded.FACTS_FILE,
          embedded.METADATA_FILE} <= names
  assert sum(f.stat().st_size for f in files) <= MAX_ASSET_BYTES


def test_loads_the_recipe_model_with_its_tokenizer(bundle):
  assert bundle.config == embedded.RECIPE.model
  assert bundle.config.norm == "rms" and bundle.config.position == "relative"
  assert bundle.config.dropout_rate == 0.0
  assert bundle.tokenizer.vocab_size == bundle.config.vocab_size
  assert model_lib.count_params(bundle.params) == model_lib.count_params(
      model_lib.init_params(bundle.config))
  assert bundle.tokenizer.encode("")[0] == bundle.tokenizer.bos_id == 2
  assert embedded.load() is bundle                        # read once per process


def test_records_are_the_seeded_world_prompts(bundle):
  recipe = embedded.RECIPE
  world = synthetic.make_world(recipe.num_entities, recipe.world_seed)
  assert list(bundle.records) == synthetic.fact_records(world, recipe.prompt_seed)
  assert len(bundle.records) == 5 * recipe.num_entities == 1000
  for record in bundle.records[:25]:
    assert {"id", "prompt", "label", "subject", "relation"} <= set(record)
    label_tokens = bundle.tokenizer.encode(record["label"])[1:]
    assert len(label_tokens) == 1                       # every label is one token
    assert len(bundle.tokenizer.encode(record["prompt"])) <= bundle.config.max_seq_len


def test_metadata_states_accuracy_and_the_reproduce_command(bundle):
  metadata = bundle.metadata
  assert metadata["reproduce_command"] == embedded.REPRODUCE_COMMAND
  assert metadata["fact_accuracy"] >= 0.9
  assert metadata["num_prompts"] == len(bundle.records)
  # The recipe was stored before later ModelConfig fields existed; read back, they take
  # their defaults, which leave the model unchanged.
  assert ModelConfig.from_dict(metadata["recipe"]["model"]) == bundle.config


def test_answers_at_least_90_percent_of_a_sample_of_its_facts(bundle):
  sample = bundle.records[::4][:100]                    # 100 prompts, 20 of each relation
  accuracy, correct = embedded.fact_accuracy(bundle.params, bundle.config, bundle.tokenizer,
                                             sample)
  assert len(correct) == 100
  assert accuracy >= 0.9


def test_prediction_reads_each_rows_own_final_position(bundle):
  """predict_last (right_pad + model.predict) equals the argmax of each row run alone."""
  rows = [bundle.tokenizer.encode(r["prompt"]) for r in bundle.records[:5]] + [[2, 7]]
  alone = [int(np.argmax(model_lib.forward(bundle.params, bundle.config,
                                           np.array([row], np.int32)).logits[0, -1]))
           for row in rows]
  np.testing.assert_array_equal(embedded.predict_last(bundle.params, bundle.config, rows,
                                                      batch_size=4), alone)   # 2 batches


def test_missing_assets_name_the_file_and_the_command(tmp_path):
  with pytest.raises(FileNotFoundError, match="build_embedded"):
    embedded.load(str(tmp_path))
