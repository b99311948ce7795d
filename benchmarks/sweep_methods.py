"""The four methods timed by benchmarks/sweep.py, each computing the same sweep cells.

Each runner takes (loaded model, tokens [B, T], lengths [B], sources [B, K], args) and
returns (results, timing): results hold the scored token [B], the clean centred logit [B],
the total effect [B, K, C] and the response dDE [B, C, C] (mean over the K sources), so
the benchmark can check that all methods agree; timing holds compile and run seconds.

Shapes: B prompts, T positions, K sources, L layers, C = 2L components, D d_model, V vocabulary.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


MIN_TIMED_S = 10.0   # a compiled sweep is timed over at least this long (the median run is reported)

# The torch loops' view of a transformers decoder layer, per config.model_type: the modules
# whose outputs are a^l and m^l (what each sublayer adds to the residual: Gemma 3's post-
# norms), the norms around each sublayer and on queries / keys (None: none), the final
# norm's gain offset (Gemma: 1 + w), and whether the rotary table is per layer type.
TORCH_LAYOUTS = {
    "llama": dict(hooked=("self_attn", "mlp"), gain_offset=0.0, rotary_by_layer_type=False, modules=dict(
        attn_norm="input_layernorm", q_norm=None, k_norm=None, attn_post=None,
        mlp_norm="post_attention_layernorm", mlp_post=None)),
    "gemma3_text": dict(hooked=("post_attention_layernorm", "post_feedforward_layernorm"), gain_offset=1.0,
                        rotary_by_layer_type=True, modules=dict(
        attn_norm="input_layernorm", q_norm="self_attn.q_norm", k_norm="self_attn.k_norm",
        attn_post="post_attention_layernorm", mlp_norm="pre_feedforward_layernorm",
        mlp_post="post_feedforward_layernorm")),
}


def timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def load(model_dir, method: str):
  """The benchmark's checkpoint: a torch LlamaForCausalLM, or hydra_jax's (config, params)."""
  if method == "torch_hooks":
    import torch
    from transformers import LlamaForCausalLM
    return LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
  from hydra_jax.checkpoints import load_hf
  return load_hf(model_dir)


def _timing(first: float, runs: list[float], ablations: int) -> dict:
  run = statistics.median(runs)
  return {"compile_s": max(first - run, 0.0), "first_call_s": first, "run_s": run, "runs_s": runs,
          "ablations": ablations, "forwards_per_s": ablations / run}


# (b), (c): the compiled sweep ------------------------------------------------------------------


def compiled_sweep(path: str):
  def run(loaded, tokens, lengths, sources, args):
    import jax
    from hydra_jax.sweep import engine as sweep
    config, params = loaded
    call = lambda: jax.block_until_ready(sweep.hydra_sweep(params, config, tokens, lengths, sources, path=path))
    result, first = timed(call)
    runs = [timed(call)[1]]
    while len(runs) < args.repeats or sum(runs) < MIN_TIMED_S:        # short runs: repeat more
      runs.append(timed(call)[1])
    timing = _timing(first, runs, sources.size * config.num_components)
    compiled = sweep.lower_sweep(params, config, tokens, lengths, sources, path=path).compile()
    memory = compiled.memory_analysis()                                # (cost_analysis counts a scan once)
    timing.update(xla_temp_mb=memory.temp_size_in_bytes / 2 ** 20,
                  xla_arguments_mb=memory.argument_size_in_bytes / 2 ** 20,
                  xla_outputs_mb=memory.output_size_in_bytes / 2 ** 20)
    results = {name: np.asarray(getattr(result, name))
               for name in ("token", "clean_logit", "total_effect", "response")}
    return results, timing
  return run


def compile_scaling(loaded, tokens, lengths, sources, layer_counts) -> dict:
  """Compile time of (c)'s program for models of each depth (abstract parameters: nothing allocated)."""
  import dataclasses
  import jax
  import hydra_jax as hj
  from hydra_jax.sweep import engine as sweep
  config, _ = loaded
  out = {}
  for layers in (1,) + tuple(layer_counts):                           # 1: warm-up, not reported
    deeper = dataclasses.replace(config, num_layers=layers)
    shapes = jax.eval_shape(lambda: hj.init_params(deeper))
    lowered, trace_s = timed(lambda: sweep.lower_sweep(shapes, deeper, tokens, lengths, sources))
    _, compile_s = timed(lowered.compile)
    if layers in layer_counts:
      out[str(layers)] = {"trace_and_lower_s": trace_s, "compile_s": compile_s}
  return out


# (a): a Python loop of jitted full forwards, one per cell -----------------------------------------


