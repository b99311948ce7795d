"""The embedded default model: a tiny Chinchilla-style transformer shipped in the package.

It is trained by the project itself on the synthetic fact world of
`hydra_jax.train.synthetic` (people with invented names and five relations; 20% of the
training statements give another value of the same relation, label noise), with a
SentencePiece BPE tokenizer trained on the same corpus. The recipe is the arm of the
dropout study (configs/study_candidate.py) whose models show the Hydra effect: no
dropout, label noise, 8 layers, 2,000 steps (README: "The embedded model"). Every step
is seeded by `RECIPE`, and

    python -m hydra_jax.train --build_embedded --out hydra_jax/assets/tiny

rebuilds the files below from scratch on a CPU. The package ships them (no network):

    assets/tiny/config.json          the ModelConfig      } hydra_jax.checkpoints
    assets/tiny/params.safetensors   the trained weights  } native format
    assets/tiny/tokenizer.model      SentencePiece model (ids: 0 pad, 1 unk, 2 BOS, 3 EOS)
    assets/tiny/facts.json           the evaluation prompts (uniform records: id, prompt,
                                     label, subject, relation, template)
    assets/tiny/metadata.json        recipe, fact accuracy, training loss and wall time,
                                     and the command that reproduces the files

    load() -> EmbeddedModel(config, params, tokenizer, records, metadata)

A prompt is answered correctly when the argmax of the logits at its final position
(prompt encoded with BOS, as in training) is the label's first token; every label is
a single token of the tokenizer ("▁Lisbon").

Shapes: N prompts, T padded length, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from hydra_jax import checkpoints
from hydra_jax.data import tokenizers
from hydra_jax.data.batching import right_pad, tokenize_records
from hydra_jax.model import transformer as model_lib
from hydra_jax.model.config import ModelConfig
from hydra_jax.model.predict import predictor
from hydra_jax.train import synthetic
from hydra_jax.train import training as train

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny"
TOKENIZER_FILE, FACTS_FILE, METADATA_FILE = "tokenizer.model", "facts.json", "metadata.json"
REPRODUCE_COMMAND = "python -m hydra_jax.train --build_embedded --out hydra_jax/assets/tiny"


@dataclasses.dataclass(frozen=True)
class Recipe:
  """Everything that determines the shipped assets."""
  model: ModelConfig = ModelConfig(
      name="tiny", vocab_size=512, d_model=96, num_layers=8, num_heads=4, mlp_dim=384,
      activation="gelu", norm="rms", position="relative", max_seq_len=64,
      tie_embeddings=False, dropout_rate=0.0, dtype="float32")
  num_entities: int = 200          # x 5 relations = 1,000 fact prompts
  label_noise: float = 0.2         # of training statements give another value of the relation
  world_seed: int = 0
  prompt_seed: int = 1
  corpus_seed: int = 2
  tokenizer_lines: int = 20_000    # the tokenizer is trained on the corpus' first lines
  batch_size: int = 32
  steps: int = 2000
  learning_rate: float = 3e-3
  warmup_steps: int = 100
  weight_decay: float = 0.01
  clip_norm: float = 1.0
  train_seed: int = 4              # initialisation, dropout keys and batch order
  lines_per_row: float = 2.0       # corpus lines generated per training row needed


RECIPE = Recipe()


@dataclasses.dataclass(frozen=True)
class EmbeddedModel:
  config: ModelConfig
  params: Any
  tokenizer: Any                   # encode(text) -> ids with BOS, decode, vocab_size
  records: tuple[dict[str, Any], ...]
  metadata: dict[str, Any]


def _tokenizer(model_file: Path):
  return tokenizers.SentencePieceTokenizer(model_file, add_bos=True)


def tokenizer():
  """The shipped model's tokenizer alone (no weight is read)."""
  return _tokenizer(ASSET_DIR / TOKENIZER_FILE)


@functools.lru_cache(maxsize=2)
def load(directory: str | None = None) -> EmbeddedModel:
  """The shipped model (or the assets in `directory`), read from package files only."""
  path = Path(directory) if directory else ASSET_DIR
  for file in (TOKENIZER_FILE, FACTS_FILE, METADATA_FILE):
    if not (path / file).is_file():
      raise FileNotFoundError(f"{path / file} is missing: rebuild with `{REPRODUCE_COMMAND}`")
  config, params = checkpoints.load(path)
  records = tuple(json.loads((path / FACTS_FILE).read_text()))
  metadata = json.loads((path / METADATA_FILE).read_text())
  return EmbeddedModel(config, params, _tokenizer(path / TOKENIZER_FILE), records, metadata)


