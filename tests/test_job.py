"""The main job's flow in-process: the model planned from its config files is the model
loaded, the mesh's shape is computed in one place, bad input stops before anything is
written, and the kept prompts are those the model answers. End-to-end runs are in
test_main.py. Runtime: about 25 s on 2 CPU cores.
"""

import jax
import numpy as np
import pytest

from hydra_jax import checkpoints, data
from hydra_jax import store as results_store
from hydra_jax.job import chunks
from hydra_jax.job import loading
from hydra_jax.job import run as job
from hydra_jax.job import runtime
from hydra_jax.model import predict
from hydra_jax.model.config import ModelConfig
from hydra_jax.sweep import engine as sweep
from hydra_jax.sweep.options import SweepOptions
from tests.conftest import job_config, numpy_params

SMALL = ModelConfig(vocab_size=512, d_model=16, num_layers=2, num_heads=2, max_seq_len=16)


@pytest.mark.parametrize("source", ["embedded", "checkpoint"])
@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_the_planned_model_is_the_loaded_model(tmp_path, source, dtype):
  """The job matches config.model once, on model_config_of: it must be what loads.
  (A random model is both times `job.config.model_config_from`.)"""
  config = job_config("tiny")
  if source == "checkpoint":
    checkpoints.save(tmp_path, SMALL, numpy_params(SMALL))
    config.model_source, config.checkpoint, config.data.name = "checkpoint", str(tmp_path), "random"
    config.data.filter_correct = False
  config.model.dtype = dtype
  planned = loading.model_config_of(config)
  model = loading.load_model(config)
  assert planned == model.config
  assert {leaf.dtype.name for leaf in jax.tree_util.tree_leaves(model.params)} == {
      dtype or "float32"}


def test_mesh_shape_takes_what_the_model_axis_leaves():
  config, count = job_config("tiny"), jax.device_count()
  assert runtime.mesh_shape(config) == (count, 1)
  config.mesh.model = 2 * count                     # a larger machine's mesh, for a dry run
  assert runtime.mesh_shape(config) == (1, 2 * count)
  with pytest.raises(ValueError, match=rf"\(data=1, model={2 * count}\) does not fit the "
                                       rf"{count} devices here"):
    runtime.make_mesh(runtime.mesh_shape(config))
  assert dict(runtime.make_mesh((count, 1)).shape) == {"data": count, "model": 1}


def test_bad_input_stops_before_anything_is_written(tmp_path):
  config = job_config("tiny")
  config.sweep.kind = "gaussian"
  with pytest.raises(ValueError, match="config.sweep.kind='gaussian': must be one of"):
    job.run(config, str(tmp_path / "a"))
  with pytest.raises(ValueError, match="--workdir=DIR is required"):
    job.run(job_config("tiny"), "")
  config = job_config("tiny")
  config.model.num_layers = 3
  with pytest.raises(ValueError, match=r"^the embedded model does not match config.model: "
                                       r"num_layers=3 \(the model has 8\)"):
    job.run(config, str(tmp_path / "b"))
  assert not list(tmp_path.iterdir())


def test_gather_reads_back_only_the_resumed_chunks(tmp_path, monkeypatch):
  """A chunk computed in this process is gathered from memory; only the chunks a run
  resumed are read from the store (here chunk 1 is computed again, 0 and 2 resumed)."""
  store = results_store.ResultStore(tmp_path)
  saved = [{"prompt_id": np.arange(2 * i, 2 * i + 2), "x": np.full((2, 3), i, np.float32)}
            for i in range(3)]
  for index, arrays in enumerate(saved):
    store.save_chunk(index, arrays)
  loads = []
  load_chunk = store.load_chunk
  monkeypatch.setattr(store, "load_chunk", lambda index: loads.append(index) or load_chunk(index))
  found = runtime.gather_chunks(store, {1: saved[1]}, 3)
  assert loads == [0, 2]
  np.testing.assert_array_equal(found["prompt_id"], np.arange(6))
  np.testing.assert_array_equal(found["x"][:, 0], [0, 0, 1, 1, 2, 2])
  assert runtime.gather_chunks(store, dict(enumerate(saved)), 3)["x"].shape == (6, 3)
  assert loads == [0, 2]                                   # all in memory: nothing read


