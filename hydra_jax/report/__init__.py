"""The report of a sweep: summary.json, the paper's figures and report.md.

  summary             per-layer statistics and the headline from results.npz; write / redraw
  statistics          fits with bootstrap intervals, the guarded ratio, spread over sources,
                      localisation (numpy only)
  headline            the numbers set beside the paper's
  drawing             which figures, in which order, with which arguments
  figures             the paper's figures 1, 2, 3, the response matrix, late-MLP erasure
  regression_figures  the paper's figures 7, 7d, 8 and the localisation figure
  captions            one sentence per figure computed from the run, beside the paper's finding
  markdown            report.md laid out from the summary
  heads               the per-head protocol's summary, figures and report.md
"""
