"""The synthetic fact world: seeded, well-formed prompts, single-token labels (about 3 s)."""

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
