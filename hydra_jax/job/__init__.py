"""The main job: config -> plan -> claim -> model -> model check -> protocol's sweep -> report.

  config    the job config's schema, defaults and checks (every field named in errors)
  model_section   config.model (ModelConfig fields) and the one-line error of a bad field
  model_sources   the table of model sources: embedded, hf, gguf, checkpoint, random
  prompt_sources  the table of prompt sources: embedded, known_facts, counterfact,
            facts_file, random
  plan      the model's size, bytes per device and FLOPs, before anything is allocated
  loading   the model (with its tokenizer) and the kept prompts, asked of the two tables
  chunks    cutting the kept prompts into chunks of the same shapes, and sweeping one
  dose      the dose-response sweep of a few prompts at intermediate strengths
  runtime   devices, mesh, the finished-chunk broadcast and the gather to host (pods)
  run       the job itself, one path for every protocol: run(config, workdir) -> summary,
            sweep_to_store(config, workdir) -> the arrays without the report
  layers    the layer protocol's plan, sweep and report (config.sweep.protocol="layers")
  heads     the per-head protocol's plan, sweep and report (config.sweep.protocol="heads")
  output    its output lines (absl logging) and the chunks' progress lines
"""
