"""The synthetic fact world: seeded, well-formed prompts, single-token labels (about 3 s)."""

import numpy as np
import pytest
import sentencepiece as spm

from hydra_jax.train import synthetic


def test_world_is_deterministic_under_a_seed():
  assert synthetic.make_world(20, seed=5) == synthetic.make_world(20, seed=5)
  assert synthetic.make_world(20, seed=5) != synthetic.make_world(20, seed=6)
  world = synthetic.make_world(20, seed=5)
  assert synthetic.fact_records(world, 1) == synthetic.fact_records(world, 1)
  assert synthetic.corpus_lines(world, 50, 2) == synthetic.corpus_lines(world, 50, 2)
  assert synthetic.corpus_lines(world, 50, 2) != synthetic.corpus_lines(world, 50, 3)


def test_entities_have_unique_multiword_names_and_one_value_per_relation():
  world = synthetic.make_world(60, seed=0)
  names = [entity.name for entity in world.entities]
  assert len(set(names)) == 60
  assert all(len(name.split()) == 2 for name in names)
  for entity in world.entities:
    assert [r for r, _ in entity.attributes] == [r.name for r in synthetic.RELATIONS]
    for relation in synthetic.RELATIONS:
      assert entity.attribute(relation.name) in relation.values


def test_prompts_end_right_before_their_label():
  world = synthetic.make_world(10, seed=0)
  records = synthetic.fact_records(world, seed=1)
  assert [r["id"] for r in records] == list(range(10 * len(synthetic.RELATIONS)))
  for record in records:
    entity = next(e for e in world.entities if e.name == record["subject"])
    assert record["label"] == entity.attribute(record["relation"])
    words_before_subject = record["prompt"].split(record["subject"])[0].split()
    assert len(words_before_subject) <= 4                              # the subject comes early
    assert not record["prompt"].endswith(" ")
    relation = next(r for r in synthetic.RELATIONS if r.name == record["relation"])
    # The full sentence the corpus would state, with this prompt's filler.
    assert any(record["prompt"] == synthetic.fact_prompt(relation, record["template"],
                                                         record["subject"], filler)
               for filler in synthetic.FILLERS[1:])


def test_the_corpus_states_every_held_in_fact_sentence_form():
  world = synthetic.make_world(3, seed=0)
  text = " ".join(synthetic.corpus_lines(world, 3000, seed=2, fact_fraction=1.0))
  for record in synthetic.fact_records(world, seed=1):
    relation = next(r for r in synthetic.RELATIONS if r.name == record["relation"])
    plain = synthetic.fact_prompt(relation, record["template"], record["subject"], "")
    assert f"{plain} {record['label']}." in text
    assert f"{record['prompt']} {record['label']}." in text


def test_tokenizer_keeps_every_label_one_token():
  world = synthetic.make_world(30, seed=0)
  lines = synthetic.corpus_lines(world, 3000, seed=2)
  proto = synthetic.train_tokenizer(lines, vocab_size=300)
  assert proto == synthetic.train_tokenizer(lines, vocab_size=300)   # deterministic
  sp = spm.SentencePieceProcessor(model_proto=proto)
  assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2, 3)
  for word in synthetic.attribute_words():
    assert sp.encode(word) == sp.encode(" " + word) == [sp.piece_to_id("\u2581" + word)]
  record = synthetic.fact_records(world)[0]
  assert len(sp.encode(record["subject"])) >= 2                      # names are multi-token
  full = sp.encode(record["prompt"] + " " + record["label"])
  assert full == sp.encode(record["prompt"]) + sp.encode(record["label"])


def test_bad_arguments_raise_value_errors():
  with pytest.raises(ValueError, match="num_entities"):
    synthetic.make_world(0)
  with pytest.raises(ValueError, match="fact_fraction"):
    synthetic.corpus_lines(synthetic.make_world(2), 10, fact_fraction=1.5)


# World and corpus options (issue 12) ---------------------------------------------------------


def _statements(lines, world):
  """(entity, relation, stated value) of every fact sentence in `lines`."""
  owner = {value: relation for relation in world.relations for value in relation.values}
  names = sorted((e.name for e in world.entities), key=len, reverse=True)
  found = []
  for sentence in " ".join(lines).split(". "):
    value = sentence.rstrip(".").split()[-1]
    subject = next((n for n in names if n in sentence), None)
    if value in owner and subject:
      entity = next(e for e in world.entities if e.name == subject)
      found.append((entity, owner[value], value))
  return found


