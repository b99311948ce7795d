"""Training small models: the optax loop, the synthetic fact world, the embedded model.

  training   next-token training of a ModelConfig with optax (dropout optional)
  synthetic  a synthetic world of people and attributes, written as text
  embedded   the shipped tiny model: its recipe, build and load
"""
