"""The per-head self-repair sweep (hydra_jax.sweep.heads) against hand-built interventions.

- Every measure of a few (layer, head, source) cells equals the same ablation built by
  hand as a full-model `head_out` intervention through `forward` (no layer skipping), for
  a sequential-block (Chinchilla) and a parallel-block LayerNorm (Pythia-style) model.
- With the final sigma frozen, the split adds up: heads + MLPs = TE - direct change.
- Sources, and bad inputs (one-line ValueErrors).
- Parity of one head ablation's TE with a `transformers` forward hook (GPT-2, Llama and
  Gemma 3).
- Gemma 3 (post-norms, sliding / global layers with their own rotary bases): the same hand-
  built check, with a head's contribution read through its layer's attention post-norm at
  the clean sigma; at clean the heads' contributions add up to attn_out and their DEs to
  the layer's attention DE; the heads job runs on a random Gemma-3-shaped model.
"""

import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.sweep import heads as heads_lib
from tests.conftest import TINY_VARIANTS, random_tokens, tiny_config

TOL = 2e-5
EPS32 = float(np.finfo(np.float32).eps)
# A Gemma-3-shaped variant: qk-norm, post-norms, sliding (window 3) / global layers.
GEMMA3 = dict(TINY_VARIANTS["gemma"], qk_norm=True, post_norms=True, layer_windows=(3, 0, 3),
              layer_rope_bases=(100.0, 5000.0, 100.0))
VARIANTS = dict(TINY_VARIANTS, gemma3=GEMMA3)


def _frozen_post_norms(params, config, clean):
  """(y [B, T, D], layer) -> y through that layer's attention post-norm at the clean sigma
  (RMSNorm, from the clean heads' outputs), or y itself without post-norms."""
  if not config.post_norms:
    return lambda y, layer: y
  assert config.norm == "rms" and not config.attn_out_bias
  w_o = np.asarray(params["layers/attention"]["o"])                    # [L, H, E, D]
  pre = np.einsum("blthe,lhed->bltd", np.asarray(clean.head_out), w_o)
  sigma = np.sqrt((pre ** 2).mean(-1) + config.norm_eps)               # [B, L, T]
  gain = config.norm_scale_offset + np.asarray(params["layers/attn_post_norm"]["scale"])
  return lambda y, layer: y * gain[layer] / sigma[:, layer, :y.shape[1], None]


def _hand_built(params, config, tokens, layer, head, source_rows):
  """Every measure of one cell, from a full forward with a hand-made head_out intervention."""
  clean = hj.forward(params, config, tokens)
  B, T = tokens.shape
  weight = np.zeros((config.num_layers, T, config.num_heads), np.float32)
  weight[layer, :, head] = 1.0
  value = np.asarray(clean.head_out)[source_rows]                      # [B, L, T, H, E]
  ablated = hj.forward(params, config, tokens, hj.Intervention(head_out=hj.Site(weight, value)))
  token = tokens[:, 1:]
  pick = lambda x: np.take_along_axis(np.asarray(x)[:, :-1], token[..., None], -1)[..., 0]
  logsm = lambda logits: np.asarray(logits) - np.log(np.exp(np.asarray(logits)).sum(-1, keepdims=True))
  centred = lambda logits: np.asarray(hj.centre(logits))
  sigma = np.asarray(clean.final_scale)[:, :-1]                        # [B, P]
  direction, _ = hj.sweep.effects.logit_direction(params, config, token)
  direction = np.asarray(direction)                                    # [B, P, D]
  w_o = np.asarray(params["layers/attention"]["o"])                    # [L, H, E, D]
  post = _frozen_post_norms(params, config, clean)
  de = lambda z, l, h: np.einsum("bpd,bpd->bp", post(np.asarray(z)[:, l, :-1, h] @ w_o[l, h], l),
                                 direction) / sigma
  later = [(l, h) for l in range(layer + 1, config.num_layers) for h in range(config.num_heads)]
  heads = sum(de(ablated.head_out, l, h) - de(clean.head_out, l, h) for l, h in later)
  first_mlp = layer + int(config.parallel_block)
  dm = np.asarray(ablated.mlp_out - clean.mlp_out)[:, first_mlp:, :-1].sum(1)
  mlps = np.einsum("bpd,bpd->bp", dm, direction) / sigma
  te = pick(centred(ablated.logits)) - pick(centred(clean.logits))
  own = de(ablated.head_out, layer, head) - de(clean.head_out, layer, head)
  delta = post(np.einsum("bte,ed->btd", (value - np.asarray(clean.head_out))[:, layer, :, head],
                         w_o[layer, head]), layer)                     # [B, T, D] the head's own path
  direct_logits = (hj.unembed(params, config, clean.resid_final + delta, clean.final_scale)
                   + hj.final_bias_logits(params, config))
  return dict(total_effect=te, total_effect_logprob=pick(logsm(ablated.logits)) - pick(logsm(clean.logits)),
              direct_change_logprob=pick(logsm(direct_logits)) - pick(logsm(clean.logits)),
              direct_change=own, repair_heads=heads, repair_mlps=mlps,
              repair_norm=te - own - heads - mlps)


