"""Training small models: the optax loop, the synthetic fact world, the embedded model.

  training    next-token training of a ModelConfig with optax (dropout and sublayer
              stochastic depth optional)
  synthetic   a synthetic world of people and attributes, written as text (options:
              label noise, shuffled answers, restated facts, generic text)
  vocabulary  the words of that world: relations, templates, fillers, name syllables
  embedded    the shipped tiny model: its recipe, build and load
"""
