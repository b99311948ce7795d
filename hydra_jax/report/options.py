"""The report's options (config.report of a job) and their defaults, in one place.

  ablated_layer      the layer of figures 1 and 3 (-1: the attention layer losing most DE)
  ablated_kind       "attn" or "mlp", the kind of that component
  regression_layers  the layers of figure 7 (empty: up to 8 spread evenly)
  late_mlps          MLP layers of the erasure figure (0: a quarter of the layers, at least 2)
  bootstrap          resamples of every confidence interval (0: no intervals)
  bootstrap_seed     their seed
  figures            False: summary.json and report.md without the PNGs

The job's config takes its report section from here (`job.config.defaults`); a saved run
missing a key reads it from here too.
"""

DEFAULT_CHOICES = dict(ablated_layer=-1, ablated_kind="attn", regression_layers=(), late_mlps=0,
                       bootstrap=1000, bootstrap_seed=0, figures=True)
ABLATED_KINDS = ("attn", "mlp")
