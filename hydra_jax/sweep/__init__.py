"""The Hydra sweep: every component of every prompt ablated at its final position.

  effects      the measures of docs/method.md as pure functions (DE, TE, dDE, CE, regression)
  paths        the clean run and the AblationPath protocol; the full and incremental paths
  layer_skip   the incremental path that runs only the layers an ablation changes
  noise        noise ablation: components under noisy input embeddings (paper eq. 37)
  measures     HydraResult: a batch's ablated runs reduced to the measures (means over
               sources, and per source under both readings of the final sigma)
  sources      the resample sources drawn for each prompt
  checks       the consistency checks of docs/method.md, raised as ConsistencyError
  batching     a batch's rows on a mesh: the scored prompts, then padding
  options      SweepOptions: a sweep's options, typed and checked when made (job, engine, report)
  validation   numpy checks of a sweep's arrays before anything compiles
  sharding     prompts over the mesh's "data" axis, weights over its "model" axis
  engine       prepare / run_rows / hydra_sweep: the compiled programs and the driver
  heads        the per-head protocol: every head resample-ablated at every position
               (Rushing & Nanda 2024), self-repair split into heads, MLPs and the norm
"""

from hydra_jax.sweep.engine import (ConsistencyError, HydraResult, draw_sources, hydra_sweep,
                                    lower_sweep, regression)

__all__ = ["ConsistencyError", "HydraResult", "draw_sources", "hydra_sweep", "lower_sweep",
           "regression"]
