"""The Hydra sweep: every component of every prompt ablated at its final position.

  effects      the measures of METHOD.md as pure functions (DE, TE, dDE, CE, regression)
  paths        the clean run and the AblationPath protocol; the full and incremental paths
  layer_skip   the incremental path that runs only the layers an ablation changes
  batching     one layout of a batch's rows (scored | source-only | padding) for a mesh
  validation   numpy checks of a sweep's arguments before anything compiles
  sharding     prompts over the mesh's "data" axis, weights over its "model" axis
  engine       hydra_sweep: the compiled program per batch, and the driver
"""

from hydra_jax.sweep.engine import (ConsistencyError, HydraResult, draw_sources, hydra_sweep,
                                    lower_sweep, regression)

__all__ = ["ConsistencyError", "HydraResult", "draw_sources", "hydra_sweep", "lower_sweep",
           "regression"]
