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
    corpus_lines(world, num_lines, seed)   -> training text: fact sentences in every
                                              template plus distractor filler sentences
    attribute_words()                      -> every attribute; the tokenizer keeps each
                                              as one piece "▁word", so a label is one token
    train_tokenizer(lines, vocab_size)     -> a SentencePiece BPE model trained on the corpus

Everything is drawn from `random.Random(seed)`, whose streams Python keeps stable, so
a seed reproduces the world and the corpus exactly.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any


@dataclasses.dataclass(frozen=True)
class Relation:
  """A relation: its attribute vocabulary and its templates (prompt part, no answer)."""
  name: str
  values: tuple[str, ...]
  templates: tuple[str, ...]   # with {subject} and {filler}; the answer follows a space


RELATIONS = (
    Relation("born_in",
             ("Lisbon", "Oslo", "Cairo", "Lima", "Dublin", "Vienna", "Prague", "Seoul",
              "Quito", "Perth", "Nairobi", "Bergen"),
             ("{subject}{filler} was born in the city of",
              "{subject}{filler} first saw the light of day in",
              "The birth certificate of {subject}{filler} names the city of")),
    Relation("plays_instrument",
             ("piano", "violin", "guitar", "cello", "flute", "drums", "harp", "trumpet",
              "clarinet", "banjo"),
             ("{subject}{filler} plays the",
              "{subject}{filler} practises every evening on the",
              "On stage, {subject}{filler} is known for playing the")),
    Relation("plays_sport",
             ("tennis", "hockey", "rugby", "golf", "cricket", "baseball", "soccer",
              "volleyball", "badminton", "fencing"),
             ("{subject}{filler} is a professional player of",
              "{subject}{filler} trains every morning for",
              "The favourite sport of {subject}{filler} is")),
    Relation("works_for",
             ("Norvex", "Altima", "Quillon", "Brightway", "Solstra", "Kendrik", "Marlowe",
              "Tessaro", "Vandel", "Orbitek"),
             ("{subject}{filler} works for a company called",
              "{subject}{filler} has a job at",
              "Every payslip of {subject}{filler} comes from")),
    Relation("native_language",
             ("French", "German", "Spanish", "Italian", "Dutch", "Polish", "Greek",
              "Swedish", "Finnish", "Turkish"),
             ("{subject}{filler} grew up speaking",
              "The mother tongue of {subject}{filler} is",
              "{subject}{filler} writes letters home in")),
)

# Clauses between the subject and the relation phrase ("" states the fact directly).
FILLERS = ("", ", as the old records show,", ", according to friends,", ", it is said,",
           ", as everyone in town knows,", ", we are told,", ", by all accounts,",
           ", to nobody's surprise,")

# Distractor sentences: a small grammar, some of them naming a person without a fact.
_ADJECTIVES = ("old", "quiet", "small", "green", "busy", "narrow", "bright", "distant")
_NOUNS = ("bridge", "market", "garden", "road", "harbour", "tower", "library", "village")
_VERBS = ("stood", "appeared", "waited", "remained", "grew", "changed", "slept")
_PLACES = ("near the river", "beyond the hills", "in the morning", "after the storm",
           "under a grey sky", "for many years", "at the end of summer")
_ACTIONS = ("took a long walk", "wrote a short letter", "met an old friend",
            "bought fresh bread", "read a thick book", "painted the fence")

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "kr", "tr", "st", "sh", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "rn", "x")


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
  parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
  return ("".join(parts) + rng.choice(_CODAS)).capitalize()


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


def _fact_sentence(world: World, rng: random.Random) -> str:
  entity = rng.choice(world.entities)
  relation = rng.choice(world.relations)
  template = rng.randrange(len(relation.templates))
  prompt = fact_prompt(relation, template, entity.name, rng.choice(FILLERS))
  return f"{prompt} {entity.attribute(relation.name)}."


def _filler_sentence(world: World, rng: random.Random) -> str:
  if rng.random() < 0.5:
    return f"{rng.choice(world.entities).name} {rng.choice(_ACTIONS)} {rng.choice(_PLACES)}."
  return (f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_VERBS)} "
          f"{rng.choice(_PLACES)}.")


def corpus_lines(world: World, num_lines: int, seed: int = 2, *, max_sentences: int = 3,
                 fact_fraction: float = 0.8) -> list[str]:
  """Training text: each line holds 1..max_sentences sentences, facts or distractors.

  Every fact sentence picks a random entity, relation, template and filler (including
  none), so each fact is seen in every template; `fact_fraction` of sentences are facts.
  """
  if num_lines < 1 or max_sentences < 1 or not 0.0 <= fact_fraction <= 1.0:
    raise ValueError(f"need num_lines >= 1, max_sentences >= 1 and fact_fraction in [0, 1], "
                     f"got {num_lines}, {max_sentences}, {fact_fraction}")
  rng = random.Random(seed)
  lines = []
  for _ in range(num_lines):
    sentences = [_fact_sentence(world, rng) if rng.random() < fact_fraction
                 else _filler_sentence(world, rng)
                 for _ in range(rng.randint(1, max_sentences))]
    lines.append(" ".join(sentences))
  return lines


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
