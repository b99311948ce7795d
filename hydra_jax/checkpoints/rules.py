"""The vocabulary of the Hugging Face architecture tables (`architectures.py`).

  Key           config.json[name] (the first of several names present), with transformers'
                default when absent and an optional conversion
  Rule          hydra_jax tensor <- Hugging Face tensor name template(s), via a `Transform`
  Architecture  the tables of one architecture: fields, tensors, prefixes, ignored
                buffers and the `unsupported` checks
  norm_rules, mlp_rules   the rows every architecture has, from the Hugging Face names alone
  rope_base, rotary_fraction, rope_scaling_unsupported, window_capped, activation,
  flag_unsupported        field functions and checks shared by several tables
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

from hydra_jax.checkpoints.transforms import Transform, same

REQUIRED = object()

# transformers ACT2FN names -> ModelConfig.activation
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "gelu_fast": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"}


@dataclasses.dataclass(frozen=True)
class Key:
  """config.json[name] for the first of `names` present and not null, else `default`."""
  names: tuple[str, ...] | str
  default: Any = REQUIRED
  convert: Callable[[Any], Any] = lambda value: value

  def __call__(self, hf: Mapping[str, Any]) -> Any:
    names = (self.names,) if isinstance(self.names, str) else self.names
    for name in names:
      if hf.get(name) is not None:
        return self.convert(hf[name])
    if self.default is REQUIRED:
      raise ValueError(f"config.json has no {' or '.join(map(repr, names))}")
    return self.default


def activation(table: Mapping[str, str]) -> Callable[[str], str]:
  def convert(name):
    if name not in table:
      raise ValueError(f"config.json activation {name!r} is not supported; known: {sorted(table)}")
    return table[name]
  return convert


def _rope(hf) -> Mapping[str, Any]:
  return hf.get("rope_parameters") or hf.get("rope_scaling") or {}


def rope_base(hf) -> float:
  """rope_theta: in rope_parameters (transformers 5) or top level (older config.json files)."""
  return float(_rope(hf).get("rope_theta") or hf.get("rope_theta") or hf.get("rotary_emb_base")
               or 10000.0)


def rotary_fraction(default: float) -> Callable:
  """Fraction of each head rotated: transformers rotates int(head_size * factor) features."""
  def fraction(hf):
    factor = (_rope(hf).get("partial_rotary_factor") or hf.get("partial_rotary_factor")
              or hf.get("rotary_pct") or default)
    head_size = hf["hidden_size"] // hf["num_attention_heads"]
    return int(head_size * factor) / head_size
  return fraction


def rope_scaling_unsupported(hf) -> Optional[str]:
  rope = _rope(hf)
  kind = rope.get("rope_type", rope.get("type", "default"))
  return None if kind == "default" else f"rope_type {kind!r} (only unscaled rotary is supported)"


def window_capped(limit_default: int, window_default: Optional[int], switch: Optional[str] = None):
  """max_seq_len = min(max_position_embeddings, sliding_window) when the window is active."""
  def context(hf):
    limit = Key("max_position_embeddings", limit_default)(hf)
    active = switch is None or hf.get(switch, False)
    window = hf.get("sliding_window", window_default) if active else None
    return min(limit, window) if window else limit
  return context


@dataclasses.dataclass(frozen=True)
class Rule:
  """hydra_jax tensor `ours` <- Hugging Face tensor (first of `hf` names present), via `transform`."""
  ours: str
  hf: tuple[str, ...] | str
  transform: Transform

  @property
  def hf_names(self) -> tuple[str, ...]:
    return (self.hf,) if isinstance(self.hf, str) else self.hf


def norm_rules(ours: str, hf: str, bias: bool = True) -> tuple[Rule, ...]:
  """A norm's gain `ours`/scale <- `hf`.weight and, with `bias` (LayerNorm), `ours`/bias <-
  `hf`.bias, both as they are."""
  gain = Rule(f"{ours}/scale", f"{hf}.weight", same)
  return (gain, Rule(f"{ours}/bias", f"{hf}.bias", same)) if bias else (gain,)


def mlp_rules(block: str, projections: Mapping[str, str], transform: Transform
              ) -> tuple[Rule, ...]:
  """The MLP's linear maps, `projections` naming each ("in" -> "up_proj"): every weight
  layers/mlp/w_<x> <- `block`<name>.weight via `transform`, then every bias layers/mlp/b_<x>
  <- `block`<name>.bias as it is."""
  weights = (Rule(f"layers/mlp/w_{x}", f"{block}{name}.weight", transform)
             for x, name in projections.items())
  biases = (Rule(f"layers/mlp/b_{x}", f"{block}{name}.bias", same)
            for x, name in projections.items())
  return (*weights, *biases)


@dataclasses.dataclass(frozen=True)
class Architecture:
  name: str
  fields: Mapping[str, Any]
  tensors: tuple[Rule, ...]
  prefixes: tuple[str, ...]
  ignored: tuple[str, ...] = ()
  unsupported: tuple[Callable[[Mapping[str, Any]], Optional[str]], ...] = (rope_scaling_unsupported,)


def flag_unsupported(key: str, what: str) -> Callable[[Mapping[str, Any]], Optional[str]]:
  """A check refusing config.json files that set `key` (not null, not false): `what` they ask."""
  return lambda hf: f"{what} ({key}={hf[key]!r})" if hf.get(key) else None
