"""How many seeds decide controlnet-convergence's tiny question (issue 31), from committed results.

    python scripts/controlnet_power.py [--seeds 0 1 2] [--power 0.8]

For controlnet+diff-tuning against controlnet it recomputes, per seed shared by both methods (the
report's own functions, bench/families/controlnet/report.py), the threshold-free speed-up in time
to half of each run's own MSE change over every condition, the speed-up in steps to the
null-calibrated threshold over the step-like conditions, and the relative mean tracked MSE; then
the per-seed sd of each and the smallest number of seeds at which a paired two-sided t test at the
verdicts' Bonferroni level (the report's claims per method) has the asked power against the
paper's reported speed-up (reference/reported.yaml, +24%). Reads results only; prints, asserts
nothing. The task file's tiny `seeds` cite its output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from bench.families.controlnet import report as cn
    from bench.verdicts import min_detectable_effect, units_for_power
    from bench.report.load import load_results
    from bench.report.reported import load_reported

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--power", type=float, default=0.8)
    p.add_argument("--planned", type=int, default=6, help="seeds planned: the MDE at this n is printed")
    p.add_argument("--claims", type=int, default=2, help="claims per method in the report (Bonferroni)")
    args = p.parse_args()
    rs = load_results(ROOT / "results")
    items = [r for r in rs.runs + rs.variants if r.data.task == "controlnet-convergence"
             and r.data.profile == "tiny" and r.data.seed in args.seeds]
    g, _ = cn.calibrate(cn.runs_by(items), items[0].section)
    method = "controlnet+diff-tuning"
    rep = cn.paper_speedup(load_reported(None), "controlnet-convergence", method)
    effect = rep.value if rep else 0.24
    alpha = 0.05 / args.claims
    every, sudden = cn._conditions(g), cn.sudden_conditions(g)

    def steps(raw):
        return (cn.steps_of({0: raw})[0] or {}).get(0)

    print(f"{method} vs controlnet, seeds {args.seeds}; paper effect {effect:+.0%}; alpha {alpha:.4f} "
          f"(Bonferroni over {args.claims}); power {args.power}")
    for label, conds, value, powered in (
            ("time to half of own change (threshold-free)", every, cn._half, True),
            ("steps to calibrated threshold (step-like conditions every run reached)",
             cn.timed_conditions(g, method, sudden), steps, True),
            ("mean tracked MSE, 1 - ratio (threshold-free; the paper reports no effect for it)", every, cn._auc,
             False)):
        sp = cn._speedup_by(g, method, conds, value)
        if len(sp) < 2:
            print(f"- {label}: fewer than 2 seeds ({sp})")
            continue
        sd = float(np.std(sp, ddof=1))
        n = units_for_power(sd, effect, alpha, args.power) if powered else None
        need = f"seeds for {args.power:.0%} power against {effect:+.0%}: {n}; " if powered else ""
        print(f"- {label}: per seed {[round(x, 3) for x in sp]}, mean {np.mean(sp):+.3f}, sd {sd:.3f}; {need}"
              f"MDE at {args.planned} seeds: {min_detectable_effect(sd, args.planned, alpha, args.power):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
