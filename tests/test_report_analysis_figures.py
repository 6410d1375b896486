"""Diff-Tuning's analysis figures (bench/report/analysis_figures.py) from synthetic result files:
convergence from tracked FID (never the training loss), the retention / reconsolidation ablation,
and sweep figures that include the main run at its default value and pool only equal settings.

Result files have the shape bench/runner.py execute writes (method config, budget, sweep, task
overrides, tracking) and sit where the loader expects them, so they go through `load_results`.
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from bench.report.analysis_figures import ablation_arm
from bench.report.figures import plan_figures, render
from bench.report.load import load_results
from bench.planning import run_config_hash
from bench.results import config_dir, write_json_atomic
from bench.tasks import load_task

TASK, PROFILE = "dit-transfer", "tiny"
SLUG = f"{TASK}-v{load_task(TASK, PROFILE).file.version}-{PROFILE}"
DT = {"tau": 1.0, "bank_tau": None, "bank_ratio": 0.2, "retention_weight": 0.1, "lr": None}  # the defaults
TRACK = {"tracking.every_steps": 100}
CURVE_STEPS = [0, 100, 200, 300]

# Final FIDs per seed 0, 1, 2.
FULL = {"food101": [20.0, 21.0, 22.0], "sun397": [30.0, 31.5, 29.0]}
DIFF = {"food101": [18.0, 18.5, 19.5], "sun397": [28.0, 29.0, 29.5]}
TAU = {0.0: [19.0, 19.4, 20.2], 0.5: [18.6, 19.0, 19.9], 2.0: [18.9, 19.8, 20.0]}
NO_BANK = [19.5, 20.5, 20.9]
RETAIN = [20.1, 20.7, 21.3]  # tau=0 with bank_tau=1: the ablation's retention-only arm
BANK = {250: [18.8, 19.6, 20.0], 1000: [17.9, 18.2, 19.0]}
ORACLE_BANK = [16.5, 17.0, 17.4]  # the source's own training images as the bank (issue 30)
SHORT_TAU = [25.0, 26.0]  # tau=0.5 with a budget override: another setting, never pooled


def write(root, method, dataset, seed, fid, *, config=None, sweep=None, overrides=None, steps=None,
          curve=None):
    t = load_task(TASK, PROFILE).with_overrides(overrides or {})
    budget = t.spec.train.model_dump()
    if steps is not None:
        budget["steps"] = steps
    config = {"lr": None} if config is None else config
    overrides, sweep = dict(overrides or {}), dict(sweep or {})
    cfg = run_config_hash(method, config, budget, overrides)
    data = {
        "schema": 1, "task": TASK, "task_version": t.file.version, "family": t.file.family, "profile": PROFILE,
        "dataset": dataset, "method": method, "method_config": config, "config_hash": cfg, "seed": seed,
        "sweep": sweep, "task_overrides": overrides, "budget": budget, "budget_override": steps is not None,
        "metrics": {"fid": fid, "kid": {"mean": fid / 1000, "std": 0.001}},
        "training": {"steps": budget["steps"], "final_loss": 0.05, "resumed_from_step": 0,
                     "loss_curve": [[s, 1.0 / (1 + s)] for s in range(10, budget["steps"] + 1, 10)],
                     "trainable_params": 400_000, "total_params": 400_000, "trainable_fraction": 1.0},
        "samples": {"n": 500, "sha256": "0" * 64, "sampling_seed": 10_000 + seed},
        "reference": {"split": "eval", "n": 1000, "sha256": "1" * 64},
        "provenance": {"commit": "abc", "dirty": False, "packages": {}, "wall_time_s": 1.0},
        "resolved_spec": load_task(TASK, PROFILE).resolved(),  # the profile as written, before overrides
    }
    if curve is not None:
        data["tracking"] = {"every_steps": 100, "num_samples": 200, "events": [],
                            "curves": {"fid": [[s, v] for s, v in zip(CURVE_STEPS, curve)]}}
    path = (root / f"{TASK}@v{t.file.version}" / PROFILE / method / config_dir(cfg, {**overrides, **sweep})
            / dataset / f"seed{seed}.json")
    write_json_atomic(path, data)
    return path


def curve(method: str, seed: int) -> list[float]:
    drop = 14.0 if method == "diff-tuning" else 10.0
    return [40.0, 40.0 - drop / 2 + seed, 40.0 - drop + seed, 40.0 - drop + 0.5 + seed]


def populate(root, *, tracked=True):
    for ds in FULL:
        for seed in range(3):
            write(root, "full-ft", ds, seed, FULL[ds][seed])
            write(root, "diff-tuning", ds, seed, DIFF[ds][seed], config=dict(DT))
            for tau in (0.5, 2.0):
                write(root, "diff-tuning", ds, seed, TAU[tau][seed] + (ds == "sun397"),
                      config={**DT, "tau": tau}, sweep={"tau": tau})
    for seed in range(3):  # food101 only: the ablation and the knowledge-bank sweep
        write(root, "diff-tuning", "food101", seed, TAU[0.0][seed], config={**DT, "tau": 0.0}, sweep={"tau": 0.0})
        write(root, "diff-tuning", "food101", seed, NO_BANK[seed], config={**DT, "bank_ratio": 0.0},
              sweep={"bank_ratio": 0.0})
        write(root, "diff-tuning", "food101", seed, RETAIN[seed], config={**DT, "tau": 0.0, "bank_tau": 1.0},
              sweep={"tau": 0.0})
        for n, fids in BANK.items():
            key = {"knowledge_bank.num_images": n}
            write(root, "diff-tuning", "food101", seed, fids[seed], config=dict(DT), sweep=key, overrides=key)
        oracle = {"knowledge_bank.oracle": True}
        write(root, "diff-tuning", "food101", seed, ORACLE_BANK[seed], config=dict(DT), sweep=oracle, overrides=oracle)
    for seed, fid in enumerate(SHORT_TAU):
        write(root, "diff-tuning", "food101", seed, fid, config={**DT, "tau": 0.5}, sweep={"tau": 0.5}, steps=100)
    if tracked:  # main-config runs rerun with --track 100 on food101, seeds 0 and 1
        for seed in range(2):
            write(root, "full-ft", "food101", seed, FULL["food101"][seed] + 0.3, overrides=TRACK,
                  curve=curve("full-ft", seed))
            write(root, "diff-tuning", "food101", seed, DIFF["food101"][seed] + 0.3, config=dict(DT),
                  overrides=TRACK, curve=curve("diff-tuning", seed))


def load(root):
    rs = load_results(root, tasks={TASK: (load_task(TASK, PROFILE).file.version, ["paper", PROFILE])})
    assert not rs.problems, rs.problem_lines()
    return rs


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    populate(root)
    rs = load(root)
    specs, notes = plan_figures(rs)
    return rs, {s.name: s for s in specs}, notes


def _draw(spec):
    fig = spec.draw()
    return fig, {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.get_title()}


def _errorbars(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            line = c.lines[0]
            out[c.get_label()] = (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
    return out


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_figure_names_and_png(planned):
    rs, specs, notes = planned
    assert len(rs.variants) > 0 and len(rs.runs) == 12  # main runs: 2 methods x 2 datasets x 3 seeds
    expected = {f"{SLUG}-convergence", f"{SLUG}-ablation-diff-tuning", f"{SLUG}-sweep-diff-tuning-tau",
                f"{SLUG}-sweep-diff-tuning-bank_ratio", f"{SLUG}-sweep-diff-tuning-knowledge_bank-num_images",
                f"{SLUG}-efficiency", f"{SLUG}-frontier"}
    assert set(specs) == expected, sorted(specs)
    assert specs[f"{SLUG}-sweep-diff-tuning-tau"].title.startswith("Diff-Tuning: sensitivity to tau (psi(t) exponent)")
    assert "knowledge-bank size" in specs[f"{SLUG}-sweep-diff-tuning-knowledge_bank-num_images"].title
    assert any("skipped ewc" in n for n in notes)
    for spec in specs.values():
        assert render(spec, "png").startswith(b"\x89PNG\r\n\x1a\n"), spec.name


def test_convergence_is_tracked_fid_with_a_band_per_method(planned):
    _, specs, _ = planned
    fig, axes = _draw(specs[f"{SLUG}-convergence"])
    assert set(axes) == {"food101"}  # sun397 has no tracked run
    ax = axes["food101"]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"full-ft (n=2)", "diff-tuning (n=2)"}
    dt = lines["diff-tuning (n=2)"]
    assert list(dt.get_xdata()) == CURVE_STEPS
    assert dt.get_ydata() == pytest.approx(np.mean([curve("diff-tuning", s) for s in range(2)], axis=0))
    assert len(ax.collections) == 2  # a 95% band per method (two seeds each)
    assert "FID" in ax.get_ylabel() and "loss" not in ax.get_ylabel()
    assert "full-ft (n=2)" in _legend_texts(fig)


def test_no_tracking_means_no_convergence_figure_not_a_loss_plot(tmp_path):
    populate(tmp_path, tracked=False)
    specs, notes = plan_figures(load(tmp_path))
    assert not any(s.name.endswith("-convergence") for s in specs)
    assert any("skipped convergence" in n and "no tracked FID (run with --track K)" in n for n in notes), notes


def test_ablation_bars_are_the_four_arms_and_the_oracle_bank(planned):
    rs, specs, _ = planned
    fig, axes = _draw(specs[f"{SLUG}-ablation-diff-tuning"])
    assert set(axes) == {"food101"}  # sun397 has no ablation variant
    ax = axes["food101"]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert [" ".join(t.split("\n(")[0].split("\n")) for t in ticks] == ["full-ft", "retention only",
                                                                       "reconsolidation only", "both", "oracle bank"]
    assert all(t.endswith("(n=3)") for t in ticks)
    heights = [p.get_height() for c in ax.containers if isinstance(c, BarContainer) for p in c.patches]
    assert heights == pytest.approx([np.mean(FULL["food101"]), np.mean(RETAIN), np.mean(NO_BANK),
                                     np.mean(DIFF["food101"]), np.mean(ORACLE_BANK)])
    arms = {ablation_arm(r.data) for r in rs.runs + rs.variants}
    assert arms == {"full-ft", "retention only", "reconsolidation only", "both", "oracle bank", None}
    assert "oracle bank" in specs[f"{SLUG}-ablation-diff-tuning"].title


def test_tau_sweep_includes_the_main_run_at_its_default_and_pools_only_equal_settings(planned):
    _, specs, _ = planned
    fig, axes = _draw(specs[f"{SLUG}-sweep-diff-tuning-tau"])
    assert set(axes) == {"food101", "sun397"}
    bars = _errorbars(axes["food101"])
    main = bars["diff-tuning (n=3)"]
    assert list(main[0]) == [0.0, 0.5, 1.0, 2.0]  # 1.0: the main run, at tau's default
    assert main[1] == pytest.approx([np.mean(TAU[0.0]), np.mean(TAU[0.5]), np.mean(DIFF["food101"]),
                                     np.mean(TAU[2.0])])
    short = bars["diff-tuning (steps=100) (n=2)"]  # other budget: its own series, no default point
    assert list(short[0]) == [0.5] and short[1] == pytest.approx([np.mean(SHORT_TAU)])
    sun = _errorbars(axes["sun397"])["diff-tuning (n=3)"]
    assert list(sun[0]) == [0.5, 1.0, 2.0]
    # full fine-tuning's main run is the reference line, with its band
    ref = [ln for ln in axes["food101"].get_lines() if ln.get_label().startswith("full-ft")]
    assert len(ref) == 1 and ref[0].get_ydata()[0] == pytest.approx(np.mean(FULL["food101"]))
    assert "full-ft (main run) (n=3)" in _legend_texts(fig)


def test_task_path_sweep_reads_the_default_from_the_task_spec(planned):
    _, specs, _ = planned
    _, axes = _draw(specs[f"{SLUG}-sweep-diff-tuning-knowledge_bank-num_images"])
    default = load_task(TASK, PROFILE).spec.knowledge_bank.num_images
    assert default not in BANK
    xs, ys = _errorbars(axes["food101"])["diff-tuning (n=3)"]
    assert list(xs) == sorted([250.0, 1000.0, float(default)])
    assert ys[list(xs).index(default)] == pytest.approx(np.mean(DIFF["food101"]))
    assert "knowledge-bank size" in axes["food101"].get_xlabel()


def test_oracle_bank_table_pairs_the_oracle_with_the_sampled_bank_by_seed(planned):
    from bench.report.analysis_figures import oracle_bank_tables

    rs, _, _ = planned
    (table,) = oracle_bank_tables(rs)
    assert table.slug == f"{SLUG}-oracle-bank"
    food, mean = table.rows
    delta = [o - d for o, d in zip(ORACLE_BANK, DIFF["food101"])]
    assert food[0] == "food101" and food[3].startswith(f"{np.mean(delta):.2f} ± ") and food[3].endswith("(n=3)")
    assert food[4].startswith(f"{np.mean(FULL['food101']):.2f}")  # full fine-tuning beside them
    rel = [100 * (o - d) / d for o, d in zip(ORACLE_BANK, DIFF["food101"])]
    assert mean[3].startswith(f"{np.mean(rel):.1f} ± ")
    assert table.csv_rows[0][6] == pytest.approx(np.mean(delta)) or float(table.csv_rows[0][6]) == pytest.approx(
        np.mean(delta))
