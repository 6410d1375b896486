"""One wording for every verdict on LEADERBOARD.md, decided by the interval and the paper's effect.

Every verdict line is exactly one of five kinds (issue 29; shared notes validity.md section 2):

* ``supports the paper``: the interval excludes 0 on the side of the paper's effect (same sign).
* ``contradicts the paper``: the interval excludes the paper's reported effect (and does not
  support it): it sits wholly on the other side of 0, or between 0 and an effect it cannot reach.
* ``equivalent within ±X``: both interval bounds lie inside a margin the task or family declares
  (and neither of the above holds).
* ``inconclusive``: the interval contains both 0 and the paper's effect; the line says how many
  units of replication (seeds, subjects, ...) would decide it: the n at which the interval, at the
  observed spread, becomes narrower than the paper's effect and so cannot contain both; and the n
  at which a paired t test has 80% power against that effect (the count a study is sized by).
* ``out of regime``: a precondition the task declares does not hold, so the comparison does not
  test the paper's claim whatever its interval.

The paper's effect comes from reference/reported.yaml (bench.report.reported). Where the paper
states only a direction (a qualitative claim, no number), ``paper_effect`` is None and
``paper_sign`` gives the direction: the interval can then support it (excludes 0 on that side) or
contradict it (excludes 0 on the other side), and is otherwise inconclusive, with no seed count
(no effect size to power against). Where the paper states neither, the verdict is always
``inconclusive``, worded "no reported effect to test against" -- an interval excluding 0 is
reported as such but is not called support of a claim nobody made. This is the honest choice: a
verdict about a paper needs something the paper said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np


Kind = Literal["supports", "contradicts", "inconclusive", "equivalent", "out-of-regime"]
KINDS: tuple[str, ...] = ("supports", "contradicts", "inconclusive", "equivalent", "out-of-regime")
# The words each kind opens with on LEADERBOARD.md (tests parse verdict lines by them).
HEADS = {
    "supports": "supports the paper",
    "contradicts": "contradicts the paper",
    "inconclusive": "inconclusive",
    "equivalent": "equivalent within ±",
    "out-of-regime": "out of regime",
}
NO_EFFECT = "no reported effect to test against"
MAX_UNITS = 10000  # beyond this many units a power calculation is reported as "more than"


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    text: str  # the head words plus what decided it, e.g. "inconclusive: ... (about 23 seeds would decide it)"
    units_needed: int | None = None

    def __str__(self) -> str:
        return self.text


def units_to_decide(sd: float, effect: float, n_now: int, alpha: float = 0.05) -> int | None:
    """The smallest n at which a t interval (level 1 - alpha) over n units with per-unit spread `sd`
    is narrower than |effect|, so that it can no longer contain both 0 and the paper's effect: the
    number of units that decides between them. None when it cannot be computed (sd not finite, no
    effect); MAX_UNITS + 1 when more than MAX_UNITS would be needed."""
    from scipy import stats

    if effect is None or sd is None or not np.isfinite(sd) or sd <= 0 or effect == 0 or not np.isfinite(effect):
        return None

    def width(n: int) -> float:
        return 2 * stats.t.ppf(1 - alpha / 2, n - 1) * sd / np.sqrt(n)

    if width(MAX_UNITS) >= abs(effect):
        return MAX_UNITS + 1
    lo, hi = 1, MAX_UNITS  # width falls with n: bisect for the first n whose width is below |effect|
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if width(mid) < abs(effect):
            hi = mid
        else:
            lo = mid
    return max(hi, int(n_now) + 1)


def units_for_power(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8,
                    n_max: int = MAX_UNITS) -> int | None:
    """The smallest n at which a paired two-sided t test at level `alpha` over n units with per-unit
    spread `sd` detects `effect` with probability >= `power` (noncentral t): the seed count a study
    is sized by (validity.md: "size seeds by a power calculation against the paper's effect").
    Unlike units_to_decide it asks for a probability of detection, not a guarantee at the observed
    spread, so it is smaller. None when it cannot be computed; n_max + 1 when more are needed."""
    from scipy import stats

    if effect is None or sd is None or not np.isfinite(sd) or sd <= 0 or not effect or not np.isfinite(effect):
        return None

    def detects(n: int) -> bool:
        if n < 2:
            return False
        df, nc = n - 1, abs(effect) / (sd / np.sqrt(n))
        if nc > 40:  # power is 1 to machine precision
            return True
        crit = stats.t.ppf(1 - alpha / 2, df)
        # sf, not 1 - cdf: scipy's noncentral t cdf returns nan from nc ~ 10 on; the lower tail is ~0 there
        return stats.nct.sf(crit, df, nc) + np.nan_to_num(stats.nct.cdf(-crit, df, nc)) >= power

    if not detects(n_max):
        return n_max + 1
    lo, hi = 1, n_max  # power rises with n: bisect for the first n that reaches it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        hi, lo = (mid, lo) if detects(mid) else (hi, mid)
    return hi


def min_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest |effect| a paired two-sided t test at level `alpha` over n units detects with
    probability `power` (the MDE a study states where its budget cannot reach the paper's effect)."""
    lo, hi = 0.0, 100 * sd
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if (units_for_power(sd, mid, alpha, power, n_max=n) or n + 1) <= n else (mid, hi)
    return hi


