"""Any local GGUF file (llama.cpp's format; any ggml quantization, dequantized on load):

    python -m hydra_jax.main --config=configs/gguf.py --config.checkpoint=/path/to/model.gguf \
        --config.data.manual_dir=/path/to/folder/with/known_1000.json --workdir=...

The architecture, weights and tokenizer all come from the one file (its metadata holds
the tokenizer) unless --config.tokenizer is given. --config.checkpoint may also be a
model name of `hydra_jax.fetch.MODELS` ("smollm2", "gemma3-270m"), fetched into the
user's cache on first use (configs/smollm2.py does so). config.model starts unset; any
field you set must match the file, except dtype, which casts the weights. Known facts by
default; --config.data.name=counterfact for CounterFact. Byte-level BPE tokenizers
(GPT-2 style: SmolLM, Qwen2, Llama 3) want label_prefix=" " (the default here);
SentencePiece ones (Llama 2, Gemma) work with it too, or set --config.data.label_prefix="".
"""

import ml_collections

from hydra_jax.job import config as run_config


def get_config() -> ml_collections.ConfigDict:
  config = run_config.defaults()
  config.model_source = "gguf"
  config.checkpoint = ""               # --config.checkpoint=FILE.gguf (or a fetch model name)
  config.model = run_config.open_model_section()
  config.data.name = "known_facts"
  config.data.manual_dir = ""          # folder holding known_1000.json / counterfact.json
  config.data.data_dir = ""            # TFDS data dir ("" = ~/tensorflow_datasets)
  config.data.label_prefix = " "
  config.sweep.num_sources = 15
  config.sweep.chunk_size = 32
  return config
