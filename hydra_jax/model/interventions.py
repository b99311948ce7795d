"""Interventions: *what* to replace in a forward pass, as data (a pytree), not callbacks.

At every site the model computes an activation `x` and then applies

    x <- x + w * (value - x)          w in [0, 1] per layer and position (and head)

so w = 0 leaves `x` bit-for-bit unchanged and w = 1 replaces it by `value`.

Sites (names as users of TransformerLens know them):
  resid_pre   z^{l-1}, the residual stream entering layer l           weight [L, T]     value [L, T, D]
  head_out    per-head attention output before W_O ("z")              weight [L, T, H]  value [L, T, H, E]
  attn_out    a^l, the attention output (after W_O and its bias)      weight [L, T]     value [L, T, D]
  mlp_out     m^l, the MLP output                                     weight [L, T]     value [L, T, D]
  final_scale a frozen final-norm scale sigma, replacing the computed  [T]
              one (docs/method.md: freezing sigma makes the logits linear in the components)

attn_out and mlp_out are what each sublayer adds to the residual stream: with a model's
post-sublayer norms (ModelConfig.post_norms, Gemma 3) they are taken after them, so
z^L = z^0 + sum of a^l and m^l holds and direct and total effects stay exact. head_out
is before W_O (and before any post-norm: there a head's change is not additive).

Every array may carry a leading batch axis B (one intervention per prompt); a value
may also use size 1 (or be a scalar) on any axis it does not vary over, e.g. a
resample value [B, L, 1, D] broadcast over positions. The T axis matches the tokens
the model is run on (T = 1 for the single-token decode of the incremental sweep).

Sweeping: `jax.vmap` over a leading axis of the *weights* while the values stay
shared (in_axes None) - see `Intervention.weight_axes()`. Values shared by all
ablations (the clean source activations) are then stored once, not per ablation.

Shapes (the package glossary, hydra_jax/__init__.py): B prompts, L layers, T positions
(Ts of a source prompt), H heads, E head size, D d_model; *B an optional batch axis.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

SITES = ("resid_pre", "head_out", "attn_out", "mlp_out")
Positions = Union[str, jax.Array, np.ndarray]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Site:
  """A replacement at one site: weight [*B, L, T(, H)] in [0, 1] and value [*B, L, T, (H, E | D)]."""
  weight: jax.Array
  value: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Intervention:
  """Replacements at any of the SITES plus an optional frozen final-norm scale [*B, T]."""
  resid_pre: Optional[Site] = None
  head_out: Optional[Site] = None
  attn_out: Optional[Site] = None
  mlp_out: Optional[Site] = None
  final_scale: Optional[jax.Array] = None

  def sites(self) -> dict[str, Site]:
    return {name: getattr(self, name) for name in SITES if getattr(self, name) is not None}

  def weight_axes(self, axis: int = 0) -> "Intervention":
    """vmap in_axes that sweep the weights over `axis` and share values and final_scale."""
    return Intervention(**{name: Site(weight=axis, value=None) for name in self.sites()},
                        final_scale=None)

  def with_final_scale(self, scale: jax.Array) -> "Intervention":
    return dataclasses.replace(self, final_scale=scale)


# Where: masks over layers and positions --------------------------------------------------


def layer_mask(num_layers: int, layers: Union[int, Sequence[int], None]) -> np.ndarray:
  """[L] float mask with ones at `layers` (None: every layer)."""
  if layers is None:
    return np.ones(num_layers, np.float32)
  layers = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
  for layer in layers:
    if not 0 <= layer < num_layers:
      raise ValueError(f"layer {layer} is outside 0..{num_layers - 1}")
  mask = np.zeros(num_layers, np.float32)
  mask[layers] = 1.0
  return mask


def position_mask(positions: Positions, seq_len: int, lengths=None) -> jax.Array:
  """[T] or [B, T] float mask: "final" (needs lengths [B]), "all", or a given mask [T] / [B, T]."""
  if isinstance(positions, str):
    if positions == "all":
      return jnp.ones((seq_len,), jnp.float32)
    if positions == "final":
      if lengths is None:
        raise ValueError('positions="final" needs `lengths` (number of real tokens per prompt)')
      lengths = jnp.asarray(lengths)
      return (jnp.arange(seq_len)[None, :] == lengths[:, None] - 1).astype(jnp.float32)
    raise ValueError(f'positions must be "final", "all" or a mask, got {positions!r}')
  mask = jnp.asarray(positions, jnp.float32)
  if mask.shape[-1] != seq_len:
    raise ValueError(f"position mask has {mask.shape[-1]} positions, tokens have {seq_len}")
  return mask


def _weight(num_layers, layers, positions, seq_len, lengths, strength) -> jax.Array:
  pos = position_mask(positions, seq_len, lengths)                  # [*B, T]
  lay = jnp.asarray(layer_mask(num_layers, layers))                 # [L]
  return strength * lay[:, None] * pos[..., None, :]                 # [*B, L, T]


def _check_site(site: str) -> None:
  if site not in SITES:
    raise ValueError(f"unknown site {site!r}; sites are {SITES}")


def replace(site: str, value, *, num_layers: int, seq_len: int, layers=None,
            positions: Positions = "final", lengths=None, strength: float = 1.0) -> Intervention:
  """Replace `site` by `value` at the given layers and positions (every constructor's core).

  Args:
    site: one of SITES ("resid_pre", "head_out", "attn_out", "mlp_out").
    value: the replacement, broadcastable to [*B, L, T, D] ([*B, L, T, H, E] for head_out).
    num_layers: L of the model.
    seq_len: T of the tokens the model will run on (1 for a single-token decode).
    layers: an int, a sequence of ints, or None (every layer).
    positions: "final" (each prompt's last real position; needs `lengths`), "all", or
      a mask [T] / [*B, T].
    lengths: int [B] real token counts of the prompts (for positions="final").
    strength: w of the replaced positions, in [0, 1] (1: replace fully).

  Returns:
    An Intervention at `site` alone. The constructors below take the same keyword
    arguments (`**where`: num_layers, seq_len, layers, positions, lengths, strength).
  """
  _check_site(site)
  weight = _weight(num_layers, layers, positions, seq_len, lengths, strength)
  if site == "head_out":
    weight = weight[..., None]                                       # [*B, L, T, 1]: all heads
  return Intervention(**{site: Site(weight=weight, value=jnp.asarray(value))})


# Constructors ------------------------------------------------------------------------------


def zero(site: str, **where) -> Intervention:
  """Zero ablation: the activation becomes 0.

  Args:
    site: one of SITES. where: the keyword arguments of `replace`.
  """
  return replace(site, jnp.zeros((), jnp.float32), **where)


def patch(site: str, activations: jax.Array, **where) -> Intervention:
  """Patch in given activations (e.g. another prompt's run at the same positions).

  Args:
    site: one of SITES. activations: [*B, L, T, D] the values patched in.
    where: the keyword arguments of `replace`.
  """
  return replace(site, activations, **where)


def mean(site: str, mean_activations: jax.Array, **where) -> Intervention:
  """Mean ablation: the activation becomes its dataset mean.

  Args:
    site: one of SITES. mean_activations: [L, D] (the same at every position) or [L, T, D].
    where: the keyword arguments of `replace`.
  """
  mean_activations = jnp.asarray(mean_activations)
  if mean_activations.ndim == 2:
    mean_activations = mean_activations[:, None, :]                 # [L, 1, D]
  return replace(site, mean_activations, **where)


def noise(site: str, activations: jax.Array, key: jax.Array, std: float, **where) -> Intervention:
  """Gaussian-noise ablation: the activation becomes itself plus N(0, std^2) noise.

  Args:
    site: one of SITES. activations: [*B, L, T, D] the clean activations.
    key: the jax.random key of the noise. std: its standard deviation.
    where: the keyword arguments of `replace`.
  """
  activations = jnp.asarray(activations)
  value = activations + std * jax.random.normal(key, activations.shape, activations.dtype)
  return replace(site, value, **where)


def resample(site: str, source_activations: jax.Array, source_lengths, *, num_layers: int,
             seq_len: int, lengths, layers=None, strength: float = 1.0) -> Intervention:
  """Resample ablation at each prompt's final position (docs/method.md).

  Prompt b's final position gets its source prompt's final-position activation. The
  value is stored as [B, L, 1, D] and broadcast over positions.

  Args:
    site: one of SITES.
    source_activations: [B, L, Ts, D] the clean activations of each prompt's source
      prompt (row b is the source of prompt b).
    source_lengths: int [B] the source prompts' lengths.
    num_layers, seq_len, lengths, layers, strength: as in `replace` (positions is "final").
  """
  source_activations = jnp.asarray(source_activations)
  last = jnp.asarray(source_lengths) - 1                            # [B]
  value = jnp.take_along_axis(source_activations, last[:, None, None, None], axis=2)  # [B, L, 1, D]
  return replace(site, value, num_layers=num_layers, seq_len=seq_len, layers=layers,
                 positions="final", lengths=lengths, strength=strength)


def freeze_final_scale(scale: jax.Array) -> Intervention:
  """Hold the final norm's scale sigma at given values (usually the clean run's).

  Args:
    scale: [*B, T] the frozen sigma (the clean run's `Outputs.final_scale`).
  """
  return Intervention(final_scale=jnp.asarray(scale))


# Composition -------------------------------------------------------------------------------


def _compose_site(first: Optional[Site], second: Optional[Site]) -> Optional[Site]:
  """The single site equivalent to applying `first`, then `second`.

  x1 = x + w1 (v1 - x); x2 = x1 + w2 (v2 - x1)  =>  x2 = x + w (v - x) with
  w = w1 + w2 - w1 w2 and v = (w1 (1 - w2) v1 + w2 v2) / w (v = 0 where w = 0).
  """
  if first is None or second is None:
    return first if second is None else second
  w1, w2 = first.weight[..., None], second.weight[..., None]
  w = w1 + w2 - w1 * w2
  value = jnp.where(w > 0, (w1 * (1 - w2) * first.value + w2 * second.value) / jnp.where(w > 0, w, 1), 0)
  return Site(weight=w[..., 0], value=value)


def compose(first: Intervention, second: Intervention) -> Intervention:
  """Apply `first`, then `second`; the second's frozen scale wins if both set one."""
  sites = {name: _compose_site(getattr(first, name), getattr(second, name)) for name in SITES}
  scale = second.final_scale if second.final_scale is not None else first.final_scale
  return Intervention(**sites, final_scale=scale)


# Save / load -------------------------------------------------------------------------------


def save(path: str, intervention: Intervention) -> None:
  """Write `path`.json (which sites, shapes, dtypes) and `path`.npz (the arrays)."""
  arrays = {f"{name}.{part}": np.asarray(getattr(site, part))
            for name, site in intervention.sites().items() for part in ("weight", "value")}
  if intervention.final_scale is not None:
    arrays["final_scale"] = np.asarray(intervention.final_scale)
  meta = {"format": "hydra_jax.Intervention/1", "sites": sorted(intervention.sites()),
          "final_scale": intervention.final_scale is not None,
          "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".json", "w") as f:
    json.dump(meta, f, indent=2)
  np.savez(path + ".npz", **arrays)


def load(path: str) -> Intervention:
  """Read an intervention written by `save`; checks the arrays against the JSON."""
  with open(path + ".json") as f:
    meta = json.load(f)
  if meta.get("format") != "hydra_jax.Intervention/1":
    raise ValueError(f"{path}.json is not a saved hydra_jax Intervention")
  with np.load(path + ".npz") as data:
    arrays = {k: data[k] for k in data.files}
  if sorted(arrays) != sorted(meta["arrays"]):
    raise ValueError(f"{path}.npz holds {sorted(arrays)}, {path}.json names {sorted(meta['arrays'])}")
  sites = {name: Site(weight=jnp.asarray(arrays[f"{name}.weight"]), value=jnp.asarray(arrays[f"{name}.value"]))
           for name in meta["sites"]}
  scale = jnp.asarray(arrays["final_scale"]) if meta["final_scale"] else None
  return Intervention(**sites, final_scale=scale)
