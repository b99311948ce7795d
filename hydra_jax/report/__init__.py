"""The report of a sweep: summary.json, the paper's figures and report.md.

  summary   per-layer statistics and the headline from results.npz; write / redraw
  figures   the paper's figures as PNG (matplotlib)
  markdown  report.md laid out from the summary
"""