SOURCES = np.array([[2], [0], [3], [1]], np.int32)


def _setup(name):
  """(config, params, tokens [4, 8]) of one variant: every test uses these shapes (one compile).
  Norm gains are drawn away from 1 (they start there), so a gain used wrongly shows."""
  config = tiny_config(**VARIANTS[name])
  params, rng = hj.init_params(config, seed=1), np.random.default_rng(3)
  params = {module: {name: (value + 0.3 * rng.standard_normal(value.shape).astype(value.dtype)
                            if "norm" in module and name == "scale" else value)
                     for name, value in leaves.items()} for module, leaves in params.items()}
  return config, params, random_tokens(config, batch=4, length=8, seed=2)


def _sweep(name, sources=SOURCES, **options):
  config, params, tokens = _setup(name)
  return heads_lib.sweep(params, config, tokens, sources, cells_per_step=3, **options)


@pytest.mark.parametrize("name", ["chinchilla", "pythia", "gemma3"])
def test_cells_equal_hand_built_interventions_through_forward(name):
  config, params, tokens = _setup(name)
  sources = SOURCES
  result = _sweep(name)
  for layer, head in [(0, 1), (1, 3), (2, 0)]:
    expected = _hand_built(params, config, tokens, layer, head, sources[:, 0])
    assert np.abs(expected["total_effect"]).max() > 1e-2             # the ablation matters
    for measure, values in expected.items():
      np.testing.assert_allclose(np.asarray(getattr(result, measure))[:, layer, head], values,
                                 atol=TOL, rtol=0, err_msg=f"{measure} at ({layer}, {head})")
  assert np.abs(np.asarray(result.repair_heads)[:, -1]).max() == 0    # no later heads: exactly 0


def test_sources_are_averaged():
  other = np.array([[1], [3], [0], [2]], np.int32)
  both = _sweep("chinchilla", np.concatenate([SOURCES, other], axis=1))
  one = [_sweep("chinchilla"), _sweep("chinchilla", other)]
  for measure in heads_lib.MEASURES + ("response",):
    mean = (np.asarray(getattr(one[0], measure)) + np.asarray(getattr(one[1], measure))) / 2
    np.testing.assert_allclose(np.asarray(getattr(both, measure)), mean, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["chinchilla", "pythia"])
def test_split_adds_up_with_the_final_norm_frozen(name):
  frozen, free = _sweep(name, freeze_final_norm=True), _sweep(name)
  repair = np.asarray(frozen.self_repair)
  assert np.abs(repair).max() > 1e-2
  np.testing.assert_allclose(np.asarray(frozen.repair_heads + frozen.repair_mlps), repair,
                             atol=TOL, rtol=0)
  assert np.abs(np.asarray(frozen.repair_norm)).max() < TOL
  assert np.abs(np.asarray(free.repair_norm)).max() > 1e-3            # the free sigma moves
  np.testing.assert_allclose(np.asarray(free.direct_change), np.asarray(frozen.direct_change))
  response = np.asarray(frozen.response).mean(0)                      # [L, H, L, H]
  np.testing.assert_allclose(response.sum((-2, -1)), np.asarray(frozen.repair_heads).mean((0, -1)),
                             atol=TOL, rtol=0)


def test_gemma3_head_split_adds_up_through_the_frozen_post_norm():
  """At clean, sum_h head_contribution = attn_out (float32 rounding of a sum of H terms), and
  the heads' DEs add up to the layer's attention DE; the post-norms' sigmas are not frozen in
  the ablated runs, so the rest (repair_norm) stays with the final sigma frozen."""
  config, params, tokens = _setup("gemma3")
  clean = hj.forward(params, config, tokens)
  post = heads_lib.post_sigma(params, config, clean.head_out)         # [B, L, T]
  attn = np.asarray(clean.attn_out)                                   # [B, L, T, D]
  bound = 8 * config.num_heads * EPS32 * np.abs(attn).max()
  for layer in range(config.num_layers):
    parts = [heads_lib.head_contribution(params, config, layer, h, clean.head_out[:, layer, :, h],
                                         post[:, layer]) for h in range(config.num_heads)]
    np.testing.assert_allclose(np.asarray(sum(parts)), attn[:, layer], atol=bound, rtol=0)
    assert np.abs(np.asarray(parts[0])).max() > 0.1 * np.abs(attn[:, layer]).max()
  result = _sweep("gemma3", freeze_final_norm=True)
  direction, _ = hj.sweep.effects.logit_direction(params, config, tokens[:, 1:])
  layer_de = np.einsum("bltd,btd->blt", attn[:, :, :-1], np.asarray(direction)) / np.asarray(
      clean.final_scale)[:, None, :-1]
  np.testing.assert_allclose(np.asarray(result.direct_effect).sum(2), layer_de,
                             atol=64 * EPS32 * np.abs(layer_de).max(), rtol=0)
  assert np.abs(np.asarray(result.repair_norm)).max() > 1e-3          # the post-norms' sigmas


