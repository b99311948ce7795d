"""Training: the loss over real positions, the schedule, packing, and a micro model that
learns (dropout on and off). About 25 s on 2 CPU cores, most of it two small compiles."""

import jax
import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.train import training as train

MICRO = dict(vocab_size=24, d_model=32, num_layers=2, num_heads=2, max_seq_len=12,
             norm="rms", position="relative")


def rule_rows(count, length, vocab, seed=0):
  """Rows following next = (3 * token + 1) mod (vocab - 1) + 1 from a random start."""
  rng = np.random.RandomState(seed)
  rows = []
  for _ in range(count):
    row = [int(rng.randint(1, vocab))]
    for _ in range(rng.randint(4, length + 1) - 1):
      row.append((3 * row[-1] + 1) % (vocab - 1) + 1)
    rows.append(row)
  return rows


def train_micro(dropout_rate, seed=0, sublayer_drop=0.0):
  config = hj.ModelConfig(**MICRO, dropout_rate=dropout_rate)
  batches = train.batch_stream(rule_rows(64, 12, 24), batch_size=16, seq_len=12, seed=0)
  return config, *train.train(config, batches, steps=40, learning_rate=1e-2, warmup_steps=5,
                              seed=seed, log_every=0, sublayer_drop=sublayer_drop)


@pytest.mark.parametrize("dropout_rate, sublayer_drop", [(0.0, 0.0), (0.1, 0.0), (0.0, 0.2)])
def test_micro_model_loss_falls(dropout_rate, sublayer_drop):
  config, params, history = train_micro(dropout_rate, sublayer_drop=sublayer_drop)
  assert len(history.losses) == 40 and history.seconds > 0
  assert np.mean(history.losses[-5:]) < 0.6 * history.losses[0]
  assert history.learning_rates[0] == 0.0 and max(history.learning_rates) <= 1e-2
  assert set(params) == set(hj.init_params(config))


def test_training_is_reproducible_under_a_seed():
  (_, first, history_a), (_, second, history_b) = train_micro(0.1), train_micro(0.1)
  assert history_a.losses == history_b.losses
  for a, b in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second)):
    np.testing.assert_array_equal(a, b)
  _, _, history_c = train_micro(0.1, seed=1)     # another seed: another initialisation
  assert history_c.losses[0] != history_a.losses[0]


def test_loss_counts_only_real_positions():
  config = hj.ModelConfig(**MICRO)
  params = hj.init_params(config, seed=0)
  tokens = np.array([[5, 6, 7, 0, 0], [5, 6, 7, 9, 9]], np.int32)
  lengths = np.array([3, 3], np.int32)
  both = float(train.next_token_loss(params, config, tokens, lengths))
  alone = float(train.next_token_loss(params, config, tokens[:1, :3], lengths[:1]))
  np.testing.assert_allclose(both, alone, rtol=1e-6)   # padding contents do not matter
  logits = np.asarray(hj.forward(params, config, tokens[:1, :3]).logits[0])   # [3, V]
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(alone, -(log_probs[0, 6] + log_probs[1, 7]) / 2, rtol=1e-5)


def test_schedule_warms_up_linearly_then_decays_to_zero():
  schedule = train.learning_rate_schedule(1.0, warmup_steps=10, steps=110)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(5)), 0.5, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(10)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(60)), 0.5, rtol=1e-5)   # cosine midpoint
  np.testing.assert_allclose(float(schedule(110)), 0.0, atol=1e-7)


def test_pack_rows_and_batch_stream():
  rows = [[2, 1, 1], [2, 3], [2, 4, 4, 4, 4], [2] + [5] * 9]
  assert train.pack_rows(rows, 6) == [[2, 1, 1, 2, 3], [2, 4, 4, 4, 4], [2, 5, 5, 5, 5, 5]]
  stream = train.batch_stream(rows, batch_size=2, seq_len=4, seed=0)
  batches = [next(stream) for _ in range(4)]
  for tokens, lengths in batches:
    assert tokens.shape == (2, 4) and tokens.dtype == np.int32
    for row, length in zip(tokens, lengths):
      assert (row[length:] == 0).all() and row[0] == 2
  again = train.batch_stream(rows, batch_size=2, seq_len=4, seed=0)
  for tokens, lengths in batches:
    other_tokens, other_lengths = next(again)
    np.testing.assert_array_equal(tokens, other_tokens)
    np.testing.assert_array_equal(lengths, other_lengths)


