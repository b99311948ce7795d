"""ModelConfig: one frozen description of a pre-norm decoder-only transformer family.

Every architecture hydra_jax runs (Chinchilla/Gopher, Llama, Mistral, Qwen2, Gemma,
Gemma 3, GPT-2, Pythia) is a point in this space. Architecture differences are *data* here,
never `if arch == ...` branches in the model:

  norm            "rms" (RMSNorm, no centring, no bias) or "layer" (LayerNorm, with bias)
  norm_scale_offset  the norm multiplies by (offset + scale): 1.0 for Gemma's (1 + w)
  position        "rotary" (with `rope_base` and `rotary_fraction` of each head),
                  "learned" (absolute table added to the embedding),
                  "relative" (Transformer-XL / Gopher / Chinchilla), or "none"
  activation      "gelu" (exact), "gelu_tanh", "relu" or "silu"
  gated_mlp       SwiGLU / GeGLU: out = W_out (act(W_gate x) * W_in x)
  parallel_block  attention and MLP both read z^{l-1} (GPT-J / Pythia) instead of the
                  MLP reading z^{l-1} + a^l
  num_kv_heads    grouped-query attention when smaller than num_heads
  qk_norm         the model's norm (gain only, with norm_scale_offset) on every query and
                  key head over its E features, before rotary (Gemma 3, OLMo 2)
  post_norms      a norm on each sublayer's output before it joins the residual
                  ("sandwich" norms: Gemma 2/3's post_attention / post_feedforward norms)
  layer_windows   per-layer sliding window W: a query at t sees keys in (t - W, t];
                  0 = global (full causal); () = every layer global
  layer_rope_bases  per-layer rotary base (Gemma 3: local 10,000, global 1,000,000);
                  () = rope_base on every layer

Shapes: the package glossary (hydra_jax/__init__.py): D d_model, H query heads,
G key/value heads, E head size (head_size), F MLP width (mlp_width), V vocabulary,
L layers, C = 2L components (num_components).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any, Optional

NORMS = ("rms", "layer")
POSITIONS = ("rotary", "learned", "relative", "none")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")
DTYPES = ("float32", "bfloat16", "float16")
# Per-layer tuple fields: (accepted entries, stored as, what the error names them).
PER_LAYER = {"layer_windows": (numbers.Integral, int, "whole numbers"),
             "layer_rope_bases": (numbers.Real, float, "numbers")}


def dtype_name(dtype) -> str:
  """The DTYPES name of `dtype`, given as a name or as a numpy/JAX dtype or scalar type
  ("bfloat16", jnp.bfloat16, np.float32, jnp.float32); a ValueError for any other."""
  import jax.numpy as jnp   # here, so that ModelConfig itself stays a plain dataclass
  try:
    name = jnp.dtype(dtype).name
  except TypeError:
    name = None
  if name not in DTYPES:
    raise ValueError(f"dtype={dtype!r} must be one of {DTYPES} (or their numpy/JAX types)")
  return name


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyper-parameters of a transformer; hashable, so it can be a static jit argument."""

  vocab_size: int
  d_model: int
  num_layers: int
  num_heads: int
  num_kv_heads: Optional[int] = None     # None: = num_heads (multi-head attention)
  head_dim: Optional[int] = None         # None: d_model // num_heads
  mlp_dim: Optional[int] = None          # None: 4 * d_model
  activation: str = "gelu"
  gated_mlp: bool = False
  norm: str = "rms"
  norm_eps: float = 1e-5
  norm_scale_offset: float = 0.0
  position: str = "relative"
  rope_base: float = 10000.0
  rotary_fraction: float = 1.0
  max_seq_len: int = 2048
  parallel_block: bool = False
  tie_embeddings: bool = False
  embed_scale: float = 1.0               # Gemma multiplies the embedding by sqrt(d_model)
  qkv_bias: bool = False
  attn_out_bias: bool = False
  mlp_bias: bool = False
  query_scale: Optional[float] = None    # None: 1 / sqrt(head_dim)
  qk_norm: bool = False
  post_norms: bool = False
  layer_windows: tuple[int, ...] = ()     # [L] window per layer, 0 = global
  layer_rope_bases: tuple[float, ...] = ()   # [L] rotary base per layer
  dropout_rate: float = 0.0
  dtype: str = "float32"                 # parameter and activation dtype
  init_scale: float = 0.02
  name: str = "model"

  def __post_init__(self):
    def bad(field, why):
      raise ValueError(f"ModelConfig.{field}={getattr(self, field)!r}: {why}")

    self._check_sizes(bad)
    self._check_per_layer(bad)

  def _check_sizes(self, bad) -> None:
    for field in ("vocab_size", "d_model", "num_layers", "num_heads", "max_seq_len"):
      if not isinstance(getattr(self, field), int) or getattr(self, field) <= 0:
        bad(field, "must be a positive integer")
    for field in ("num_kv_heads", "head_dim", "mlp_dim"):
      value = getattr(self, field)
      if value is not None and (not isinstance(value, int) or value <= 0):
        bad(field, "must be a positive integer or None")
    if self.norm not in NORMS:
      bad("norm", f"must be one of {NORMS}")
    if self.position not in POSITIONS:
      bad("position", f"must be one of {POSITIONS}")
    if self.activation not in ACTIVATIONS:
      bad("activation", f"must be one of {ACTIVATIONS}")
    if self.dtype not in DTYPES:
      bad("dtype", f"must be one of {DTYPES}")
    if self.num_heads % self.kv_heads:
      bad("num_kv_heads", f"must divide num_heads={self.num_heads}")
    if self.head_dim is None and self.d_model % self.num_heads:
      bad("num_heads", f"must divide d_model={self.d_model} when head_dim is None")
    if not 0.0 <= self.dropout_rate < 1.0:
      bad("dropout_rate", "must be in [0, 1)")
    if not self.norm_eps > 0:
      bad("norm_eps", "must be positive")
    if self.position == "rotary":
      if not 0.0 < self.rotary_fraction <= 1.0:
        bad("rotary_fraction", "must be in (0, 1]")
      if self.rotary_dim % 2:
        bad("rotary_fraction", f"gives an odd rotary width {self.rotary_dim}")
      if self.rope_base <= 0:
        bad("rope_base", "must be positive")
    if self.position == "relative" and self.d_model % 2:
      bad("d_model", "must be even for the sinusoidal relative encoding")

  def _check_per_layer(self, bad) -> None:
    """The per-layer tuples (lists from JSON become tuples): L entries, or none."""
    for field, (kind, convert, what) in PER_LAYER.items():
      values = tuple(getattr(self, field))
      if values and len(values) != self.num_layers:
        bad(field, f"must have num_layers={self.num_layers} entries (or none)")
      if any(isinstance(v, bool) or not isinstance(v, kind) for v in values):
        bad(field, f"must hold {what}")
      object.__setattr__(self, field, tuple(convert(v) for v in values))
    if any(window < 0 for window in self.layer_windows):
      bad("layer_windows", "must be >= 0 (0: global attention)")
    if self.layer_rope_bases and self.position != "rotary":
      bad("layer_rope_bases", f"needs position='rotary', not {self.position!r}")
    if any(not base > 0 for base in self.layer_rope_bases):
      bad("layer_rope_bases", "must be positive")

  # Derived sizes -------------------------------------------------------------------

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def head_size(self) -> int:
    return self.head_dim or self.d_model // self.num_heads

  @property
  def mlp_width(self) -> int:
    return self.mlp_dim or 4 * self.d_model

  @property
  def rotary_dim(self) -> int:
    return int(round(self.head_size * self.rotary_fraction))

  @property
  def attention_scale(self) -> float:
    return self.query_scale if self.query_scale is not None else 1.0 / math.sqrt(self.head_size)

  @property
  def num_components(self) -> int:
    """2L: component 2l is layer l's attention output, 2l+1 its MLP output."""
    return 2 * self.num_layers

  # Serialisation -------------------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f"unknown ModelConfig field(s) {unknown}; known fields: {sorted(known)}")
    return cls(**values)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)
