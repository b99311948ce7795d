"""Self-repair per attention head at every position (Rushing & Nanda 2024), compiled.

For every head h of every layer l, resample-ablate its output before W_O (the `head_out`
site, "z") at *all* positions of a batch of B sequences: row b gets the same head's
output on sequence sources[b, k] of the batch (K sources). Each position t < T - 1 is
scored on the true next token i = tokens[b, t + 1]:

  total effect       TE   = ablated - clean, on the centred logit of i (the ablated run's
                            own final norm) and on log p(i)
  direct change      dDE  = the head's own change through W_O, the final norm's clean
                            scale sigma, the gain and the unembedding (centred logit);
                            on log p: log_softmax(clean logits + that change)[i] - clean
  self-repair        TE - dDE, split (centred logit) into
                       heads  sum of dDE of every head of a later layer
                       mlps   sum of dDE of every MLP the head feeds (layer >= l; > l in a
                              parallel block)
                       norm   the rest: what the change of the final sigma carries
                              (zero up to float32 rounding when sigma is frozen) and,
                              with post-norms, the change of the attention post-norms'
                              sigmas (see below)
  response           dDE of each later head, mean over positions and sources [L, H]

Post-norms (Gemma 2/3): a^l = norm(sum_h z_h W_O[h]) is not linear in any one head, so a
head's contribution (`head_contribution`) is read through the attention post-norm with its
sigma frozen at the clean run's, as the final norm's is for DE: centre(z_h W_O[h]) gain / sigma.
That map is linear: at clean the heads' contributions add up to a^l (less the biases, no
head's) and their DEs to the layer's attention DE. What an ablation does by moving a
post-norm's own sigma (the ablated layer's and later ones) is no head's: it falls in
repair_norm, which freeze_final_norm then leaves non-zero.

Work skipped: layers below l are unchanged, so the cells of layer l run only the layers
l..L-1 (a sliced copy of the weights, the clean residual z^{l-1} fed in through the
`resid_pre` site): about (L + 1) / 2L of the full passes. All cells are one jitted
program: per layer, `lax.map` over the H x K cells in vmapped groups of up to `cells_per_step`.

    sweep(params, config, tokens [B, T], sources [B, K]) -> HeadsResult

Shapes: B sequences, T positions (T-1 of them scored), K sources, L layers, H heads,
E head size, D d_model, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.model import blocks, norms
from hydra_jax.model import transformer as model
from hydra_jax.model.config import PER_LAYER, ModelConfig
from hydra_jax.model.interventions import Intervention, Site
from hydra_jax.sweep import effects, sharding

# Per-cell measures averaged over the K sources, each [B, L, H, T-1].
MEASURES = ("total_effect", "total_effect_logprob", "direct_change", "direct_change_logprob",
            "repair_heads", "repair_mlps", "repair_norm")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HeadsResult:
  """A heads sweep of B sequences; per-cell measures are means over the K sources."""
  token: jax.Array                  # [B, T-1] int32 the true next token
  clean_logit: jax.Array            # [B, T-1] its centred logit in the clean run
  clean_logprob: jax.Array          # [B, T-1]
  direct_effect: jax.Array          # [B, L, H, T-1] each head's clean DE (centred logit)
  total_effect: jax.Array           # [B, L, H, T-1]
  total_effect_logprob: jax.Array   # [B, L, H, T-1]
  direct_change: jax.Array          # [B, L, H, T-1]
  direct_change_logprob: jax.Array  # [B, L, H, T-1]
  repair_heads: jax.Array           # [B, L, H, T-1]
  repair_mlps: jax.Array            # [B, L, H, T-1]
  repair_norm: jax.Array            # [B, L, H, T-1]
  response: jax.Array               # [B, L, H, L, H] dDE of responding heads, mean over positions, K

  @property
  def self_repair(self) -> jax.Array:
    """TE - direct change, [B, L, H, T-1] (= heads + mlps + norm)."""
    return self.total_effect - self.direct_change


def check_inputs(config: ModelConfig, tokens, sources) -> None:
  """ValueError for inputs the sweep cannot use (before anything compiles)."""
  model.check_tokens(config, tokens)
  B, T = np.shape(tokens)
  if T < 2:
    raise ValueError(f"sequences need at least 2 tokens (a position and its next token), got {T}")
  sources = np.asarray(sources)
  if sources.ndim != 2 or sources.shape[0] != B:
    raise ValueError(f"sources must be [{B}, K] row indices, got shape {sources.shape}")
  if sources.size and (sources.min() < 0 or sources.max() >= B):
    raise ValueError(f"sources must index the batch's {B} rows, got range "
                     f"[{sources.min()}, {sources.max()}]")


def draw_sources(num_rows: int, num_sources: int, seed: int) -> np.ndarray:
  """[B, K] distinct other rows of the batch per row (seeded)."""
  if not 1 <= num_sources < num_rows:
    raise ValueError(f"num_sources={num_sources}: each of {num_rows} sequences draws that many "
                     f"*other* sequences of its batch, so it must be in 1..{num_rows - 1}")
  rng = np.random.default_rng(seed)
  draws = [rng.choice(num_rows - 1, num_sources, replace=False) for _ in range(num_rows)]
  rows = np.stack(draws)                                              # [B, K] in 0..B-2
  return (rows + (rows >= np.arange(num_rows)[:, None])).astype(np.int32)  # skip own row


# The clean run and the scoring directions ------------------------------------------------


def _scored(logits: jax.Array, token: jax.Array):
  """(centred logit, log-prob) of token [B, T-1] from logits [B, T, V] at positions < T - 1."""
  logits = logits[:, :-1]                                             # [B, T-1, V]
  pick = lambda x: jnp.take_along_axis(x, token[..., None], axis=-1)[..., 0]
  return pick(model.centre(logits)), pick(jax.nn.log_softmax(logits, axis=-1))


def post_sigma(params, config: ModelConfig, z: jax.Array) -> jax.Array:
  """The attention post-norms' sigma [B, L, T] float32 over sum_h z_h W_O[h] (+ o_bias), of
  the heads' outputs z [B, L, T, H, E]; ones without post_norms (no norm to freeze)."""
  if not config.post_norms:
    return jnp.ones(z.shape[:3], jnp.float32)
  attention = blocks.stacked_layers(params)["attention"]              # o [L, H, E, D]
  out = jnp.einsum("blthe,lhed->bltd", z.astype(jnp.float32), attention["o"].astype(jnp.float32))
  if config.attn_out_bias:
    out = out + attention["o_bias"].astype(jnp.float32)[:, None]
  return norms.norm_sigma(config, out)


