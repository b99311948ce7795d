"""The main job: config -> plan -> model and prompts -> chunked sweep -> report.

  config    the job config's schema, defaults and checks (every field named in errors)
  plan      the model's size, bytes per device and FLOPs, before anything is allocated
  loading   the model (embedded, Hugging Face, own checkpoint, random) and the kept prompts
  chunks    cutting the kept prompts into chunks of the same shapes, and sweeping one
  run       the job itself: run(config, workdir) -> summary
  heads     the per-head protocol's driver (config.sweep.protocol="heads")
"""
