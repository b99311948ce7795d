"""hydra_jax: causal analysis of language-model computations (the Hydra effect) in JAX/Haiku.

Packages, each importing only those below it:

  study        grids of trained models swept alike (`python -m hydra_jax.study`)
  job          the main job (config, plan, loading, chunks, run, heads); `python -m hydra_jax.main`
  report       summary.json, the paper's figures, report.md
  store        the workdir's chunk and results files (read by the job and the report)
  sweep        the Hydra sweep: effects, ablation paths, batching, sharding, engine
  train        training small models, the synthetic world, the embedded model
  data         prompt sets (TFDS builders), tokenizers, batching and filtering of prompts
  checkpoints  Hugging Face and own checkpoints -> (ModelConfig, params), without torch
  model        ModelConfig, the blocks, the Haiku transformer, the intervention pytree

docs/method.md defines the measures.

Glossary of shapes, used by every module's docstring and shape comments:

  N  prompts of a sweep or job          B  prompts in one batch (its rows, padding included)
  T  positions (padded length)          V  vocabulary
  D  d_model                            F  MLP width
  H  query heads                        G  key/value heads
  E  head size (features per head)      L  layers
  C  components, 2L (2l = attention of layer l, 2l + 1 its MLP)
  K  resample sources per prompt (only this)
  A  ablations vmapped together         R  bootstrap resamples (only this)
  P  lanes and S steps of the layer-skipping schedule (in study/: S training seeds)
  W  doses of the dose-response sweep   Q  clusters of the bootstrap (subjects)
"""

__version__ = "0.1.0"   # the one place of the version (pyproject.toml reads it)

from hydra_jax.model import interventions
from hydra_jax.model.config import ModelConfig
from hydra_jax.model.interventions import Intervention, Site
from hydra_jax.model.transformer import (KVCache, Outputs, centre, count_params, decode,
                                         final_bias_logits, forward, init_params, unembed,
                                         unembedding)
from hydra_jax.sweep.engine import HydraResult, draw_sources, hydra_sweep

__all__ = [
    "__version__", "ModelConfig", "Intervention", "Site", "KVCache", "Outputs", "interventions",
    "init_params", "forward", "decode", "count_params", "unembed", "unembedding",
    "final_bias_logits", "centre", "hydra_sweep", "HydraResult", "draw_sources",
]