def head_contribution(params, config: ModelConfig, layer: int, head, z, sigma) -> jax.Array:
  """What head (layer, head) with outputs z [B, T, E] adds to the residual, [B, T, D]:
  z W_O[layer, head], through the layer's attention post-norm with its sigma frozen at
  sigma [B, T] (post_norms; no bias: it belongs to no head). Linear in z."""
  layers = blocks.stacked_layers(params)
  y = z.astype(jnp.float32) @ layers["attention"]["o"][layer, head].astype(jnp.float32)
  if not config.post_norms:
    return y
  return norms.norm({"scale": layers["attn_post_norm"]["scale"][layer]}, config, y, sigma)[0]


def _head_readout(params, config: ModelConfig, direction, sigma, post) -> jax.Array:
  """g [B, T-1, L, H, E] with DE of head (l, h) = z[l, t, h] . g[t, l, h]: the centred logit's
  direction [B, T-1, D] over the final sigma [B, T-1], pulled back through the frozen
  post-norm (the transpose of `head_contribution`'s map; post sigma [B, L, T-1]) and W_O."""
  layers = blocks.stacked_layers(params)
  w = direction / sigma[..., None]                                    # [B, P, D]
  if config.post_norms:                # (y P) * gain / s . w = y . P (gain * w) / s
    w = norms.norm_gain(config, layers["attn_post_norm"])[:, None] * w[:, None]
    if norms.CENTRES_FEATURES[config.norm]:
      w = w - w.mean(-1, keepdims=True)
    w = jnp.moveaxis(w / post[..., None], 1, 2)                       # [B, P, L, D]
  else:
    w = jnp.broadcast_to(w[:, :, None], w.shape[:2] + (config.num_layers, w.shape[-1]))
  w_o = layers["attention"]["o"].astype(jnp.float32)                  # [L, H, E, D]
  return jnp.einsum("lhed,bpld->bplhe", w_o, w)


def _sliced(params, config: ModelConfig, layer: int):
  """Weights and config of layers layer..L-1 alone (the embedding is fed over, unused)."""
  stack = jax.tree_util.tree_map(lambda p: p[layer:], blocks.stacked_layers(params))
  sliced = {**params, **{blocks.LAYER_PREFIX + name: value for name, value in stack.items()}}
  per_layer = {field: getattr(config, field)[layer:] for field in PER_LAYER}   # () stays ()
  return sliced, dataclasses.replace(config, num_layers=config.num_layers - layer, **per_layer)