def test_default_options_keep_the_embedded_world_text():
  world = synthetic.make_world(20, seed=5)
  plain = synthetic.corpus_lines(world, 200, 2)
  assert plain == synthetic.corpus_lines(world, 200, 2, label_noise=0.0, restate_fraction=0.0,
                                         generic_share=0.0, shuffle_answers=False)
  assert synthetic.relations() == synthetic.RELATIONS == world.relations


def test_larger_worlds_have_more_relations_with_their_own_words():
  relations = synthetic.relations(10)
  world = synthetic.make_world(320, seed=0, relations=relations)
  assert len(world.entities) == 320 and len({e.name for e in world.entities}) == 320
  words = synthetic.attribute_words(relations)
  assert len(words) == len(set(words)) == sum(len(r.values) for r in relations)
  records = synthetic.fact_records(world, seed=1)
  assert len(records) == 3200 and {r["relation"] for r in records} == {r.name for r in relations}
  with pytest.raises(ValueError, match="num_relations"):
    synthetic.relations(len(synthetic.ALL_RELATIONS) + 1)


@pytest.mark.parametrize("noise", [0.0, 0.2, 0.5])
def test_label_noise_states_another_value_of_the_same_relation(noise):
  world = synthetic.make_world(30, seed=0, relations=synthetic.relations(7))
  lines = synthetic.corpus_lines(world, 3000, seed=2, fact_fraction=1.0, label_noise=noise)
  statements = _statements(lines, world)
  assert len(statements) > 4000
  wrong = np.mean([entity.attribute(relation.name) != value
                   for entity, relation, value in statements])
  assert abs(wrong - noise) < 0.03                 # a few thousand draws: sd about 0.008


def test_shuffled_answers_no_longer_depend_on_the_subject():
  world = synthetic.make_world(30, seed=0)
  lines = synthetic.corpus_lines(world, 3000, seed=2, fact_fraction=1.0, shuffle_answers=True)
  statements = _statements(lines, world)
  true = np.mean([e.attribute(r.name) == v for e, r, v in statements])
  chance = np.mean([np.mean([e.attribute(r.name) == other.attribute(r.name)
                             for other in world.entities]) for e, r, _ in statements[:300]])
  assert abs(true - chance) < 0.03                  # right only as often as a random entity


def test_restated_facts_repeat_an_earlier_statement_of_the_line():
  world = synthetic.make_world(30, seed=0)
  lines = synthetic.corpus_lines(world, 2000, seed=2, fact_fraction=1.0, label_noise=0.3,
                                 restate_fraction=0.5)
  restated = 0
  for line in lines:
    statements = _statements([line], world)
    *earlier, last = statements
    if len(statements) > 1 and last in earlier:
      restated += 1
  assert 0.40 < restated / len(lines) < 0.55       # half the lines, minus chance repeats


def test_generic_text_holds_the_requested_share():
  world = synthetic.make_world(30, seed=0)
  lines = synthetic.corpus_lines(world, 500, seed=2, generic_share=0.75)
  names = [e.name for e in world.entities]
  generic_chars = sum(len(s) + 1 for line in lines for s in line.split(". ")
                      if not any(n in s for n in names)
                      and s.rstrip(".").split()[-1] not in synthetic.attribute_words())
  assert generic_chars / sum(len(line) + 1 for line in lines) >= 0.75
  proto = synthetic.train_tokenizer(lines, vocab_size=300)
  sp = spm.SentencePieceProcessor(model_proto=proto)
  generic_tokens = sum(len(sp.encode(s)) for line in lines for s in line.split(". ")
                       if not any(n in s for n in names))
  # Names take several tokens each: 0.75 of the characters is over half of the tokens.
  assert generic_tokens / sum(len(sp.encode(line)) for line in lines) >= 0.5
  with pytest.raises(ValueError, match="generic_share"):
    synthetic.corpus_lines(world, 5, generic_share=0.95)
  with pytest.raises(ValueError, match="unknown corpus option"):
    synthetic.corpus_lines(world, 5, label_noize=0.1)
