"""A seeded world of invented facts: the corpus and the prompts of the embedded model.

The world is a set of people with invented, pronounceable two-word names (several
tokens each). Every person holds one attribute per relation (born in a city, plays an
instrument, plays a sport, works for a company, speaks a native language). A fact is
stated by a template whose subject comes first, then optional filler words, then the
relation phrase, then the attribute:

    "Davo Kesilurn, as the old records show, was born in the city of" -> "Lisbon"

The attribute depends on the subject alone, several tokens back, so a model can only
answer by retrieving it through attention over the subject's tokens. Facts are
memorised from the training corpus; the evaluation prompts use the same (held-in)
templates, with a filler clause between subject and relation.

    make_world(num_entities, seed)         -> World (entities with their attributes)
    fact_records(world, seed)              -> one prompt record per (entity, relation), in
                                              the uniform view of the dataset loaders:
                                              id, prompt (ends right before the answer),
                                              label, subject, relation, template
    corpus_lines(world, num_lines, seed,   -> training text: fact sentences in every
                 **options)                   template plus distractor filler sentences;
                                              the options below change the world's text
    relations(count)                       -> the first `count` of ALL_RELATIONS (5 = the
                                              embedded world's, up to 10)
    attribute_words()                      -> every attribute; the tokenizer keeps each
                                              as one piece "▁word", so a label is one token
    train_tokenizer(lines, vocab_size)     -> a SentencePiece BPE model trained on the corpus

Corpus options (all off by default; with them off the corpus is byte-for-byte the one
the embedded model was trained on, because an option draws from the seeded stream only
when it is on):

  label_noise       fraction of fact statements that give another value of the same
                    relation (the loss-optimal logit of the true value becomes finite)
  shuffle_answers   every fact statement gives the value of a random entity (a control:
                    the answer no longer depends on the subject)
  restate_fraction  fraction of lines that state one of their facts again at the end,
                    in another template: the second statement can be copied in context
  generic_share     generic sentences (no person, no fact) are appended to each line
                    until they hold at least this share of its characters (names take
                    several tokens each: 0.75 of the characters is over half the tokens)

Everything is drawn from `random.Random(seed)`, whose streams Python keeps stable, so
a seed reproduces the world and the corpus exactly.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from hydra_jax.train import vocabulary as words
from hydra_jax.train.vocabulary import (  # noqa: F401 (re-exported: synthetic.RELATIONS ...)
    ALL_RELATIONS, EXTRA_RELATIONS, FILLERS, RELATIONS, Relation, relations)


@dataclasses.dataclass(frozen=True)
class Entity:
  """A person: a unique name and one attribute per relation name."""
  name: str
  attributes: tuple[tuple[str, str], ...]    # ((relation name, value), ...)

  def attribute(self, relation: str) -> str:
    return dict(self.attributes)[relation]


@dataclasses.dataclass(frozen=True)
class World:
  seed: int
  entities: tuple[Entity, ...]
  relations: tuple[Relation, ...] = RELATIONS


def attribute_words(relations=RELATIONS) -> list[str]:
  """Every attribute value, in relation order (each becomes one tokenizer piece)."""
  return [value for relation in relations for value in relation.values]


def _word(rng: random.Random, syllables: int) -> str:
  parts = [rng.choice(words.ONSETS) + rng.choice(words.VOWELS) for _ in range(syllables)]
  return ("".join(parts) + rng.choice(words.CODAS)).capitalize()


def make_world(num_entities: int = 100, seed: int = 0, relations=RELATIONS) -> World:
  """`num_entities` people: first names from a shared pool, a unique surname each."""
  if not isinstance(num_entities, int) or num_entities < 1:
    raise ValueError(f"num_entities must be a positive integer, got {num_entities!r}")
  rng = random.Random(seed)
  reserved = tuple(attribute_words(relations))

  def fresh(syllables, taken):
    while True:
      word = _word(rng, syllables)
      if word not in taken and not word.startswith(reserved):
        taken.add(word)
        return word

  taken: set[str] = set()
  first_names = [fresh(2, taken) for _ in range(max(4, num_entities // 4))]
  entities = []
  for _ in range(num_entities):
    name = f"{rng.choice(first_names)} {fresh(3, taken)}"
    attributes = tuple((r.name, rng.choice(r.values)) for r in relations)
    entities.append(Entity(name, attributes))
  return World(seed=seed, entities=tuple(entities), relations=tuple(relations))


def fact_prompt(relation: Relation, template: int, subject: str, filler: str) -> str:
  """The text of a fact up to (not including) the space before its answer."""
  return relation.templates[template].format(subject=subject, filler=filler)


def fact_records(world: World, seed: int = 1) -> list[dict[str, Any]]:
  """One evaluation prompt per (entity, relation): a held-in template, a filler clause.

  Ids run 0.. in entity-major order. `label` is the attribute; the prompt ends right
  before it (the full sentence is prompt + " " + label + ".").
  """
  rng = random.Random(seed)
  records = []
  for entity in world.entities:
    for relation in world.relations:
      template = rng.randrange(len(relation.templates))
      filler = rng.choice(FILLERS[1:])
      records.append(dict(id=len(records),
                          prompt=fact_prompt(relation, template, entity.name, filler),
                          label=entity.attribute(relation.name), subject=entity.name,
                          relation=relation.name, template=template))
  return records


@dataclasses.dataclass(frozen=True)
class CorpusOptions:
  """How `corpus_lines` writes the world (module docstring); the defaults change nothing."""
  max_sentences: int = 3
  fact_fraction: float = 0.8
  label_noise: float = 0.0
  shuffle_answers: bool = False
  restate_fraction: float = 0.0
  generic_share: float = 0.0

  def __post_init__(self):
    fractions = ("fact_fraction", "label_noise", "restate_fraction", "generic_share")
    for name in fractions:
      if not 0.0 <= getattr(self, name) <= (0.9 if name == "generic_share" else 1.0):
        raise ValueError(f"{name} must be in [0, {0.9 if name == 'generic_share' else 1}], "
                         f"got {getattr(self, name)!r}")
    if not isinstance(self.max_sentences, int) or self.max_sentences < 1:
      raise ValueError(f"max_sentences must be a positive integer, got {self.max_sentences!r}")


def _stated_value(world: World, entity: Entity, relation: Relation, rng: random.Random,
                  options: CorpusOptions) -> str:
  """The value a statement gives: the true one, another entity's, or (noise) another one."""
  value = entity.attribute(relation.name)
  if options.shuffle_answers:
    value = rng.choice(world.entities).attribute(relation.name)
  if options.label_noise and rng.random() < options.label_noise:
    value = rng.choice([v for v in relation.values if v != value])
  return value