# One ablated cell --------------------------------------------------------------------------


def _cell(params, config, tokens, clean, layer, head, source_rows, frozen, direct_logprob):
  """Measures of ablating (layer, head) with sources source_rows [B]: dict of [B, T-1] + response."""
  L, H, T = config.num_layers, config.num_heads, tokens.shape[1]
  sliced, sub_config = _sliced(params, config, layer)
  Ls = L - layer
  first = (jnp.arange(Ls) == 0).astype(jnp.float32)                   # [Ls]
  z_src = clean["z"][source_rows, layer]                              # [B, T, H, E]
  head_mask = (jnp.arange(H) == head).astype(jnp.float32)             # [H]
  intervention = Intervention(
      resid_pre=Site(weight=jnp.broadcast_to(first[:, None], (Ls, T)),
                     value=jnp.broadcast_to(clean["resid_pre"][:, layer:layer + 1],
                                            (tokens.shape[0], Ls) + clean["resid_pre"].shape[2:])),
      head_out=Site(weight=first[:, None, None] * head_mask[None, None, :] * jnp.ones((1, T, 1)),
                    value=jnp.broadcast_to(z_src[:, None], (tokens.shape[0], Ls) + z_src.shape[1:])),
      final_scale=clean["sigma"] if frozen else None)
  out = model.forward(sliced, sub_config, tokens, intervention)
  logit, logprob = _scored(out.logits, clean["token"])
  g = clean["readout"][:, :, layer:]                                  # [B, T-1, Ls, H, E]
  dz = (out.head_out - clean["z"][:, layer:])[:, :, :-1]              # [B, Ls, T-1, H, E]
  head_dde = jnp.einsum("blphe,bplhe->bplh", dz, g)                   # [B, T-1, Ls, H]
  own = head_dde[:, :, 0] @ head_mask                                 # [B, T-1]
  dm = (out.mlp_out - clean["mlp_out"][:, layer:])[:, int(config.parallel_block):, :-1]
  mlps = jnp.einsum("blpd,bpd->bp", dm, clean["direction"]) / clean["sigma"][:, :-1]
  heads = head_dde[:, :, 1:].sum((-2, -1))                            # [B, T-1]
  te = logit - clean["logit"]
  response = jnp.concatenate([jnp.zeros((tokens.shape[0], layer + 1, H)),
                              head_dde[:, :, 1:].mean(1)], axis=1)    # [B, L, H]
  return dict(total_effect=te, total_effect_logprob=logprob - clean["logprob"],
              direct_change=own, repair_heads=heads, repair_mlps=mlps,
              direct_change_logprob=(_direct_logprob(params, config, clean, layer, head, z_src)
                                     if direct_logprob else jnp.full_like(te, jnp.nan)),
              repair_norm=te - own - heads - mlps, response=response)


def _direct_logprob(params, config, clean, layer, head, z_src) -> jax.Array:
  """Change of log p(token) [B, T-1] when only the head's direct path changes (clean sigma).

  An extra [T-1, D] x [D, V] unembedding per cell: about as costly as the final logits."""
  dz = (z_src - clean["z"][:, layer])[:, :-1, head]                   # [B, T-1, E]
  delta = head_contribution(params, config, layer, head, dz, clean["post_sigma"][:, layer, :-1])
  logits = clean["logits"] + model.unembed(params, config, delta, clean["sigma"][:, :-1])
  logprob = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), clean["token"][..., None], -1)
  return logprob[..., 0] - clean["logprob"]


# The clean run ---------------------------------------------------------------------------------


def clean_run(params, config: ModelConfig, tokens) -> dict[str, jax.Array]:
  """What every cell reads from the clean run of tokens [B, T] (traceable)."""
  out = model.forward(params, config, tokens)
  resid, pre = out.embed, []
  for layer in range(config.num_layers):        # as the layer stack adds: (x + a) + m
    pre.append(resid)
    resid = resid + out.attn_out[:, layer] + out.mlp_out[:, layer]
  token = jnp.asarray(tokens, jnp.int32)[:, 1:]                       # [B, T-1]
  sigma = out.final_scale                                             # [B, T]
  direction, _ = effects.logit_direction(params, config, token)       # [B, T-1, D]
  logit, logprob = _scored(out.logits, token)
  post = post_sigma(params, config, out.head_out)                     # [B, L, T]
  readout = _head_readout(params, config, direction, sigma[:, :-1], post[:, :, :-1])
  return dict(z=out.head_out, resid_pre=jnp.stack(pre, 1), mlp_out=out.mlp_out, sigma=sigma,
              token=token, logits=out.logits[:, :-1], logit=logit, logprob=logprob,
              direction=direction, post_sigma=post, readout=readout)