def _fmt(x: float, fmt: str) -> str:
    return format(x, fmt)


def classify(low: float, high: float, *, paper_effect: float | None, paper_sign: int | None = None,
             paper_text: str | None = None, margin: float | None = None, out_of_regime: str | None = None,
             sd: float | None = None, n: int | None = None, unit: str = "seeds", fmt: str = "+.3g",
             alpha: float = 0.05) -> Verdict:
    """The verdict of one claim from its interval [low, high] (the effect, in the paper's
    direction convention: the same units and sign as `paper_effect`).

    `paper_text`: how the line names the paper's effect (default: the number in `fmt`).
    `margin`: a declared equivalence margin (same units). `out_of_regime`: the failed
    precondition, in words (wins over everything). `sd`, `n`: the per-unit spread and count the
    interval was computed from, for the seeds-needed count of an inconclusive verdict; `alpha`: one
    minus the interval's confidence (Bonferroni-adjusted where a section makes several claims)."""
    sign = (1 if paper_effect > 0 else -1 if paper_effect < 0 else 0) if paper_effect is not None else (paper_sign or 0)
    name = paper_text or (f"the paper's {_fmt(paper_effect, fmt)}" if paper_effect is not None
                          else "the paper's direction" if sign else NO_EFFECT)
    ci = (f"[{_fmt(low, fmt)}, {_fmt(high, fmt)}]" if math.isfinite(low) and math.isfinite(high)
          else "no interval")
    if out_of_regime:
        shown = f"interval {ci}" if ci != "no interval" else ci
        return Verdict("out-of-regime", f"out of regime: {out_of_regime} ({shown}; {name})")
    if not (math.isfinite(low) and math.isfinite(high)):
        return Verdict("inconclusive", f"inconclusive: no interval (fewer than two {unit}); {name}")
    excl0_pos, excl0_neg = low > 0, high < 0
    if sign and ((sign > 0 and excl0_pos) or (sign < 0 and excl0_neg)):
        size = ("" if paper_effect is None or low <= paper_effect <= high else
                "; it also excludes the paper's value: same direction, a different size")
        return Verdict("supports", f"supports the paper: interval {ci} excludes 0 on the side of {name}{size}")
    if paper_effect is not None and not (low <= paper_effect <= high):
        return Verdict("contradicts", f"contradicts the paper: interval {ci} excludes {name}")
    if paper_effect is None and sign and ((sign > 0 and excl0_neg) or (sign < 0 and excl0_pos)):
        return Verdict("contradicts", f"contradicts the paper: interval {ci} excludes 0 against {name}")
    if margin is not None and -margin < low and high < margin:
        return Verdict("equivalent", f"equivalent within ±{_fmt(margin, fmt.lstrip('+'))}: interval {ci} "
                                     f"inside the declared margin ({name})")
    if not sign:
        where = "excludes 0" if (excl0_pos or excl0_neg) else "contains 0"
        return Verdict("inconclusive", f"inconclusive: {NO_EFFECT} (interval {ci} {where})")
    need = units_to_decide(sd, paper_effect, n or 2, alpha) if paper_effect is not None else None
    if need is None:
        more = (" (no effect size reported, so no number of " + unit + " can be computed to decide it)"
                if paper_effect is None else "")
        return Verdict("inconclusive", f"inconclusive: interval {ci} contains 0 and {name}{more}")
    words = (f"more than {MAX_UNITS} {unit} would be needed to decide it" if need > MAX_UNITS
             else f"about {need} {unit} would decide it (a {100 * (1 - alpha):.3g}% interval narrower than the "
                               f"paper's effect at the observed spread)")
    powered = units_for_power(sd, paper_effect, alpha)
    if powered is not None and powered <= MAX_UNITS:
        words += f"; {powered} {unit} give 80% power to detect it (a t test at the same level)"
    return Verdict("inconclusive", f"inconclusive: interval {ci} contains 0 and {name}; {words}", need)


def kind_of_line(line: str) -> str | None:
    """Which of the five kinds a LEADERBOARD verdict line states (the first head it contains)."""
    found = [(line.find(h), k) for k, h in HEADS.items() if h in line]
    return min(found)[1] if found else None


def adjusted_confidence(claims: int, confidence: float = 0.95) -> float:
    """Bonferroni: the per-claim confidence that keeps a section's family-wise error at 1 - confidence."""
    return 1 - (1 - confidence) / max(1, claims)
