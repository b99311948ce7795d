"""Training small models with optax: next-token cross-entropy, AdamW, warmup + cosine.

    train(config, batches, steps=..., ...)  -> (params, History)
    pack_rows(rows, seq_len)                -> token rows concatenated up to seq_len
    batch_stream(rows, batch_size, seq_len) -> endless seeded (tokens, lengths) batches

`batches` yields (tokens int32 [B, T], lengths int32 [B]): right-padded token rows and
the number of real tokens in each. The loss is the mean next-token cross-entropy over
real positions: position t predicts token t + 1 for t < length - 1; padding never
counts. The optimizer is global-norm gradient clipping followed by AdamW whose
learning rate rises linearly for `warmup_steps` and then follows a cosine to zero at
`steps` (betas 0.9, 0.95). Weight decay applies to weight matrices and embedding
tables only, never to norm scales or biases (the relative-position u and v included).
Dropout is on at `config.dropout_rate` (the model's `forward(..., rng=key)`), with a
fresh key per step folded in from `seed`; a rate of 0 trains without dropout, like
the paper's Chinchilla.

Sublayer stochastic depth (LayerDrop, `sublayer_drop=p`): in every training step each
example drops each layer's attention output a^l and, independently, its MLP output m^l
with probability p, at every position. It is built from the intervention pytree, not
inside the model: a zero ablation at the attn_out and mlp_out sites whose weights are
Bernoulli(p) draws per example and layer (`sublayer_drop_intervention`). Survivors are
not rescaled (as in LayerDrop): at evaluation every sublayer is on.

    python -m hydra_jax.train --build_embedded [--out hydra_jax/assets/tiny]

rebuilds the embedded default model (world, corpus, tokenizer, model, evaluation,
assets) from `train.embedded.RECIPE`; see that module.

Shapes: B rows per batch, T positions, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Iterable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hydra_jax.data.batching import right_pad
from hydra_jax.model import interventions
from hydra_jax.model import transformer as model_lib
from hydra_jax.model.config import ModelConfig


@dataclasses.dataclass
class History:
  """Per-step loss, learning rate and gradient norm (before clipping); wall seconds."""
  losses: list[float] = dataclasses.field(default_factory=list)
  learning_rates: list[float] = dataclasses.field(default_factory=list)
  grad_norms: list[float] = dataclasses.field(default_factory=list)
  seconds: float = 0.0


def learning_rate_schedule(learning_rate: float, warmup_steps: int, steps: int):
  """Linear warmup from 0 to `learning_rate`, then cosine decay to 0 at `steps`."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps,
      decay_steps=max(steps, warmup_steps + 1), end_value=0.0)


# Weight decay applies to these (weight matrices and tables), never to norms or biases.
DECAYED = frozenset({"embeddings", "positions", "q", "k", "v", "o", "w_r", "w_in", "w_gate",
                     "w_out", "w"})


def make_optimizer(*, learning_rate: float, warmup_steps: int, steps: int,
                   weight_decay: float, clip_norm: Optional[float]):
  """Global-norm clipping (unless None) then AdamW on the warmup + cosine schedule."""
  mask = lambda params: {module: {name: name in DECAYED for name in leaves}
                         for module, leaves in params.items()}
  adamw = optax.adamw(learning_rate_schedule(learning_rate, warmup_steps, steps),
                      b1=0.9, b2=0.95, weight_decay=weight_decay, mask=mask)
  return optax.chain(optax.clip_by_global_norm(clip_norm), adamw) if clip_norm else adamw


def sublayer_drop_intervention(key: jax.Array, rate: float, batch: int, num_layers: int,
                               seq_len: int) -> interventions.Intervention:
  """Zero ablation of a^l and m^l where Bernoulli(rate) draws [B, L] say so, at all positions.

  The attention and MLP draws are independent; the weights are [B, L, T] (0 or 1).
  """
  attn_key, mlp_key = jax.random.split(key)
  def site(site_key):
    dropped = jax.random.bernoulli(site_key, rate, (batch, num_layers))             # [B, L]
    weight = jnp.broadcast_to(dropped[:, :, None], (batch, num_layers, seq_len))    # [B, L, T]
    return interventions.Site(weight=weight.astype(jnp.float32), value=jnp.zeros((), jnp.float32))
  return interventions.Intervention(attn_out=site(attn_key), mlp_out=site(mlp_key))


def next_token_loss(params, config: ModelConfig, tokens, lengths, rng=None,
                    sublayer_drop: float = 0.0) -> jax.Array:
  """Mean cross-entropy of token t + 1 given tokens <= t over real positions (a scalar).

  With `rng`, dropout is on and, when `sublayer_drop` > 0, sublayers are dropped too.
  """
  intervention = None
  if rng is not None and sublayer_drop > 0:
    rng, drop_key = jax.random.split(rng)
    intervention = sublayer_drop_intervention(drop_key, sublayer_drop, *tokens.shape[:1],
                                              config.num_layers, tokens.shape[1])
  logits = model_lib.forward(params, config, tokens, intervention, rng=rng).logits[:, :-1]  # [B, T-1, V]
  targets = tokens[:, 1:]                                                        # [B, T-1]
  real = jnp.arange(targets.shape[1])[None, :] < (lengths[:, None] - 1)          # [B, T-1]
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)     # [B, T-1]
  return jnp.sum(losses * real) / jnp.maximum(jnp.sum(real), 1)


