"""The mediation check of one (ablated attention layer, responding attention layer) pair.

When ablating attention layer `a` at the final position makes a later attention layer
`r` raise its direct effect (the Hydra effect), the response must run through r's
input at the final position. Three runs with the intervention pytree test that:

  ablated   a^a replaced (zero by default, or a given value [B, D], e.g. a resample
            source's a^a) at the final position: response = DE(a^r) - DE_clean(a^r)
  held      the same, with r's heads held at their clean values at the final position:
            r's response vanishes (response_held = 0); total_effect_held - total_effect
            is r's share of the repair, counting what r's change does downstream
  fed       the clean run with only r's input residual z^{r-1} at the final position
            replaced by the ablated run's: reproduces the response (response_fed)
  direct    as fed, but r's input is the clean z^{r-1} plus only the change of a^a
            itself: the part of the response carried by the direct path a -> r
            (response_direct; the rest runs through the layers in between)

DE is scored as in the sweep (docs/method.md): the clean run's argmax token at the final
position, centred logit direction, final-norm scale sigma held at its clean value.
Total effects are changes of that token's centred logit, each run with its own sigma.

    mediation(params, config, tokens [B, T], lengths [B], ablated, responder, value=None)
      -> Mediation: arrays [B] per prompt
    strongest_pair(arrays, ablated=None) -> (ablated, responder) attention layers of a
                          sweep's results (the strongest responder to `ablated` when given)
    check_model(model_dir, results, ablated=None) -> the check on a saved model (its
                          checkpoint folder) at the strongest pair of its sweep's results,
                          each prompt's first resample source giving the ablated value
    check_run(run_dir, ablated=None) -> the same on a study run (runs/<run>)
    shares(found)       -> the direct path's and the in-between layers' shares of the mean
                          response (None where the mean response is within 3 standard
                          errors of 0), and TE held - TE

From the command line, on any model folder and its main job's results:

    python -m hydra_jax.study.mediation --model=hydra_jax/assets/tiny \
        --results=/tmp/hydra_tiny/results.npz --ablated=4

Shapes: B prompts, T positions, L layers, D d_model.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax import checkpoints, store
from hydra_jax.data import tokenizers
from hydra_jax.model import interventions
from hydra_jax.model import transformer as model_lib
from hydra_jax.model.config import ModelConfig
from hydra_jax.sweep import effects


@dataclasses.dataclass(frozen=True)
class Mediation:
  """Per prompt [B]: the responder's DE change in each run, and the total effects."""
  response: np.ndarray
  response_held: np.ndarray
  response_fed: np.ndarray
  response_direct: np.ndarray
  total_effect: np.ndarray
  total_effect_held: np.ndarray


def _final(array: jax.Array, lengths: jax.Array) -> jax.Array:
  """array [B, T, ...] at each prompt's final position -> [B, ...]."""
  index = (lengths - 1).reshape((-1,) + (1,) * (array.ndim - 1))
  return jnp.take_along_axis(array, index, axis=1)[:, 0]


def resid_pre(outputs: model_lib.Outputs) -> jax.Array:
  """z^{l-1} entering every layer l: [B, L, T, D] (embedding plus earlier sublayer outputs)."""
  sums = jnp.cumsum(outputs.attn_out + outputs.mlp_out, axis=1)              # [B, L, T, D]
  return outputs.embed[:, None] + jnp.concatenate([jnp.zeros_like(sums[:, :1]), sums[:, :-1]], 1)


class _Scorer:
  """DE of a^r and the scored token's centred logit, against the clean run."""

  def __init__(self, params, config, clean, lengths, responder):
    self.lengths, self.responder = lengths, responder
    self.token = effects.scored_token(_final(clean.logits, lengths))           # [B]
    self.direction, _ = effects.logit_direction(params, config, self.token)    # [B, D]
    self.sigma = _final(clean.final_scale, lengths)                             # [B]
    self.clean_de, self.clean_logit = self.de(clean), self.logit(clean)

  def de(self, outputs) -> jax.Array:
    attn = _final(outputs.attn_out[:, self.responder], self.lengths)           # [B, D]
    return effects.direct_effect(attn, self.sigma, self.direction)             # [B]

  def logit(self, outputs) -> jax.Array:
    final = model_lib.centre(_final(outputs.logits, self.lengths))              # [B, V]
    return jnp.take_along_axis(final, self.token[:, None], axis=1)[:, 0]       # [B]


