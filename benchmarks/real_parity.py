"""A registry model read by hydra_jax and by transformers from the same GGUF file: do they agree?

    python benchmarks/real_parity.py smollm2        # or gemma3-270m; --prompts 20

For the cached (or fetched) model of `hydra_jax.fetch`: the tokenizer hydra_jax builds from
the file's metadata against transformers' tokenizer from the same file, on every known-facts
prompt and " " + answer (../shared/data/known_1000.json); and the logits of `load_gguf` +
`forward` against transformers' `from_pretrained(dir, gguf_file=...)` (float32, eager
attention) on the first --prompts prompts: the largest absolute difference, the largest
|logit| (the scale) and whether the final position's top token agrees. Needs torch,
transformers and accelerate (the test extra). Not a test: the real files are not in CI.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

FACTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "known_1000.json"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("model", help="a hydra_jax.fetch model name")
  parser.add_argument("--prompts", type=int, default=20, help="prompts whose logits are compared")
  args = parser.parse_args()
  import torch
  import transformers
  from hydra_jax import fetch
  from hydra_jax.checkpoints import load_gguf
  from hydra_jax.data import tokenizers
  from hydra_jax.model.transformer import forward

  path = fetch.resolve(args.model)
  records = json.loads(FACTS.read_text())
  texts = [r["prompt"] for r in records] + [" " + r["attribute"] for r in records]
  ours = tokenizers.load(path)
  theirs = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
  differ = sum(ours.encode(t) != theirs(t)["input_ids"] for t in texts)
  print(f"tokenizer: {differ} of {len(texts)} texts encode differently")

  reference = transformers.AutoModelForCausalLM.from_pretrained(
      str(path.parent), gguf_file=path.name, dtype=torch.float32,
      attn_implementation="eager").eval()
  config, params = load_gguf(path)
  worst, scale, agree = 0.0, 0.0, 0
  for text in texts[:args.prompts]:
    ids = ours.encode(text)
    with torch.no_grad():
      want = reference(torch.tensor([ids])).logits[0].numpy()         # [T, V]
    got = np.asarray(forward(params, config, np.asarray([ids], np.int32)).logits[0])
    worst, scale = max(worst, float(np.abs(got - want).max())), max(scale, float(np.abs(want).max()))
    agree += int(got[-1].argmax() == want[-1].argmax())
  print(f"logits: max |difference| {worst:.2g} over {args.prompts} prompts, largest |logit| "
        f"{scale:.1f}; top token agrees on {agree} of {args.prompts}")


if __name__ == "__main__":
  main()