def test_draw_sources_and_bad_inputs():
  sources = heads_lib.draw_sources(5, 3, seed=1)
  assert sources.shape == (5, 3)
  for row, picks in enumerate(sources):
    assert row not in picks and len(set(picks)) == 3
  config = tiny_config()
  params = hj.init_params(config)
  tokens = random_tokens(config, batch=3, length=5)
  with pytest.raises(ValueError, match="num_sources=3"):
    heads_lib.draw_sources(3, 3, seed=0)
  with pytest.raises(ValueError, match="sources must index"):
    heads_lib.sweep(params, config, tokens, np.array([[1], [2], [3]]))
  with pytest.raises(ValueError, match="sources must be"):
    heads_lib.sweep(params, config, tokens, np.array([1, 2, 0]))
  with pytest.raises(ValueError, match="at least 2 tokens"):
    heads_lib.sweep(params, config, tokens[:, :1], np.array([[1], [2], [0]]))
  with pytest.raises(ValueError, match="cells_per_step"):
    heads_lib.sweep(params, config, tokens, np.array([[1], [2], [0]]), cells_per_step=0)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
def test_one_head_total_effect_matches_a_transformers_hook(arch, tmp_path):
  import torch
  from hydra_jax.checkpoints import load_hf
  from tests import hf_fixtures
  reference = hf_fixtures.build(arch, tmp_path, seed=4)
  config, params = load_hf(tmp_path)
  tokens = np.random.default_rng(6).integers(0, hf_fixtures.VOCAB, (3, 10)).astype(np.int32)
  sources = np.array([[1], [2], [0]], np.int32)
  result = heads_lib.sweep(params, config, tokens, sources, cells_per_step=8)
  layer, head, width = 0, 1, config.head_size
  z = hf_fixtures.head_outputs(reference, arch, tokens)               # [B, L, T, H E]
  value = z[sources[:, 0], layer][..., head * width:(head + 1) * width]
  with torch.no_grad():
    clean = hf_fixtures.next_token_scores(reference(torch.as_tensor(tokens).long()).logits, tokens)
  ablated = hf_fixtures.next_token_scores(
      hf_fixtures.ablate_head(reference, arch, tokens, layer, head, value), tokens)
  te, te_logprob = ablated[0] - clean[0], ablated[1] - clean[1]
  assert np.abs(te).max() > 0.1
  np.testing.assert_allclose(np.asarray(result.total_effect)[:, layer, head], te, atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(result.total_effect_logprob)[:, layer, head], te_logprob,
                             atol=1e-4, rtol=0)


# The job ---------------------------------------------------------------------------------------


def _job_config(**heads):
  from configs import tiny
  config = tiny.get_config()
  config.sweep.protocol = "heads"
  config.heads.update(dict(num_sequences=4, batch_size=4, seq_len=8, num_sources=2,
                           cells_per_step=8, top_k=3), **heads)
  return config


def test_heads_job_on_a_text_file_writes_its_report(tmp_path):
  import json
  from hydra_jax.job import run as job
  text = tmp_path / "text.txt"
  text.write_text("Davo Kesilurn was born in the city of Lisbon.\n\n"
                  "The favourite sport of Mira Tolvane is tennis, it is said.\n" * 3)
  summary = job.run(_job_config(text_file=str(text)), str(tmp_path / "run"))
  assert summary["num_sequences"] == 4 and summary["positions"] == 7
  assert (tmp_path / "run" / "report.md").read_text().startswith("# Self-repair per attention head")
  for name in ("heatmaps", "de_vs_te", "split", "fractions"):
    assert (tmp_path / "run" / f"heads_{name}.png").stat().st_size > 1000
  stored = json.loads((tmp_path / "run" / "summary.json").read_text())
  means = np.array(stored["per_head"]["self_repair"])                  # [L, H]
  split = sum(np.array(stored["per_head"][name]) for name in ("repair_heads", "repair_mlps", "repair_norm"))
  np.testing.assert_allclose(split, means, atol=1e-5)
  assert summary["top_heads"][0]["self_repair"] == pytest.approx(means.max(), abs=1e-6)