def _runner(params, config: ModelConfig, tokens, lengths, ablated, responder, value):
  """run(ablate, heads, hold, resid, feed) -> Outputs: every run carries the same three
  sites (weights 0 where unused, which leaves the model bit-for-bit unchanged), so the
  forward pass compiles once for all of them."""
  (B, T), L = tokens.shape, config.num_layers
  where = dict(num_layers=L, seq_len=T, positions="final", lengths=lengths)
  no_heads = jnp.zeros((B, L, T, config.num_heads, config.head_size), jnp.float32)
  no_resid = jnp.zeros((B, L, T, config.d_model), jnp.float32)

  def run(ablate=0.0, heads=no_heads, hold=0.0, resid=no_resid, feed=0.0):
    intervention = interventions.Intervention(
        attn_out=interventions.replace("attn_out", value, layers=ablated, strength=ablate,
                                       **where).attn_out,
        head_out=interventions.patch("head_out", heads, layers=responder, strength=hold,
                                     **where).head_out,
        resid_pre=interventions.patch("resid_pre", resid, layers=responder, strength=feed,
                                      **where).resid_pre)
    return model_lib.forward(params, config, tokens, intervention)
  return run


def mediation(params, config: ModelConfig, tokens, lengths, ablated: int, responder: int,
              value: Optional[jax.Array] = None) -> Mediation:
  """The mediation check (module docstring) of attention layers ablated < responder."""
  if not 0 <= ablated < responder < config.num_layers:
    raise ValueError(f"need 0 <= ablated < responder < {config.num_layers} layers, got "
                     f"ablated={ablated}, responder={responder}")
  value = jnp.zeros((1, config.d_model), jnp.float32) if value is None else value
  found = _mediation(params, config, jnp.asarray(tokens, jnp.int32),
                     jnp.asarray(lengths, jnp.int32), ablated, responder,
                     jnp.asarray(value, jnp.float32))
  return Mediation(**{name: np.asarray(array) for name, array in found.items()})


@functools.partial(jax.jit, static_argnames=("config", "ablated", "responder"))
def _mediation(params, config, tokens, lengths, ablated, responder, value):
  """The five runs as one compiled program; value [B or 1, D]. Returns Mediation's fields."""
  every_layer = lambda x: jnp.broadcast_to(x[:, None], (x.shape[0], config.num_layers) + x.shape[1:])
  value = every_layer(value[:, None, :])                                        # [B|1, L, 1, D]
  run = _runner(params, config, tokens, lengths, ablated, responder, value)
  clean = run()
  scorer = _Scorer(params, config, clean, lengths, responder)
  ablated_run = run(ablate=1.0)
  held_run = run(ablate=1.0, heads=clean.head_out, hold=1.0)
  change = ablated_run.attn_out[:, ablated] - clean.attn_out[:, ablated]        # [B, T, D]
  direct = every_layer(resid_pre(clean)[:, responder] + change)                 # [B, L, T, D]
  dde = lambda outputs: scorer.de(outputs) - scorer.clean_de
  te = lambda outputs: scorer.logit(outputs) - scorer.clean_logit
  return dict(response=dde(ablated_run), response_held=dde(held_run),
              response_fed=dde(run(resid=resid_pre(ablated_run), feed=1.0)),
              response_direct=dde(run(resid=direct, feed=1.0)),
              total_effect=te(ablated_run), total_effect_held=te(held_run))


def strongest_pair(arrays, ablated: Optional[int] = None) -> tuple[int, int]:
  """(ablated, responder): the attention pair with the largest mean response dDE [C, C];
  with `ablated` given, that attention layer and its strongest later responder."""
  response = np.asarray(arrays["response"]).mean(0)[0::2, 0::2]                  # [L, L]
  later = np.triu(np.ones_like(response, bool), k=1)                            # responder > ablated
  if ablated is not None:
    later &= (np.arange(len(response)) == ablated)[:, None]
  if not later.any():
    raise ValueError("a mediation check needs an attention layer after the ablated one")
  ablated, responder = np.unravel_index(np.argmax(np.where(later, response, -np.inf)),
                                        response.shape)
  return int(ablated), int(responder)


