"""The rule that calls a compensation effect *clear*, fixed before the runs it judges.

A part of the compensation (the total, its attention part or its MLP part) after ablating
one component is clear when, with the responses read with the clean run's final sigma
(SIGMA), all three hold:

  1. the within-prompt slope's 95% cluster-bootstrap interval lies above 0;
  2. the within-prompt slope is at least MIN_EFFECT = 0.1 (a tenth of the lost DE
     restored, per unit lost, within a prompt);
  3. the ratio of means (mean part / mean lost DE) is defined - the lost DE is well away
     from 0 (`statistics.ratio_of_means`) - and at least MIN_EFFECT: on average the
     ablation is repaired, not deepened.

Why these, from the controls of the dropout study (studies/dropout: an untrained random
initialisation and a model trained on shuffled answers, both 8 layers, 1,000 prompts),
as measured with the across-prompt estimator before this rule was written:

  - "The interval excludes 0" alone is met by both controls: their attention parts at the
    middle layers are at most 0.026 in size, yet 1,000 prompts resolve 0.01, and several
    of those intervals exclude 0 (random init, attention layer 2: +0.006 [+0.001,
    +0.012]; shuffled, layer 2: +0.026 [+0.022, +0.030]). Condition 2's floor of 0.1 is
    four times the largest of them, and effects smaller than a tenth of the loss are far
    from the paper's 0.7 in any case.
  - A slope alone is met too. Untrained MLPs respond to a perturbation of the residual
    stream in proportion to it, with a sign fixed by their random weights, so the
    controls' total compensation slopes at the middle layers reach +0.29 [+0.19, +0.40]
    and +0.11 [+0.06, +0.16] (random init, MLP layers 2 and 4), +0.11 [+0.11, +0.12] and
    +0.18 [+0.16, +0.20] (shuffled, MLP layers 3 and 5): at least 0.1, intervals above 0.
    Their ratios of means at those layers are -0.66, -0.50, -0.03 and +0.07: the response
    scales with the loss but does not restore it on average. Condition 3 asks for the
    paper's picture, a proportional relation with a positive mean, which a mechanical
    linear response of random weights does not give.
  - The slope is the within-prompt one because it compares sources of the same prompt,
    where nothing but the amount removed differs; the interval is the cluster
    bootstrap's, because prompts sharing a subject are not independent.

Which sigma. The three conditions were written for either reading. On the regenerated
controls (configs/study_controls.py, with the within-prompt estimator) the clean reading
calls no middle component of either control clear, but with each ablated run's own
sigma the shuffled-answer control meets all three at 5 of its 8 middle components
(attention layer 2, MLP layers 2-5: within-prompt slopes 0.29-0.49, ratios of means
0.26-0.49). With its own sigma a run counts the final norm's rescaling of the downstream
components as compensation, and that model leans on the norm most (its norm remainder
is 1.8 times its lost DE at attention layer 5). So only the clean reading tells an effect
from a control here: the rule is applied to it (SIGMA), and the flag under the other
reading is reported as "meets the rule with its own sigma", not as clear.

The rule is not tuned on the runs it judges: the controls' numbers above are the only
ones it was chosen from, and `hydra_jax.study` applies it to the regenerated controls as
a check (studies/controls; README, "Dropout and the Hydra effect").

Shapes: none (scalars per component and part).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

MIN_EFFECT = 0.1
SIGMA = "clean"                    # the reading of the final sigma the rule is applied to
PARTS = ("total", "attn", "mlp")   # the parts of the compensation the rule is applied to
RULE = ("clear: with the clean final sigma, the within-prompt slope's 95% cluster-bootstrap "
        f"interval lies above 0, the slope is at least {MIN_EFFECT} and the ratio of means is "
        f"defined and at least {MIN_EFFECT}")


def _finite(value: Optional[float]) -> bool:
  return value is not None and math.isfinite(value)


def is_clear(within_slope: Optional[float], within_ci: Sequence[Optional[float]],
             ratio_of_means: Optional[float]) -> bool:
  """The rule (module docstring) on one part of one component's compensation."""
  low = within_ci[0] if within_ci else None
  return (_finite(within_slope) and _finite(low) and _finite(ratio_of_means)
          and low > 0 and within_slope >= MIN_EFFECT and ratio_of_means >= MIN_EFFECT)