def predict_last(params, config: ModelConfig, rows: Sequence[Sequence[int]],
                 batch_size: int = 128) -> np.ndarray:
  """The argmax token [N] at the last position of each token row (`model.predict`), in
  batches of `batch_size` rows padded to the longest row (one compile for all)."""
  predict = predictor(params, config)
  longest = max(len(row) for row in rows)
  predictions = []
  for start in range(0, len(rows), batch_size):
    chunk = list(rows[start:start + batch_size])
    filler = [[0]] * (batch_size - len(chunk))                  # rows of one pad token
    predictions.append(predict(*right_pad(chunk + filler, longest))[:len(chunk)])
  return np.concatenate(predictions)


def fact_accuracy(params, config: ModelConfig, tokenizer, records) -> tuple[float, np.ndarray]:
  """(fraction answered correctly, correct [N] bool) for prompt records (id, prompt, label)."""
  prompts = tokenize_records(records, tokenizer, label_prefix="")   # "▁Lisbon": one token
  labels = np.array([prompt.label_token for prompt in prompts])                      # [N]
  correct = predict_last(params, config, [prompt.tokens for prompt in prompts]) == labels
  return float(correct.mean()), correct


# Building the assets ------------------------------------------------------------------------


def build(out_dir: str | Path = ASSET_DIR, recipe: Recipe = RECIPE, *, steps: int | None = None,
          log=print) -> dict[str, Any]:
  """World -> corpus -> tokenizer -> trained model -> evaluation -> files in `out_dir`.

  Returns the metadata written to metadata.json. `steps` overrides the recipe's (for
  experiments; the shipped assets use the recipe as it stands).
  """
  if steps is not None:
    recipe = dataclasses.replace(recipe, steps=steps,
                                 warmup_steps=min(recipe.warmup_steps, steps // 10))
  start = time.perf_counter()
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  world = synthetic.make_world(recipe.num_entities, recipe.world_seed)
  records = synthetic.fact_records(world, recipe.prompt_seed)
  lines = synthetic.corpus_lines(
      world, int(recipe.steps * recipe.batch_size * recipe.lines_per_row), recipe.corpus_seed,
      label_noise=recipe.label_noise)
  (out / TOKENIZER_FILE).write_bytes(synthetic.train_tokenizer(
      lines[:recipe.tokenizer_lines], recipe.model.vocab_size))
  tokenizer = _tokenizer(out / TOKENIZER_FILE)
  rows = train.pack_rows([tokenizer.encode(line) for line in lines], recipe.model.max_seq_len)
  log(f"{len(records)} fact prompts, {len(lines)} corpus lines in {len(rows)} rows, "
      f"{time.perf_counter() - start:.0f}s")
  batches = train.batch_stream(rows, batch_size=recipe.batch_size,
                               seq_len=recipe.model.max_seq_len, seed=recipe.train_seed)
  params, history = train.train(
      recipe.model, batches, steps=recipe.steps, learning_rate=recipe.learning_rate,
      warmup_steps=recipe.warmup_steps, weight_decay=recipe.weight_decay,
      clip_norm=recipe.clip_norm, seed=recipe.train_seed, log_every=50, log=log)
  params = jax.device_get(params)
  accuracy, correct = fact_accuracy(params, recipe.model, tokenizer, records)
  checkpoints.save(out, recipe.model, params)
  (out / FACTS_FILE).write_text(json.dumps(records, indent=0))
  metadata = dict(
      reproduce_command=REPRODUCE_COMMAND,
      recipe={**dataclasses.asdict(recipe), "model": recipe.model.to_dict()},
      fact_accuracy=accuracy, num_prompts=len(records), num_correct=int(correct.sum()),
      accuracy_by_relation=_by_relation(records, correct), num_params=model_lib.count_params(params),
      first_loss=history.losses[0], final_loss=float(np.mean(history.losses[-50:])),
      train_seconds=round(history.seconds, 1),
      total_seconds=round(time.perf_counter() - start, 1), versions=_versions())
  (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
  log(f"fact accuracy {accuracy:.3f} ({int(correct.sum())}/{len(records)}), "
      f"wall time {metadata['total_seconds']:.0f}s, assets in {out}")
  return metadata


def _by_relation(records, correct: np.ndarray) -> dict[str, float]:
  """{relation: fraction of its prompts answered correctly}, relations in record order."""
  return {name: float(np.mean([ok for r, ok in zip(records, correct) if r["relation"] == name]))
          for name in dict.fromkeys(r["relation"] for r in records)}


def _versions() -> dict[str, str]:
  import haiku
  import optax
  import sentencepiece
  return dict(jax=jax.__version__, haiku=haiku.__version__, optax=optax.__version__,
              sentencepiece=sentencepiece.__version__)
