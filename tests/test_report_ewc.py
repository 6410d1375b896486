"""The EWC table (bench/report/extras.py): values of a fine-tuned DiT are ~1e-6, so they must be
printed in scientific notation (fixed point printed 0.0000 for every row), next to their ratio to
full fine-tuning, paired by dataset and seed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.report.extras import ewc_tables
from bench.stats import t_interval

SECTION = ("dit-transfer", 2, "tiny")
# Per-seed total EWC: full-ft ~2e-6, diff-tuning about 0.6 of it; one seed (3) only full-ft has.
FULL = {"food101": {0: 2.0e-6, 1: 2.2e-6, 2: 1.9e-6, 3: 2.1e-6}, "sun397": {0: 3.0e-6, 1: 3.3e-6, 2: 2.8e-6}}
DIFF = {"food101": {0: 1.2e-6, 1: 1.4e-6, 2: 1.1e-6}, "sun397": {0: 2.0e-6, 1: 2.1e-6, 2: 1.8e-6}}
N_PARAMS = 334_232


def _run(method: str, cfg: str, ds: str, seed: int, total: float, steps: int = 300):
    data = SimpleNamespace(method=method, config_hash=cfg, dataset=ds, seed=seed, budget={"steps": steps},
                           training=SimpleNamespace(steps=steps),
                           metrics=SimpleNamespace(ewc=SimpleNamespace(total=total, mean=total / N_PARAMS,
                                                                       n_params=N_PARAMS)))
    return SimpleNamespace(section=SECTION, data=data)


@pytest.fixture
def table():
    runs = [_run("full-ft", "aaaa", ds, s, v) for ds, per in FULL.items() for s, v in per.items()]
    runs += [_run("diff-tuning", "bbbb", ds, s, v) for ds, per in DIFF.items() for s, v in per.items()]
    [t] = ewc_tables(SimpleNamespace(runs=runs))
    return t


def _row(table, method: str, ds: str) -> dict[str, str]:
    [row] = [r for r in table.rows if r[0] == method and r[2] == ds]
    return dict(zip(table.header, row))


def test_ewc_of_order_1e6_is_never_printed_as_zero(table):
    for row in table.rows:
        cells = dict(zip(table.header, row))
        for col in ("EWC total", "EWC mean"):
            assert not cells[col].startswith("0.0000"), cells[col]
            assert "e-0" in cells[col] or "e-1" in cells[col], cells[col]
    iv = t_interval(list(DIFF["food101"].values()))
    assert _row(table, "diff-tuning", "food101")["EWC total"] == f"{iv.mean:.3e} ± {iv.half_width:.1e} (n=3)"
    assert _row(table, "diff-tuning", "food101")["EWC total"].startswith("1.233e-06 ± ")


def test_ratio_to_full_ft_is_paired_by_dataset_and_seed(table):
    for ds in DIFF:
        ratios = [DIFF[ds][s] / FULL[ds][s] for s in sorted(DIFF[ds])]  # full-ft's seed 3 has no pair
        iv = t_interval(ratios)
        assert _row(table, "diff-tuning", ds)["Total / full-ft"] == f"{iv.mean:.3f} ± {iv.half_width:.3f} (n=3)"
        [csv] = [r for r in table.csv_rows if r[3] == "diff-tuning" and r[5] == ds]
        ratio = dict(zip(table.csv_header, csv))
        assert float(ratio["ratio_to_full_ft"]) == pytest.approx(iv.mean, rel=1e-5)
        assert float(ratio["ratio_ci95_low"]) == pytest.approx(iv.low, rel=1e-5)
        assert ratio["ratio_n"] == 3
        assert _row(table, "full-ft", ds)["Total / full-ft"] == "1 (baseline)"
    # A ratio of 0.6 is not the ratio of the means over unequal seed sets (full-ft has a 4th seed).
    unpaired = (sum(DIFF["food101"].values()) / 3) / (sum(FULL["food101"].values()) / 4)
    assert _row(table, "diff-tuning", "food101")["Total / full-ft"] != f"{unpaired:.3f}"


def test_a_method_without_a_full_ft_run_of_its_budget_gets_no_ratio():
    runs = [_run("full-ft", "aaaa", "food101", s, 2e-6, steps=300) for s in range(3)]
    runs += [_run("diff-tuning", "bbbb", "food101", s, 1e-6, steps=100) for s in range(3)]
    [t] = ewc_tables(SimpleNamespace(runs=runs))
    assert _row(t, "diff-tuning", "food101")["Total / full-ft"] == "—"