def test_the_layer_job_keeps_its_chunks_in_memory(tmp_path, monkeypatch):
  """A fresh run reads no chunk back; a resumed one reads only the chunks it skipped."""
  loads = []
  load_chunk = results_store.ResultStore.load_chunk
  monkeypatch.setattr(results_store.ResultStore, "load_chunk",
                      lambda self, index: loads.append(index) or load_chunk(self, index))
  config = job_config("tiny")
  config.data.max_prompts, config.sweep.num_sources, config.sweep.chunk_size = 24, 2, 8
  config.sweep.dose_prompts, config.report.figures = 0, False
  first = job.run(config, str(tmp_path))
  assert loads == [] and first["timing"]["chunks_resumed"] == 0
  num_chunks = first["timing"]["chunks_total"]
  (tmp_path / "chunks" / "chunk_00001.npz").unlink()
  again = job.run(config, str(tmp_path))
  assert loads == [i for i in range(num_chunks) if i != 1]
  assert again["timing"]["chunks_resumed"] == num_chunks - 1
  assert again["per_layer"] == first["per_layer"]


def test_kept_prompts_are_answered_correctly_in_order_of_length(monkeypatch):
  config = job_config("tiny")
  config.data.max_prompts = 24
  model = loading.load_model(config)
  prompts = loading.load_prompts(config, model)
  assert prompts.counts["total"] == 24 == len(prompts) + sum(prompts.counts["dropped"].values())
  lengths = prompts.lengths.tolist()
  assert lengths == sorted(lengths)
  assert prompts.tokens.shape == (len(prompts), 8 * -(-max(lengths) // 8))   # padded once
  assert [model.tokenizer.encode(text) for text in prompts.texts] == [
      row[:n].tolist() for row, n in zip(prompts.tokens, lengths)]
  answers = predict.final_argmax(model.params, model.config, prompts.tokens, prompts.lengths)
  labels = [data.first_label_token(model.tokenizer, label, label_prefix="")
            for label in prompts.labels]
  np.testing.assert_array_equal(answers, labels)
  # The filter's scored token and components are the sweep's: its clean pass, kept rows only.
  token, components = sweep.clean_pass(model.params, model.config, prompts.tokens,
                                       prompts.lengths, batch=5)
  np.testing.assert_array_equal(token, labels)
  np.testing.assert_allclose(prompts.components, components, rtol=1e-4, atol=1e-5)
  # ... and the sweep's table: the engine runs no clean pass of its own; the mean is the kept set's.
  monkeypatch.setattr(sweep, "clean_pass", lambda *args: pytest.fail("a second clean pass"))
  layout = chunks.make_layout(len(prompts), 8)
  sources = sweep.draw_sources(len(prompts), 2)
  resample = chunks.prepare(model, prompts, sources, layout, SweepOptions())
  np.testing.assert_array_equal(resample.table, prompts.components)
  mean = chunks.prepare(model, prompts, None, layout, SweepOptions(kind="mean"))
  np.testing.assert_allclose(mean.table, prompts.components.astype(np.float32).mean(0),
                             rtol=1e-5, atol=1e-7)


def test_noise_ablation_noises_the_subject_tokens_where_marked():
  from hydra_jax.data import batching
  from hydra_jax.job import chunks
  from hydra_jax.train import embedded
  bundle = embedded.load()
  record = bundle.records[0]                      # "<subject>, <filler>, <relation phrase>"
  tokens = bundle.tokenizer.encode(record["prompt"])
  start, end = batching.subject_span(bundle.tokenizer, record["prompt"], record["subject"])
  assert 0 <= start < end < len(tokens)
  assert bundle.tokenizer.decode(tokens[start:end]).strip() == record["subject"]
  assert batching.subject_span(bundle.tokenizer, record["prompt"], "no such name") == (0, 0)
  mask = chunks.noise_positions([(start, end), (0, 0)], np.array([len(tokens), 3]), len(tokens))
  np.testing.assert_array_equal(mask[0], (np.arange(len(tokens)) >= start) & (np.arange(len(tokens)) < end))
  np.testing.assert_array_equal(mask[1], np.arange(len(tokens)) < 3)   # no subject: every token
