"""The quality-cost frontier (bench/report/frontier.py): the Pareto rule on hand-made points, and
on the committed results: every section with several methods has one, its fronts hold exactly the
non-dominated points, and LEADERBOARD.md, reports/tables and reports/figures carry it."""

from __future__ import annotations

import csv

import pytest

from bench.report.frontier import COSTS, Point, _pareto, frontier_figure, frontiers
from bench.report.load import load_results
from bench.stats import t_interval
from conftest import ROOT


def point(name: str, metric: float, params: float, time: float | None = None) -> Point:
    return Point(name, name, name, "d", t_interval([metric]), {"params": t_interval([params]), "memory": None,
                                                               "time": None if time is None else t_interval([time])}, {})


def test_the_front_is_every_point_no_other_beats_in_both():
    pts = [point("big", 10, 1000, 5), point("small", 30, 10, 1), point("mid", 20, 100, 9),
           point("worse-mid", 25, 100, 2), point("tie", 30, 10, 1)]
    for key in COSTS:
        _pareto(pts, key)
    front = {p.method for p in pts if p.on_front["params"]}
    assert front == {"big", "small", "mid", "tie"}  # worse-mid: mid costs as much and is better
    assert {p.method for p in pts if p.on_front["time"]} == {"big", "small", "tie", "worse-mid"}
    assert not any(p.on_front["memory"] for p in pts)  # not recorded: on no front


@pytest.fixture(scope="module")
def committed():
    return frontiers(load_results(ROOT / "results"))


def test_committed_results_have_a_frontier_per_task_with_several_methods(committed):
    by_task = {f.section[0]: f for f in committed}
    assert {"dit-transfer", "limited-data"} <= set(by_task)
    for f in committed:
        for ds in f.datasets:
            panel = [p for p in f.points if p.dataset == ds]
            assert len(panel) >= 2
            for key in COSTS:
                have = [p for p in panel if p.costs[key] is not None]
                if not have:
                    continue
                best = min(have, key=lambda p: (p.metric.mean, p.costs[key].mean))
                cheapest = min(have, key=lambda p: (p.costs[key].mean, p.metric.mean))
                assert best.on_front[key] and cheapest.on_front[key]
                for p in have:
                    dominated = any(q.costs[key].mean <= p.costs[key].mean and q.metric.mean <= p.metric.mean and
                                    (q.costs[key].mean < p.costs[key].mean or q.metric.mean < p.metric.mean)
                                    for q in have)
                    assert p.on_front[key] == (not dominated)


def test_the_leaderboard_carries_the_frontier_tables_and_figures(committed):
    md = (ROOT / "LEADERBOARD.md").read_text()
    assert "## Quality-cost frontier" in md
    for f in committed:
        rows = list(csv.DictReader((ROOT / "reports" / "tables" / f"{f.slug}.csv").open()))
        assert len(rows) == len(f.points)
        assert sorted(int(r["params_mean"]) for r in rows) == sorted(int(p.costs["params"].mean) for p in f.points)
        name = f"{f.section[0]}-v{f.section[1]}-{f.section[2]}-frontier"
        assert f"(reports/figures/{name}.png)" in md and (ROOT / "reports" / "figures" / f"{name}.png").exists()
        assert f"<h3>{f.section[0]}@v{f.section[1]}/{f.section[2]}</h3>" in (ROOT / "reports" / "index.html").read_text()


def test_one_method_makes_no_frontier():
    rs = load_results(ROOT / "results")
    one = [r for r in rs.runs if r.data.task == "limited-data" and r.data.method == "full-ft"]
    assert frontier_figure(one[0].section, one) is None