def _layer_cells(params, config, tokens, clean, layer, sources, options):
  """Every (head, source) cell of one layer, averaged over sources: name -> [H, B, ...]."""
  H, K = config.num_heads, sources.shape[1]
  heads, picks = jnp.repeat(jnp.arange(H), K), jnp.tile(jnp.arange(K), H)   # [H K] each
  frozen, direct_logprob, cells_per_step, _ = options
  cell = lambda hk: _cell(params, config, tokens, clean, layer, hk[0], sources[:, hk[1]], frozen,
                          direct_logprob)
  # vmapped groups of a divisor of H K cells: no remainder group to compile separately
  step = max(d for d in range(1, min(cells_per_step, H * K) + 1) if (H * K) % d == 0)
  out = jax.lax.map(cell, (heads, picks), batch_size=step)
  return {name: value.reshape((H, K) + value.shape[1:]).mean(1) for name, value in out.items()}


@functools.partial(jax.jit, static_argnames=("config", "options"))
def _sweep(params, config, tokens, sources, options):
  clean = clean_run(params, config, tokens)
  per_layer = [_layer_cells(params, config, tokens, clean, layer, sources, options)
               for layer in options[-1]]
  stacked = {name: jnp.moveaxis(jnp.stack([cells[name] for cells in per_layer]), 2, 0)
             for name in per_layer[0]}                                # [B, L, H, ...]
  direct = jnp.einsum("blphe,bplhe->blhp", clean["z"][:, :, :-1], clean["readout"])
  return HeadsResult(token=clean["token"], clean_logit=clean["logit"],
                     clean_logprob=clean["logprob"], direct_effect=direct, **stacked)


def sweep(params, config: ModelConfig, tokens, sources, *, freeze_final_norm: bool = False,
          direct_logprob: bool = True, cells_per_step: int = 16, layers=None,
          mesh=None) -> HeadsResult:
  """Ablate every head of every layer at all positions; see the module docstring.

  tokens int32 [B, T] (no padding: every position is scored on the next token);
  sources int32 [B, K] rows of the batch (`draw_sources`). freeze_final_norm holds the
  ablated runs' final sigma at the clean value (then repair_norm is float32 rounding).
  direct_logprob=False skips direct_change_logprob (NaN; it costs an unembedding per cell).
  layers: ablate only the heads of these layers (the results' L axis is then theirs;
  `direct_effect` keeps every layer). None: all.
  At most cells_per_step (head, source) cells run vmapped together (memory ~ this x one
  pass; the largest divisor of H x K that fits).
  With a mesh, sequences are split over its "data" axis (B must be a multiple of it).
  """
  check_inputs(config, tokens, sources)
  if cells_per_step < 1:
    raise ValueError(f"cells_per_step={cells_per_step} must be >= 1")
  sharding.validate_mesh(mesh)
  if np.shape(tokens)[0] % sharding.data_size(mesh):
    raise ValueError(f"{np.shape(tokens)[0]} sequences do not split over the mesh's "
                     f"{sharding.data_size(mesh)} data devices")
  params = sharding.place_params(params, mesh)
  tokens, sources = sharding.place_batch((jnp.asarray(tokens, jnp.int32),
                                          jnp.asarray(sources, jnp.int32)), mesh)
  return _sweep(params, config, tokens, sources, options(
      config, freeze_final_norm, direct_logprob, cells_per_step, layers))


def options(config: ModelConfig, freeze_final_norm=False, direct_logprob=True, cells_per_step=16,
            layers=None) -> tuple:
  """The static options of the compiled program (hashable), checked."""
  layers = tuple(range(config.num_layers)) if layers is None else tuple(int(l) for l in layers)
  if not layers or any(not 0 <= l < config.num_layers for l in layers):
    raise ValueError(f"layers={layers} must be a non-empty subset of 0..{config.num_layers - 1}")
  return bool(freeze_final_norm), bool(direct_logprob), int(cells_per_step), layers