def _check(steps, learning_rate, warmup_steps, weight_decay, clip_norm, log_every,
           sublayer_drop):
  if not 0.0 <= sublayer_drop < 1.0:
    raise ValueError(f"sublayer_drop must be in [0, 1), got {sublayer_drop!r}")
  if not isinstance(steps, int) or steps < 1:
    raise ValueError(f"steps must be a positive integer, got {steps!r}")
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
  if not isinstance(warmup_steps, int) or not 0 <= warmup_steps < steps:
    raise ValueError(f"warmup_steps must be an integer in [0, steps={steps}), got {warmup_steps!r}")
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
  if clip_norm is not None and not clip_norm > 0:
    raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}")
  if not isinstance(log_every, int) or log_every < 0:
    raise ValueError(f"log_every must be a non-negative integer, got {log_every!r}")


@functools.lru_cache(maxsize=8)
def _compiled_step(config: ModelConfig, hyper: tuple, sublayer_drop: float):
  """(optimizer, jitted step) for one configuration: repeated runs reuse the compile."""
  optimizer = make_optimizer(**dict(hyper))

  @jax.jit
  def step_fn(params, opt_state, tokens, lengths, dropout_key, step):
    rng = jax.random.fold_in(dropout_key, step)                          # fresh dropout mask
    loss, grads = jax.value_and_grad(next_token_loss)(params, config, tokens, lengths, rng,
                                                      sublayer_drop)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, optax.tree.norm(grads)

  return optimizer, step_fn


def train(config: ModelConfig, batches: Iterable, *, steps: int, learning_rate: float = 1e-3,
          warmup_steps: int = 100, weight_decay: float = 0.01, clip_norm: Optional[float] = 1.0,
          seed: int = 0, log_every: int = 100, params=None, sublayer_drop: float = 0.0,
          log: Callable[[str], None] = print):
  """Trains `config` for `steps` batches from `batches`; returns (params, History).

  Starts from `init_params(config, seed)` unless `params` is given. Every `log_every`
  steps (0: never) `log` gets a line with the step, mean loss and wall time.
  `sublayer_drop` is the stochastic-depth rate of attention and MLP sublayers.
  """
  _check(steps, learning_rate, warmup_steps, weight_decay, clip_norm, log_every, sublayer_drop)
  hyper = dict(learning_rate=learning_rate, warmup_steps=warmup_steps, steps=steps,
               weight_decay=weight_decay, clip_norm=clip_norm)
  optimizer, step_fn = _compiled_step(config, tuple(sorted(hyper.items())), float(sublayer_drop))
  dropout_key = jax.random.PRNGKey(seed + 1)
  schedule = learning_rate_schedule(learning_rate, warmup_steps, steps)
  params = model_lib.init_params(config, seed) if params is None else params
  params = jax.tree_util.tree_map(jnp.asarray, params)
  opt_state = optimizer.init(params)

  history, start, iterator = History(), time.perf_counter(), iter(batches)
  for step in range(steps):
    try:
      tokens, lengths = next(iterator)
    except StopIteration:
      raise ValueError(f"batches ran out after {step} of {steps} steps") from None
    if step == 0:
      model_lib.check_tokens(config, tokens)
    params, opt_state, loss, grad_norm = step_fn(
        params, opt_state, jnp.asarray(tokens, jnp.int32), jnp.asarray(lengths, jnp.int32),
        dropout_key, step)
    history.losses.append(float(loss))
    history.grad_norms.append(float(grad_norm))
    history.learning_rates.append(float(schedule(step)))
    if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
      recent = np.mean(history.losses[-log_every:])
      log(f"step {step + 1}/{steps}  loss {recent:.4f}  lr {history.learning_rates[-1]:.2e}  "
          f"{time.perf_counter() - start:.0f}s")
  history.seconds = time.perf_counter() - start
  return params, history


def pack_rows(rows: Sequence[Sequence[int]], seq_len: int) -> list[list[int]]:
  """Concatenates consecutive token rows while they fit in `seq_len` (fewer pad tokens).

  Each packed row starts at the start of an input row (with its BOS); an input row
  longer than `seq_len` is cut to `seq_len` and stands alone.
  """
  packed: list[list[int]] = []
  current: list[int] = []
  for row in rows:
    row = list(row)[:seq_len]
    if current and len(current) + len(row) > seq_len:
      packed.append(current)
      current = []
    current = current + row
  if current:
    packed.append(current)
  return packed


def batch_stream(rows: Sequence[Sequence[int]], *, batch_size: int, seq_len: int,
                 seed: int = 0, pad_id: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Endless shuffled batches of `rows` (token lists), cut to `seq_len`, right-padded.

  Yields (tokens int32 [batch_size, seq_len], lengths int32 [batch_size]); each epoch
  is a fresh permutation from `seed`, so the stream is reproducible.
  """
  if len(rows) < batch_size or batch_size < 1 or seq_len < 2:
    raise ValueError(f"need batch_size >= 1, at least batch_size={batch_size} rows and "
                     f"seq_len >= 2; got {len(rows)} rows, seq_len={seq_len}")
  rng = np.random.RandomState(seed)
  while True:
    order = rng.permutation(len(rows))
    for start in range(0, len(order) - batch_size + 1, batch_size):
      batch = [list(rows[index])[:seq_len] for index in order[start:start + batch_size]]
      yield right_pad(batch, seq_len, pad_id)                             # [B, T], [B]
