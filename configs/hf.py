"""Any local Hugging Face checkpoint (Llama, Mistral, Qwen2, Gemma, GPT-2, Pythia):

    python -m hydra_jax.main --config=configs/hf.py --config.checkpoint=/path/to/model \
        --config.data.manual_dir=/path/to/folder/with/known_1000.json --workdir=...

The architecture and weights come from the checkpoint directory (config.json +
*.safetensors), the tokenizer from the same directory unless --config.tokenizer is
given. config.model starts unset; any field you set must match the checkpoint (the
error names the fields that do not), except dtype, which casts the weights
(--config.model.dtype=bfloat16). Known facts by default; --config.data.name=counterfact
for CounterFact. Byte-level BPE tokenizers (GPT-2, Pythia) want label_prefix=" ";
SentencePiece ones (Llama, Gemma) work with it too, or set --config.data.label_prefix="".
"""

import ml_collections

from hydra_jax.job import config as run_config


def get_config() -> ml_collections.ConfigDict:
  config = run_config.defaults()
  config.model_source = "hf"
  config.checkpoint = ""               # --config.checkpoint=PATH
  config.model = run_config.open_model_section()
  config.data.name = "known_facts"
  config.data.manual_dir = ""          # folder holding known_1000.json / counterfact.json
  config.data.data_dir = ""            # TFDS data dir ("" = ~/tensorflow_datasets)
  config.sweep.num_sources = 15
  config.sweep.chunk_size = 32
  return config