def _padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
  tokens = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)             # [B, T]
  for b, row in enumerate(rows):
    tokens[b, :len(row)] = row
  return tokens, np.array([len(r) for r in rows], np.int32)                        # [B]


def shares(found: Mediation) -> dict:
  """The direct path's and the in-between layers' shares of the mean response (None where
  the mean response is within 3 standard errors of 0: too small to divide by), and of its
  variation over prompts: the least-squares slope of the direct path's part on the whole
  response (`direct_slope`; the rest, 1 - it, runs through the layers in between)."""
  response = np.asarray(found.response, np.float64)
  direct_part = np.asarray(found.response_direct, np.float64)
  error = response.std(ddof=1) / np.sqrt(len(response)) if len(response) > 1 else np.inf
  spread = response.var()
  slope = float(np.mean((response - response.mean()) * (direct_part - direct_part.mean()))
                / spread) if spread > 0 else None
  found_shares = dict(direct=None, between=None, direct_slope=slope,
                      between_slope=None if slope is None else 1.0 - slope)
  if abs(response.mean()) > 3 * error:
    found_shares["direct"] = float(direct_part.mean() / response.mean())
    found_shares["between"] = 1.0 - found_shares["direct"]
  return found_shares


def check_model(model_dir, results, max_prompts: int = 256, ablated: Optional[int] = None) -> dict:
  """The mediation check of a model folder at the strongest pair of its sweep (`results`:
  the main job's results.npz), or of attention layer `ablated` when given."""
  config, params = checkpoints.load(model_dir)
  tokenizer, arrays = tokenizers.load(model_dir), store.load_npz(str(results))
  ablated, responder = strongest_pair(arrays, ablated)
  texts = [str(t) for t in arrays["prompt"]]
  chosen = range(min(max_prompts, len(texts)))
  tokens, lengths = _padded([list(tokenizer.encode(texts[i])) for i in chosen])
  value = None
  if "sources" in arrays:       # each prompt's first source: its clean a^ablated, final position
    source_tokens, source_lengths = _padded([list(tokenizer.encode(texts[arrays["sources"][i, 0]]))
                                             for i in chosen])
    source = model_lib.forward(params, config, source_tokens).attn_out[:, ablated]   # [B, T, D]
    value = _final(source, jnp.asarray(source_lengths))                             # [B, D]
  found = mediation(params, config, tokens, lengths, ablated, responder, value)
  means = {name: float(np.mean(v)) for name, v in dataclasses.asdict(found).items()}
  means["held_minus_total_effect"] = float(np.mean(found.total_effect_held - found.total_effect))
  return dict(ablated_attention_layer=ablated, responding_attention_layer=responder,
              num_prompts=len(chosen), shares=shares(found),
              **{f"mean_{k}": v for k, v in means.items()})


def check_run(run_dir, variant: str = "resample", max_prompts: int = 256,
              ablated: Optional[int] = None) -> dict:
  """The mediation check of a study run (runs/<run>) at its sweep's strongest pair (of
  attention layer `ablated` when given)."""
  return check_model(Path(run_dir) / "model", Path(run_dir) / variant / "results.npz",
                     max_prompts, ablated)


def _main() -> None:
  parser = argparse.ArgumentParser(description="The mediation check of a model folder.")
  parser.add_argument("--model", required=True, help="checkpoint folder (with its tokenizer)")
  parser.add_argument("--results", required=True, help="the main job's results.npz on it")
  parser.add_argument("--ablated", type=int, default=None, help="attention layer to ablate")
  parser.add_argument("--max_prompts", type=int, default=256)
  args = parser.parse_args()
  print(json.dumps(check_model(args.model, args.results, args.max_prompts, args.ablated), indent=1))


if __name__ == "__main__":
  _main()
