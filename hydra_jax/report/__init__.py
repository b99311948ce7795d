"""The report of a sweep: summary.json, the paper's figures and report.md.

  summary             per-layer statistics and the headline from results.npz; write / redraw
  options             config.report: the report's options and their defaults
  statistics          the cluster bootstrap, intervals, the guarded ratio, spread over
                      sources, localisation (numpy only)
  estimators          the across-prompt and within-prompt slopes, the ratio of means and the
                      cluster-robust standard error
  restored            per component, both estimators under both sigma readings, the rule
  clear               the rule that calls an effect clear, and why
  dose                the dose-response check
  headline            the numbers set beside the paper's
  headline_figure     the fraction restored per layer, the report's first figure
  headline_text       the headline's sentences and short table, and the per-layer appendix
  drawing             which figures, in which order, with which arguments
  figures             the paper's figures 1, 2, 3, the response matrix, late-MLP erasure
  regression_figures  the paper's figures 7, 7d, 8 and the localisation figure
  captions            one sentence per figure computed from the run, beside the paper's finding
  markdown            report.md laid out from the summary
  heads               the per-head protocol's summary, figures and report.md
  results             results.npz's component and axis names; load(workdir) -> Results
"""

from hydra_jax.report.results import Results, load  # noqa: F401