def test_heads_job_runs_on_a_random_gemma3_model(tmp_path):
  from hydra_jax.job import run as job
  from hydra_jax.job import config as run_config
  from hydra_jax.train import embedded
  config = _job_config(num_sequences=4, seq_len=8)
  config.model_source, config.tokenizer = "random", str(embedded.ASSET_DIR / "tokenizer.model")
  config.model = run_config.model_section(**tiny_config(**GEMMA3, vocab_size=512).to_dict())
  summary = job.run(config, str(tmp_path / "run"))
  assert summary["num_sequences"] == 4 and summary["positions"] == 7
  assert np.isfinite(np.array(summary["per_head"]["self_repair"])).all()
  assert "attention post-norm at the clean run's scale" in (tmp_path / "run" / "report.md").read_text()


def test_heads_dry_run_prints_its_plan_and_writes_nothing(tmp_path, monkeypatch):
  from hydra_jax.job import loading
  from hydra_jax.job import run as job
  lines = []
  monkeypatch.setattr(job, "say", lines.append)
  monkeypatch.setattr(loading, "load_model", lambda *args: pytest.fail("a dry run loads no model"))
  config = _job_config()
  config.dry_run = True
  assert job.run(config, str(tmp_path / "run")) is None
  assert not (tmp_path / "run").exists()
  assert lines[-1].splitlines()[:2] == [
      "plan for tiny (heads):", "  sweep               4 sequences of 8 tokens in 1 batches of 4 x "
      "32 heads x 2 sources = 256 ablated forwards"]


def test_heads_job_refuses_a_model_other_than_config_model(tmp_path):
  from hydra_jax.job import run as job
  config = _job_config()
  config.model.num_layers = 3
  with pytest.raises(ValueError, match=r"^the embedded model does not match config.model: "
                                       r"num_layers=3 \(the model has 8\)"):
    job.run(config, str(tmp_path / "run"))
  config = _job_config(seq_len=4096)
  with pytest.raises(ValueError, match="config.heads.seq_len=4096 exceeds the model's context"):
    job.run(config, str(tmp_path / "run"))
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("field, value, message", [
    ("num_sources", 4, "must be < heads.batch_size"), ("num_sequences", 6, "multiple of"),
    ("text_file", "/nonexistent.txt", "no such file"), ("seq_len", 1, "must be >= 2")])
def test_heads_config_errors(field, value, message):
  from hydra_jax.job import config as run_config
  with pytest.raises(ValueError, match=message):
    run_config.check(_job_config(**{field: value}))


def test_protocol_must_be_known():
  from hydra_jax.job import config as run_config
  config = _job_config()
  config.sweep.protocol = "neurons"
  with pytest.raises(ValueError, match="sweep.protocol"):
    run_config.check(config)


SHARDED = """
import json, jax, numpy as np
import hydra_jax as hj
from hydra_jax.sweep import heads
from tests.conftest import random_tokens, tiny_config
assert jax.device_count() == 4, jax.devices()
cfg = tiny_config(num_layers=2)
params = hj.init_params(cfg, seed=2)
tokens = random_tokens(cfg, batch=4, length=6, seed=1)
sources = heads.draw_sources(4, 2, seed=0)
auto = jax.sharding.AxisType.Auto
mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(auto, auto))
single = heads.sweep(params, cfg, tokens, sources)
sharded = heads.sweep(params, cfg, tokens, sources, mesh=mesh)
diff = max(float(np.abs(np.asarray(getattr(sharded, f)) - np.asarray(getattr(single, f))).max())
           for f in vars(single))
print("REPORT", json.dumps(dict(diff=diff, spec=list(sharded.total_effect.sharding.spec))))
try:
  heads.sweep(params, cfg, tokens[:3], sources[:3] % 3, mesh=mesh)
except ValueError as error:
  print("ERROR", error)
"""


def test_sequences_split_over_the_mesh_equal_one_device():
  import json
  import sys
  from tests.conftest import PROJECT_ROOT, run_on_devices, with_devices
  env = with_devices(4, JAX_PLATFORMS="cpu", PYTHONPATH=str(PROJECT_ROOT))
  done = run_on_devices([sys.executable, "-c", SHARDED], cwd=PROJECT_ROOT, env=env, timeout=600)
  assert done.returncode == 0, done.stderr[-4000:]
  report = json.loads(done.stdout.split("REPORT ")[1].splitlines()[0])
  assert report["diff"] < 1e-5 and report["spec"][0] == "data"
  assert "3 sequences do not split over the mesh's 2 data devices" in done.stdout
