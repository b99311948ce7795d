"""The words of the synthetic fact world: relations with their values and templates,
filler clauses, distractor and generic sentence parts, and name syllables.

  RELATIONS        the five relations of the embedded world (do not change: its corpus
                   and prompts are reproduced from them byte for byte)
  EXTRA_RELATIONS  five more for larger worlds; relations(count) takes the first `count`
                   of ALL_RELATIONS. Every value is unique across relations and becomes
                   one tokenizer piece.
"""

from __future__ import annotations

import dataclasses


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

# More relations for larger worlds (`relations(count)` takes the first ones in order).
EXTRA_RELATIONS = (
    Relation("studied",
             ("physics", "history", "biology", "philosophy", "medicine", "economics",
              "chemistry", "poetry", "geology", "astronomy"),
             ("{subject}{filler} studied",
              "At university, {subject}{filler} took a degree in",
              "The favourite subject of {subject}{filler} was")),
    Relation("favourite_colour",
             ("crimson", "turquoise", "amber", "violet", "indigo", "scarlet", "olive",
              "maroon", "ivory", "teal"),
             ("{subject}{filler} likes the colour",
              "The front door of {subject}{filler} is painted",
              "{subject}{filler} always wears something")),
    Relation("owns_pet",
             ("parrot", "hamster", "tortoise", "ferret", "rabbit", "goldfish", "iguana",
              "poodle", "beagle", "canary"),
             ("{subject}{filler} owns a pet",
              "The only animal in the home of {subject}{filler} is a",
              "{subject}{filler} walks around with a")),
    Relation("drives",
             ("Volvo", "Saab", "Skoda", "Fiat", "Lancia", "Opel", "Dacia", "Lada", "Rover",
              "Peugeot"),
             ("{subject}{filler} drives a car made by",
              "The car of {subject}{filler} is a",
              "{subject}{filler} saved for years to buy a")),
    Relation("favourite_food",
             ("pasta", "sushi", "curry", "paella", "risotto", "dumplings", "tacos",
              "couscous", "goulash", "falafel"),
             ("{subject}{filler} loves to eat",
              "For dinner {subject}{filler} usually cooks",
              "The favourite dish of {subject}{filler} is")),
)
ALL_RELATIONS = RELATIONS + EXTRA_RELATIONS


def relations(count: int = len(RELATIONS)) -> tuple[Relation, ...]:
  """The first `count` relations of ALL_RELATIONS (5: the embedded world's)."""
  if not isinstance(count, int) or not 1 <= count <= len(ALL_RELATIONS):
    raise ValueError(f"num_relations must be an integer in [1, {len(ALL_RELATIONS)}], got {count!r}")
  return ALL_RELATIONS[:count]


# Clauses between the subject and the relation phrase ("" states the fact directly).
FILLERS = ("", ", as the old records show,", ", according to friends,", ", it is said,",
           ", as everyone in town knows,", ", we are told,", ", by all accounts,",
           ", to nobody's surprise,")

# Distractor sentences: a small grammar, some of them naming a person without a fact.
ADJECTIVES = ("old", "quiet", "small", "green", "busy", "narrow", "bright", "distant")
NOUNS = ("bridge", "market", "garden", "road", "harbour", "tower", "library", "village")
VERBS = ("stood", "appeared", "waited", "remained", "grew", "changed", "slept")
PLACES = ("near the river", "beyond the hills", "in the morning", "after the storm",
           "under a grey sky", "for many years", "at the end of summer")
ACTIONS = ("took a long walk", "wrote a short letter", "met an old friend",
            "bought fresh bread", "read a thick book", "painted the fence")

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "kr", "tr", "st", "sh", "th")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ei")
CODAS = ("", "", "", "n", "r", "l", "s", "m", "rn", "x")

# Generic text (no person, no fact): a few sentence shapes over a wider vocabulary.
GENERIC = (
    "The {adjective} {noun} {verb} {place}.",
    "Nobody knew why the {noun} {verb} {place}, but the {adjective} {noun2} did not care.",
    "A {adjective} wind moved through the {noun} and the {noun2} {verb} {place}.",
    "In the {noun}, a {adjective} {noun2} {verb} {place} while the town slept.",
    "Some say the {noun} {verb} {place}; others point to the {adjective} {noun2}.",
)
