"""Trainable-parameter accounting on the real DiT-XL-2 configuration (built on the meta device)
and on the tiny profile. Expected counts are derived from the architecture's dimensions here,
independently of the methods' code."""

from __future__ import annotations

import re

import pytest
import torch
from diffusers import DiTTransformer2DModel

from bench.params import DIT_XL_2_256, build_without_weights, count_parameters, reported_shares
from bench.registry import build_method, composed_names, method_names
from bench.tasks import load_task
from conftest import bench_cli

PAPER = load_task("dit-transfer", "paper").spec.backbone
TINY = load_task("dit-transfer", "tiny").spec.backbone


def dims(config):
    c = dict(config)
    d = c["num_attention_heads"] * c["attention_head_dim"]
    out = c.get("out_channels") or c["in_channels"]
    return d, c["num_layers"], c["patch_size"], c["in_channels"], out, c["num_embeds_ada_norm"]


def expected(config):
    """Per-tensor-group counts of the original DiT with adaLN-Zero (one timestep embedder and one
    label table, shared by every block), from its dimensions."""
    d, L, p, cin, out, classes = dims(config)
    biases = d + 2 * d + L * (6 * d + 4 * d + 4 * d + d) + 2 * d + p * p * out
    shared = (256 * d + d) + (d * d + d) + (classes + 1) * d  # timestep MLP + label table (+1: null)
    per_block = ((d * 6 * d + 6 * d)  # adaLN-Zero modulation
                 + 4 * (d * d + d)  # q, k, v, out
                 + (d * 4 * d + 4 * d) + (4 * d * d + d))  # MLP
    total = (cin * p * p * d + d) + shared + L * per_block + (d * 2 * d + 2 * d) + (d * p * p * out + p * p * out)
    return {
        "total": total,
        "diffusers_untied": total + (L - 1) * shared,  # diffusers' layout: a copy of `shared` per block
        "full-ft": total,
        "bitfit": biases,
        "lora": L * 3 * 8 * (d + d),
        "adaptformer": L * (d * 64 + 64 + 64 * d + d),
        "vpt-deep": L * 100 * d,
        "difffit": biases + (classes + 1) * d + (L // 2) * 6 * d,
    }


def test_architecture_is_dit_xl_2_and_needs_no_memory():
    assert PAPER.pretrained.repo == "facebook/DiT-XL-2-256"
    model = build_without_weights(PAPER)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model.config.num_layers == 28 and model.config.num_attention_heads * model.config.attention_head_dim == 1152
    assert model.config.sample_size * 8 == 256 and model.config.out_channels == 2 * model.config.in_channels
    e = expected(DIT_XL_2_256)
    # The adapter ties diffusers' per-block embedders: the original DiT-XL/2, which the DiT paper
    # reports as 675M parameters (diffusers' untied layout would be 749.8M).
    assert sum(p.numel() for p in model.parameters()) == e["total"] == 674_834_720
    assert round(e["total"] / 1e6) == 675 and e["diffusers_untied"] == 749_826_464


@pytest.mark.parametrize("name", ["full-ft", "bitfit", "lora", "adaptformer", "vpt-deep", "difffit"])
def test_counts_on_the_real_dit_xl_2(name):
    e = expected(DIT_XL_2_256)
    count = count_parameters(build_method(name), PAPER)
    assert count.backbone == e["total"]
    assert count.trainable == e[name]


@pytest.mark.parametrize("name", ["bitfit", "lora", "adaptformer", "vpt-deep", "difffit"])
def test_composition_does_not_change_what_trains(name):
    assert count_parameters(build_method(f"{name}+diff-tuning"), PAPER).trainable == \
        count_parameters(build_method(name), PAPER).trainable


@pytest.mark.parametrize("name", ["bitfit", "lora", "adaptformer", "vpt-deep", "difffit"])
def test_meta_count_matches_a_real_tiny_model(name):
    """The weightless count equals the count on an instantiated tiny model run through prepare()."""
    from bench.backbone import DiTBackbone
    from bench.method import TrainContext

    method = build_method(name)
    model = DiTBackbone.finalize(DiTBackbone.build(dict(TINY.config)), loaded=False)
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in DiTTransformer2DModel(**TINY.config).parameters())  # tied

    ctx = TrainContext(DiTBackbone(model, None, 1.0, 64, "x"), None, 1000, 8)
    real = sum(p.numel() for _, p in method.trainable_parameters(method.prepare(model, ctx)))
    assert count_parameters(build_method(name), TINY).trainable == real == expected(TINY.config)[name]


def test_shares_agree_with_difffit_table_within_the_documented_differences():
    """baselines/README.md: each share of the original DiT-XL/2 is within 1.5x of DiffFit Tab. 1,
    except DiffFit's, whose difference is the (one) label table the official code trains; without
    it DiffFit agrees too."""
    e = expected(DIT_XL_2_256)
    for name in ["bitfit", "lora", "adaptformer", "vpt-deep"]:
        trainable = count_parameters(build_method(name), PAPER).trainable
        reported = reported_shares("dit-transfer")[name].value / 100
        assert 1 / 1.5 < (trainable / e["total"]) / reported < 1.5, (name, trainable, reported)
    no_tables = count_parameters(build_method("difffit", {"class_embedding": "false"}), PAPER).trainable
    assert 1 / 1.5 < (no_tables / e["total"]) / 0.0012 < 1.5
    with_tables = count_parameters(build_method("difffit"), PAPER).trainable
    assert with_tables - no_tables == 1001 * 1152  # one table, not 28 copies


def test_ls_params_prints_every_method_for_both_profiles():
    proc = bench_cli("ls", "--methods", "--task", "dit-transfer", "--params", check_rc=0)
    e_paper, e_tiny = expected(DIT_XL_2_256), expected(TINY.config)
    rows = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"\s+(\S+)\s+([\d,]+)\s+([\d.]+)%\s+([\d,]+)\s+([\d.]+)%", line)
        if m:
            rows[m.group(1)] = (int(m.group(2).replace(",", "")), float(m.group(3)),
                                int(m.group(4).replace(",", "")), float(m.group(5)))
    from bench.registry import build_method

    every = set(method_names()) | set(composed_names())
    assert set(rows) == {n for n in every if build_method(n).supports("class-transfer")}
    for name in ["bitfit", "lora", "adaptformer", "vpt-deep", "difffit"]:
        for shown in (name, f"{name}+diff-tuning"):
            paper, paper_pct, tiny, tiny_pct = rows[shown]
            assert paper == e_paper[name] and tiny == e_tiny[name]
            assert paper_pct == pytest.approx(100 * paper / e_paper["total"], abs=5e-4)
            assert tiny_pct == pytest.approx(100 * tiny / e_tiny["total"], abs=5e-4)
