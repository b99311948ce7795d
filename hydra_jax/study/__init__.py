"""Studies: train a grid of small models and compare their Hydra effect (issue 12).

  arms        the study config (defaults, checks) and its runs: one per (arm, seed)
  build       one run's model: synthetic world, corpus, tokenizer, training, model folder
  sweeps      the main job's sweep of a run's model (`job.run.sweep_to_store`), per variant;
              the job's report of a variant only with variant_reports
  statistics  per-layer measures of one sweep (the report's per-component statistics with
              the model's downstream mask, flat), and more
  entry       one run: its model and its sweeps' measures (what the workers import)
  seeds       inference over training seeds: t intervals, Holm's correction
  compare     study.json, study.md, study.png
  runner      the resumable loop over runs; `python -m hydra_jax.study`
  workers     several processes sharing the runs, one core each (`--workers=N`)
  mediation   the mediation check of one (ablated, responding) attention-layer pair, with
              the direct path's and the in-between layers' shares
              (`python -m hydra_jax.study.mediation`)

Shapes follow the package glossary (hydra_jax/__init__.py).
"""
