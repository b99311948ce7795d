"""The main job: config -> plan -> model and prompts -> chunked sweep -> report.

  config    the job config's schema, defaults and checks (every field named in errors)
  model_section   config.model (ModelConfig fields) and the one-line error of a bad field
  model_sources   the table of model sources: embedded, hf, gguf, checkpoint, random
  prompt_sources  the table of prompt sources: embedded, known_facts, counterfact,
            facts_file, random
  plan      the model's size, bytes per device and FLOPs, before anything is allocated
  loading   the model (with its tokenizer) and the kept prompts, asked of the two tables
  chunks    cutting the kept prompts into chunks of the same shapes, and sweeping one
  dose      the dose-response sweep of a few prompts at intermediate strengths
  run       the job itself: run(config, workdir) -> summary
  output    its output lines (absl logging) and the chunks' progress lines
  heads     the per-head protocol's driver (config.sweep.protocol="heads")
"""