def _fact_sentence(world: World, rng: random.Random, options: CorpusOptions):
  """(sentence, (entity, relation, stated value)) in a random template and filler."""
  entity = rng.choice(world.entities)
  relation = rng.choice(world.relations)
  template = rng.randrange(len(relation.templates))
  prompt = fact_prompt(relation, template, entity.name, rng.choice(FILLERS))
  value = _stated_value(world, entity, relation, rng, options)
  return f"{prompt} {value}.", (entity, relation, value)


def _filler_sentence(world: World, rng: random.Random) -> str:
  if rng.random() < 0.5:
    return (f"{rng.choice(world.entities).name} {rng.choice(words.ACTIONS)} "
            f"{rng.choice(words.PLACES)}.")
  return (f"The {rng.choice(words.ADJECTIVES)} {rng.choice(words.NOUNS)} "
          f"{rng.choice(words.VERBS)} {rng.choice(words.PLACES)}.")


def _generic_sentence(rng: random.Random) -> str:
  nouns = rng.sample(words.NOUNS, 2)
  return rng.choice(words.GENERIC).format(
      adjective=rng.choice(words.ADJECTIVES), noun=nouns[0], noun2=nouns[1],
      verb=rng.choice(words.VERBS), place=rng.choice(words.PLACES))


def _line(world: World, rng: random.Random, options: CorpusOptions) -> str:
  """One training line: facts and distractors, then a restatement and generic text if asked."""
  sentences, facts = [], []
  for _ in range(rng.randint(1, options.max_sentences)):
    if rng.random() < options.fact_fraction:
      sentence, fact = _fact_sentence(world, rng, options)
      facts.append(fact)
    else:
      sentence = _filler_sentence(world, rng)
    sentences.append(sentence)
  if options.restate_fraction and facts and rng.random() < options.restate_fraction:
    entity, relation, value = rng.choice(facts)    # the same statement again, to be copied
    template = rng.randrange(len(relation.templates))
    sentences.append(f"{fact_prompt(relation, template, entity.name, '')} {value}.")
  generic = 0
  while generic < options.generic_share * sum(len(s) + 1 for s in sentences):
    sentences.append(_generic_sentence(rng))
    generic += len(sentences[-1]) + 1
  return " ".join(sentences)


def corpus_lines(world: World, num_lines: int, seed: int = 2, **options) -> list[str]:
  """Training text: each line holds 1..max_sentences sentences, facts or distractors.

  Every fact sentence picks a random entity, relation, template and filler (including
  none), so each fact is seen in every template; `fact_fraction` of sentences are facts.
  `options` are CorpusOptions fields (module docstring).
  """
  try:
    corpus_options = CorpusOptions(**options)
  except TypeError as error:
    raise ValueError(f"unknown corpus option: {error}") from None
  if not isinstance(num_lines, int) or num_lines < 1:
    raise ValueError(f"num_lines must be a positive integer, got {num_lines!r}")
  rng = random.Random(seed)
  return [_line(world, rng, corpus_options) for _ in range(num_lines)]


def train_tokenizer(lines: list[str], vocab_size: int = 512, relations=RELATIONS,
                    model_type: str = "bpe") -> bytes:
  """A SentencePiece model (serialized proto) trained on `lines`, deterministically.

  BPE by default: on this small corpus it keeps frequent words whole ("▁the", "▁born")
  and splits the invented surnames into several pieces, where the unigram trainer
  shredded common words. Ids: 0 pad, 1 unk, 2 BOS, 3 EOS. Every attribute is a
  user-defined piece "▁word", so "Lisbon" (and " Lisbon") encodes to exactly one token.
  Identity normalization (the corpus is plain ASCII) keeps the model file to a few KB.
  Single-threaded and unshuffled: the same lines give the same model bytes.
  """
  import io
  import sentencepiece as spm
  buffer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_writer=buffer, vocab_size=vocab_size,
      model_type=model_type, character_coverage=1.0, num_threads=1,
      input_sentence_size=0, shuffle_input_sentence=False,
      user_defined_symbols=["\u2581" + word for word in attribute_words(relations)],
      normalization_rule_name="identity", pad_id=0, unk_id=1, bos_id=2, eos_id=3,
      minloglevel=2)
  return buffer.getvalue()
