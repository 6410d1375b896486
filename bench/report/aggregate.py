"""From validated result files to leaderboard tables, one per (task@version, profile, metric).

Rows are (method, config hash): two configs of one method, or a run with an overridden budget,
are separate rows and never averaged together. Columns are the task's datasets. A cell holds the
mean over seeds with a Student-t 95% interval (bench/stats.py), the seeds it has and lacks, and a
paired comparison with full fine-tuning over the seeds both share. The papers' numbers sit in
their own fields of the same table, taken only from reference/reported.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from bench.errors import BenchError
from bench.report.load import BASELINE, Loaded, ResultSet, section_key_str
from bench.report.reported import ReportedValue
from bench.stats import Interval, holm, minimum_detectable_effect, paired_difference, paired_p_value, t_interval

ALPHA = 0.05  # family-wise error rate of a table's marks (Holm-Bonferroni over all its comparisons)


@dataclass(frozen=True)
class MetricInfo:
    key: str
    title: str
    lower_is_better: bool
    digits: int
    value: Callable  # RunResult -> float | None


METRICS = {
    "fid": MetricInfo("fid", "FID", True, 2, lambda r: r.metrics.fid),
    "cfid": MetricInfo("cfid", "cFID (clean-fid)", True, 2, lambda r: r.metrics.cfid),
    "kid": MetricInfo("kid", "KID", True, 4, lambda r: r.metrics.kid.mean if r.metrics.kid else None),
}


@dataclass
class Cell:
    interval: Interval
    values: dict[int, float]  # seed -> value
    missing_seeds: list[int]
    vs_baseline: Interval | None = None  # paired (method - full-ft) over shared seeds
    p_value: float | None = None  # paired t-test of that difference
    p_holm: float | None = None  # Holm-adjusted within its family: the means, or the per-dataset cells
    significant: int = 0  # -1: lower than full-ft, +1: higher; 0: not significant after Holm, or no pairing
    mde: float | None = None  # promotion cells: smallest true effect detected with 80% power (bench.stats)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.values)


@dataclass
class Row:
    method: str
    config_hash: str
    steps: int
    budget_override: bool
    trainable_fraction: float | None
    cells: dict[str, Cell] = field(default_factory=dict)  # dataset -> cell
    mean: Cell | None = None  # over all of the task's datasets, per seed
    promotion: dict[str, Cell] = field(default_factory=dict)  # dataset or "mean" -> relative promotion
    promotion_datasets: list[str] = field(default_factory=list)
    reported_only: bool = False

    @property
    def label(self) -> str:
        return self.method


@dataclass
class Table:
    task: str
    version: int
    profile: str
    metric: MetricInfo
    datasets: list[str]
    expected_seeds: list[int]
    rows: list[Row]
    reported: dict[tuple[str, str], ReportedValue]  # (method, dataset|"mean") -> value
    reported_promotion: dict[tuple[str, str], ReportedValue]
    notes: list[str] = field(default_factory=list)
    regime: list = field(default_factory=list)  # bench.preconditions.Outcome per declared precondition
    head_to_head: list = field(default_factory=list)  # bench.report.head_to_head.HeadToHead per declared pair

    @property
    def key(self) -> str:
        return f"{self.task}@v{self.version}"

    @property
    def slug(self) -> str:
        return f"{self.task}-v{self.version}-{self.profile}-{self.metric.key}"

    def baseline_row(self, row: Row) -> Row | None:
        """full-ft with the same training budget (a --steps override is compared with its own kind)."""
        cands = [r for r in self.rows if r.method == BASELINE and not r.reported_only and r.steps == row.steps]
        if not cands:
            return None
        return max(cands, key=lambda r: (sum(len(c.values) for c in r.cells.values()), r.config_hash))


def sections(rs: ResultSet) -> list[tuple[str, int, str]]:
    return sorted({r.section for r in rs.runs})


def _dataset_order(runs: list[Loaded]) -> list[str]:
    """The task's dataset order (from its task file), falling back to the recorded spec's keys."""
    r0 = runs[0].data
    try:
        from bench.tasks import load_task

        task = load_task(r0.task, r0.profile)
        if task.file.version == r0.task_version:
            return list(task.spec.datasets)
    except BenchError:
        pass
    return sorted(r0.resolved_spec["spec"]["datasets"])


def _cell(values: dict[int, float], expected: list[int]) -> Cell:
    return Cell(t_interval([values[s] for s in sorted(values)]), dict(values),
                [s for s in expected if s not in values])


def build_table(runs: list[Loaded], metric: str, reported: list[ReportedValue]) -> Table:
    keys = {r.section for r in runs}
    if len(keys) != 1:
        raise BenchError("refusing to aggregate across task versions or profiles: "
                         + ", ".join(section_key_str(k) for k in sorted(keys)))
    (task, version, profile), = keys
    info = METRICS[metric]
    datasets = _dataset_order(runs)
    expected = list(runs[0].data.resolved_spec["spec"].get("seeds", []))
    groups: dict[tuple[str, str], list[Loaded]] = {}
    for r in runs:
        groups.setdefault((r.data.method, r.data.config_hash), []).append(r)
    rows = []
    notes = []
    for (method, cfg), group in groups.items():
        first = group[0].data
        tr = first.training
        row = Row(method, cfg, int(first.budget.get("steps", tr.steps)), first.budget_override,
                  tr.trainable_params / tr.total_params if tr.total_params else None)
        per_ds: dict[str, dict[int, float]] = {}
        for r in group:
            v = info.value(r.data)
            if v is not None:
                per_ds.setdefault(r.data.dataset, {})[r.data.seed] = float(v)
        for ds, values in per_ds.items():
            if ds not in datasets:
                notes.append(f"{method} [{cfg}]: dataset {ds!r} is not in the task; not shown")
                continue
            row.cells[ds] = _cell(values, expected)
        common = set.intersection(*(set(row.cells[d].values) for d in datasets)) if all(
            d in row.cells for d in datasets) else set()
        if common:
            row.mean = _cell({s: sum(row.cells[d].values[s] for d in datasets) / len(datasets) for s in common},
                             expected)
        if row.cells:
            rows.append(row)
    reported_here = [r for r in reported if r.task == task]
    rep = {(r.method, r.dataset): r for r in reported_here if r.metric == metric}
    # The papers' relative promotion is of FID; it does not belong next to another metric.
    rep_promo = ({(r.method, r.dataset): r for r in reported_here if r.metric == "relative_promotion"}
                 if metric == "fid" else {})
    present = {r.method for r in rows}
    for method in sorted({m for m, _ in rep} | {m for m, _ in rep_promo}):
        if method not in present and any(m == method for m, _ in rep):
            rows.append(Row(method, "", 0, False, None, reported_only=True))
    rows.sort(key=lambda r: (r.reported_only, r.method != BASELINE, r.method, r.steps, r.config_hash))
    table = Table(task, version, profile, info, datasets, expected, rows, rep, rep_promo, notes)
    _compare_with_baseline(table)
    return table


def _compare_with_baseline(table: Table) -> None:
    """Paired comparisons with full-ft: per dataset and on the mean over datasets, each a paired
    t-test over the seeds both share. The marks are corrected for multiple comparisons with
    Holm-Bonferroni within two families (the means, one per method; the per-dataset cells), each
    holding a family-wise error rate of ALPHA. Relative-promotion cells carry their
    minimum detectable effect (80% power at ALPHA, from their own per-seed spread)."""
    lower = table.metric.lower_is_better
    compared: dict[tuple, Cell] = {}
    for row in table.rows:
        if row.reported_only or row.method == BASELINE:
            continue
        base = table.baseline_row(row)
        if base is None:
            continue
        per_seed_promo: dict[str, dict[int, float]] = {}
        pairs = [(ds, cell, base.cells.get(ds)) for ds, cell in row.cells.items()] + [("mean", row.mean, base.mean)]
        for ds, cell, bcell in pairs:
            if cell is None or bcell is None:
                continue
            cell.vs_baseline = paired_difference(cell.values, bcell.values)
            cell.p_value = paired_p_value(cell.values, bcell.values)
            if cell.p_value is not None:
                compared[(row.method, row.config_hash, ds)] = cell
            shared = sorted(set(cell.values) & set(bcell.values))
            if shared and ds != "mean":
                # Diff-Tuning's "relative promotion": (baseline - method) / baseline, > 0 is better.
                sign = 1.0 if lower else -1.0
                per_seed_promo[ds] = {s: sign * (bcell.values[s] - cell.values[s]) / bcell.values[s] for s in shared}
        for ds, vals in per_seed_promo.items():
            row.promotion[ds] = _cell(vals, table.expected_seeds)
        if per_seed_promo:
            row.promotion_datasets = [d for d in table.datasets if d in per_seed_promo]
            common = set.intersection(*(set(v) for v in per_seed_promo.values()))
            if common:
                row.promotion["mean"] = _cell(
                    {s: sum(v[s] for v in per_seed_promo.values()) / len(per_seed_promo) for s in common},
                    table.expected_seeds)
        for cell in row.promotion.values():
            cell.mde = minimum_detectable_effect(cell.interval.std, cell.interval.n, ALPHA)
    # Two families, each Holm-corrected: the headline question (one comparison per method, on the
    # mean over datasets) and the per-dataset cells (all methods x datasets). Pooling them would make
    # one method's verdict depend on how many datasets every other method was also compared on.
    for family in (lambda ds: ds == "mean", lambda ds: ds != "mean"):
        members = {k: c for k, c in compared.items() if family(k[2])}
        adjusted = holm({k: c.p_value for k, c in members.items()})
        for key, cell in members.items():
            cell.p_holm = adjusted[key]
            if cell.p_holm < ALPHA and cell.vs_baseline is not None:
                cell.significant = -1 if cell.vs_baseline.mean < 0 else 1


def build_tables(rs: ResultSet, reported: list[ReportedValue]) -> list[Table]:
    """One table per (task@version, profile, metric present in its results), in a stable order.
    A study with its own tables (the ControlNet convergence study: steps, not a metric against
    full fine-tuning) is left to them (`StudyReport.own_tables`)."""
    from bench.report.study import study_reports

    from bench.preconditions import check
    from bench.report.head_to_head import head_to_heads

    own_tables = {st.family for st in study_reports() if st.own_tables}
    out = []
    for section in sections(rs):
        runs = [r for r in rs.runs if r.section == section and r.data.family not in own_tables]
        regime = check(*section, rs.runs + rs.variants, rs.analyses) if runs else []
        for metric, info in METRICS.items():
            if any(info.value(r.data) is not None for r in runs):
                out.append(build_table(runs, metric, reported))
                out[-1].regime = regime
                out[-1].head_to_head = head_to_heads(out[-1], runs)
    return out


def reported_without_results(tables: list[Table], reported: list[ReportedValue]) -> list[ReportedValue]:
    """Reported numbers of tasks that have no reproduced results yet (listed, never hidden)."""
    covered = {(t.task, t.metric.key) for t in tables} | {(t.task, "relative_promotion") for t in tables}
    # Trainable shares are not results of a run; `bench ls --params` shows them beside the counts.
    return [r for r in reported if (r.task, r.metric) not in covered and r.metric != "trainable_percent"]