def test_bad_arguments_raise_value_errors_before_compiling():
  config = hj.ModelConfig(**MICRO)
  batches = train.batch_stream(rule_rows(8, 12, 24), batch_size=4, seq_len=12)
  with pytest.raises(ValueError, match="steps"):
    train.train(config, batches, steps=0)
  with pytest.raises(ValueError, match="warmup_steps"):
    train.train(config, batches, steps=5, warmup_steps=5)
  with pytest.raises(ValueError, match="learning_rate"):
    train.train(config, batches, steps=5, warmup_steps=1, learning_rate=0.0)
  with pytest.raises(ValueError, match="clip_norm"):
    train.train(config, batches, steps=5, warmup_steps=1, clip_norm=-1.0)
  with pytest.raises(ValueError, match="ran out"):
    train.train(config, iter([]), steps=2, warmup_steps=1)
  with pytest.raises(ValueError, match="batch_size"):
    next(train.batch_stream([[1, 2]], batch_size=2, seq_len=4))


def test_weight_decay_spares_norms_and_biases():
  config = hj.ModelConfig(**MICRO)
  params = hj.init_params(config, seed=0)
  optimizer = train.make_optimizer(learning_rate=0.5, warmup_steps=0, steps=10,
                                   weight_decay=0.1, clip_norm=1.0)
  zeros = jax.tree_util.tree_map(np.zeros_like, params)
  updates, _ = jax.jit(optimizer.update)(zeros, optimizer.init(params), params)
  for module, leaves in updates.items():
    for name, update in leaves.items():
      expected = -0.05 * params[module][name] if name in ("embeddings", "q", "k", "v", "o",
                                                         "w_r", "w_in", "w_out", "w") else 0.0
      np.testing.assert_allclose(update, expected, rtol=1e-6, err_msg=f"{module}/{name}")


def test_stochastic_depth_drops_sublayers_at_the_requested_rate():
  intervention = train.sublayer_drop_intervention(jax.random.PRNGKey(0), 0.15, 400, 8, 5)
  attn, mlp = np.asarray(intervention.attn_out.weight), np.asarray(intervention.mlp_out.weight)
  assert attn.shape == mlp.shape == (400, 8, 5) and set(np.unique(attn)) <= {0.0, 1.0}
  assert (attn == attn[:, :, :1]).all()                   # one draw per example and layer
  for weight in (attn, mlp):                              # 3,200 draws: sd of the rate 0.006
    assert abs(weight[:, :, 0].mean() - 0.15) < 0.02
  assert abs((attn[:, :, 0] * mlp[:, :, 0]).mean() - 0.15 ** 2) < 0.01   # independent draws
  assert float(np.asarray(intervention.attn_out.value)) == 0.0


def test_a_dropped_sublayer_adds_nothing_to_the_residual():
  config = hj.ModelConfig(**MICRO)
  params = hj.init_params(config, seed=0)
  tokens = np.array(rule_rows(6, 8, 24, seed=1)[0][:6] * 2, np.int32).reshape(2, 6)
  draw = lambda seed: train.sublayer_drop_intervention(jax.random.PRNGKey(seed), 0.5, 2, 2, 6)
  mixed = lambda i: all(0 < np.asarray(s.weight).mean() < 1 for s in (i.attn_out, i.mlp_out))
  intervention = next(draw(seed) for seed in range(100) if mixed(draw(seed)))
  out = hj.forward(params, config, tokens, intervention)
  clean = hj.forward(params, config, tokens)
  for site, weight in (("attn_out", intervention.attn_out.weight),
                       ("mlp_out", intervention.mlp_out.weight)):
    dropped = np.asarray(weight)[:, :, 0] == 1                                  # [B, L]
    assert dropped.any() and not dropped.all()
    assert (np.asarray(getattr(out, site))[dropped] == 0).all()
    assert (np.abs(np.asarray(getattr(clean, site))[dropped]) > 0).any()
  rebuilt = out.embed + np.asarray(out.attn_out + out.mlp_out).sum(1)           # z^L
  np.testing.assert_allclose(out.resid_final, rebuilt, atol=1e-5)


def test_stochastic_depth_changes_the_training_loss_only_when_on():
  config = hj.ModelConfig(**MICRO)
  params = hj.init_params(config, seed=0)
  tokens = np.array([rule_rows(4, 12, 24)[i][:4] for i in range(4)], np.int32)
  lengths = np.full((4,), 4, np.int32)
  key = jax.random.PRNGKey(0)
  plain = float(train.next_token_loss(params, config, tokens, lengths, key))
  assert float(train.next_token_loss(params, config, tokens, lengths, key, 0.0)) == plain
  assert float(train.next_token_loss(params, config, tokens, lengths, key, 0.5)) != plain
  assert float(train.next_token_loss(params, config, tokens, lengths, None, 0.5)) == plain
  with pytest.raises(ValueError, match="sublayer_drop"):
    train.train(config, iter([]), steps=2, warmup_steps=1, sublayer_drop=1.0)