def jax_loop(loaded, tokens, lengths, sources, args):
  import jax
  import jax.numpy as jnp
  import hydra_jax as hj
  from hydra_jax.sweep import effects
  from hydra_jax.model import interventions as iv
  config, params = loaded
  B, T = tokens.shape
  L, C, rows, last = config.num_layers, config.num_components, np.arange(B), lengths - 1

  clean = hj.forward(params, config, tokens)
  final = lambda out: effects.interleave_components(out.attn_out[rows, :, last], out.mlp_out[rows, :, last])
  clean_logits = hj.centre(clean.logits[rows, last])                   # [B, V]
  token = jnp.argmax(clean_logits, -1)
  sigma = clean.final_scale[rows, last]
  direction, _ = effects.logit_direction(params, config, token)
  clean_components = final(clean)                                      # [B, C, D]
  clean_logit = clean_logits[rows, token]

  @jax.jit
  def measures(out):                                                   # TE [B] and dDE [B, C] of one cell
    te = hj.centre(out.logits[rows, last])[rows, token] - clean_logit
    dde = effects.direct_effect(jnp.moveaxis(final(out) - clean_components, 1, 0), sigma, direction).T
    return te, dde

  K = sources.shape[1]
  te, dde, cell_s = np.zeros((B, K, C)), np.zeros((B, K, C, C)), []
  for k in range(K):
    for c in range(C):
      site = ("attn_out", "mlp_out")[c % 2]
      values = (clean.attn_out, clean.mlp_out)[c % 2][sources[rows, k], :, last[sources[rows, k]]]  # [B, L, D]
      start = time.perf_counter()
      ablation = iv.patch(site, values[:, :, None], num_layers=L, seq_len=T, layers=c // 2,
                          positions="final", lengths=lengths)
      cell = jax.block_until_ready(measures(hj.forward(params, config, tokens, ablation)))
      cell_s.append(time.perf_counter() - start)
      te[:, k, c], dde[:, k, c] = np.asarray(cell[0]), np.asarray(cell[1])
  results = {"token": np.asarray(token), "clean_logit": np.asarray(clean_logit), "total_effect": te,
             "response": dde.mean(1)}
  return results, _loop_timing(cell_s, B)


def _loop_timing(cell_s: list[float], prompts_per_cell: int) -> dict:
  """Two cells compile (one per site); the rest are steady state."""
  run = statistics.median(cell_s[2:]) if len(cell_s) > 2 else min(cell_s)
  total = run * len(cell_s)
  return {"compile_s": max(sum(cell_s[:2]) - 2 * run, 0.0), "run_s": total, "cell_s": run,
          "loop_wall_s": sum(cell_s), "ablations": len(cell_s) * prompts_per_cell,
          "forwards_per_s": prompts_per_cell / run}


# (d): a PyTorch forward-hook loop ----------------------------------------------------------------


def _recording_hooks(model, rows, last):
  """Forward hooks on every sublayer's residual output (TORCH_LAYOUTS) that replace the
  final position by `ablation[(layer, site)]` when set and record it in `seen`, and a
  pre-hook recording the final norm's input. Returns (seen, ablation, handles, components):
  components() stacks what was seen as [B, C, D]."""
  import torch
  layers = model.model.layers
  seen, ablation = {}, {}                                              # (layer, site) -> [B, D]

  def hook(layer, site):
    def replace_and_record(module, inputs, output):
      out = output[0] if isinstance(output, tuple) else output
      if (layer, site) in ablation:
        out = out.clone()
        out[rows, last] = ablation[(layer, site)]
      seen[(layer, site)] = out[rows, last]
      return (out,) + tuple(output[1:]) if isinstance(output, tuple) else out
    return replace_and_record

  layout = TORCH_LAYOUTS[model.config.model_type]
  handles = [layer.get_submodule(name).register_forward_hook(hook(l, site)) for l, layer in enumerate(layers)
             for site, name in enumerate(layout["hooked"])]
  handles.append(model.model.norm.register_forward_pre_hook(
      lambda module, inputs: seen.__setitem__("final", inputs[0][rows, last])))
  components = lambda: torch.stack([seen[(c // 2, c % 2)] for c in range(2 * len(layers))], 1)
  return seen, ablation, handles, components


def torch_hooks(model, tokens, lengths, sources, args):
  import torch
  B, T = tokens.shape
  C = 2 * len(model.model.layers)
  rows, last = torch.arange(B), torch.as_tensor(lengths - 1)
  seen, ablation, handles, components = _recording_hooks(model, rows, last)
  layout = TORCH_LAYOUTS[model.config.model_type]
  ids = torch.as_tensor(tokens, dtype=torch.long)
  with torch.inference_mode():
    logits = model(ids).logits[rows, last]                             # [B, V]
    centred = logits - logits.mean(-1, keepdim=True)
    token = centred.argmax(-1)
    clean_logit = centred[rows, token]
    clean_components = components()
    resid = seen["final"]
    sigma = torch.sqrt((resid * resid).mean(-1) + model.config.rms_norm_eps)  # [B]
    w_u = model.lm_head.weight                                         # [V, D]
    gain = layout["gain_offset"] + model.model.norm.weight             # [D]
    direction = gain * (w_u[token] - w_u.mean(0))                      # [B, D]
    K = sources.shape[1]
    te, dde, cell_s = np.zeros((B, K, C)), np.zeros((B, K, C, C)), []
    for k in range(K):
      src = torch.as_tensor(sources[:, k], dtype=torch.long)
      for c in getattr(args, "hook_components", None) or range(C):   # a subset: the others stay 0
        start = time.perf_counter()
        ablation.clear()
        ablation[(c // 2, c % 2)] = clean_components[src, c]
        logits = model(ids).logits[rows, last]
        te[:, k, c] = (logits[rows, token] - logits.mean(-1) - clean_logit).numpy()
        dde[:, k, c] = (((components() - clean_components) * direction[:, None]).sum(-1) / sigma[:, None]).numpy()
        cell_s.append(time.perf_counter() - start)
  for handle in handles:
    handle.remove()
  results = {"token": token.numpy(), "clean_logit": clean_logit.numpy(), "total_effect": te,
             "response": dde.mean(1)}
  timing = _loop_timing(cell_s, B)
  timing["compile_s"] = 0.0                                            # eager: nothing to compile
  timing["torch_threads"] = torch.get_num_threads()
  return results, timing


RUNNERS = {"jax_loop": jax_loop, "full": compiled_sweep("full"), "incremental": compiled_sweep("incremental"),
           "torch_hooks": torch_hooks}
