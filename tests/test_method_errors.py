"""Bad method input: an unknown method, an unknown base in a composition, a config key that does
not exist (or a bad value), a method on a task family it does not support. Each is one line on
stderr, exit code 2, and nothing written under the results or cache folders."""

from __future__ import annotations

import pytest

from bench.errors import BenchError
from bench.registry import build_method
from conftest import ROOT, bench_cli


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _one_line_error(proc, *needles):
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


# One subprocess per kind of bad input (each CLI start costs seconds); the variants run in-process.
CLI_CASES = [
    (["--method", "lorra"], ["unknown method 'lorra'", "did you mean 'lora'"]),
    (["--method", "difit+diff-tuning"], ["unknown method 'difit' in composition", "did you mean 'difffit'"]),
    (["--method", "lora", "--set", "rnk=4"], ["method 'lora'", "config key rnk", "keys: lr, rank"]),
]


@pytest.mark.parametrize("args, needles", CLI_CASES)
def test_bad_method_input_on_the_cli(isolated_dirs, args, needles):
    proc = bench_cli("run", "--task", "dit-transfer", "--profile", "tiny", "--dataset", "food101", "--seeds", "0",
                     *args, check_rc=2)
    _one_line_error(proc, *needles)
    assert _files(isolated_dirs / "results") == [] and _files(isolated_dirs / "cache") == []


def test_unsupported_task_family_on_the_cli(isolated_dirs, tmp_path):
    toy = ROOT / "tests" / "toy_family"
    proc = bench_cli("run", "--task", "toy-unconditional", "--profile", "tiny", "--method", "difffit+diff-tuning",
                     env_extra={"PYTHONPATH": str(toy), "BENCH_TASKS_PATH": str(toy)}, check_rc=2)
    _one_line_error(proc, "method 'difffit+diff-tuning' does not support task family 'toy-unconditional'",
                    "class-transfer")
    assert _files(isolated_dirs / "results") == [] and _files(isolated_dirs / "cache") == []


@pytest.mark.parametrize("name, overrides, family, needles", [
    ("nosuch", {}, None, ["unknown method 'nosuch'"]),
    ("lora+nosuch", {}, None, ["unknown method 'nosuch' in composition 'lora+nosuch'"]),
    ("lora+", {}, None, ["malformed method name"]),
    ("lora+diff-tuning", {"lora.rnk": "4"}, None, ["config key lora.rnk"]),
    ("lora+diff-tuning", {"adaptformer.bottleneck": "4"}, None, ["adaptformer.bottleneck", "match no part"]),
    ("lora", {"rank": "0"}, None, ["config key rank", "greater than or equal to 1"]),
    ("lora", {"targets": "[to_x]"}, None, ["config key targets", "subset of"]),
    ("vpt-deep", {"tokens": "many"}, None, ["config key tokens"]),
    ("adaptformer", {"bottleneck": "-1"}, None, ["config key bottleneck"]),
    ("difffit", {"gammas": "3"}, None, ["config key gammas", "keys: lr, gamma_blocks"]),
    ("bitfit", {"rank": "8"}, None, ["method 'bitfit'", "config key rank"]),
    ("lora+diff-tuning", {}, "few-shot", ["does not support task family 'few-shot'"]),
    ("vpt-deep", {}, "pretrain-corruption", ["does not support task family 'pretrain-corruption'"]),
])
def test_bad_method_input(name, overrides, family, needles):
    with pytest.raises(BenchError) as err:
        build_method(name, overrides, family=family)
    assert err.value.exit_code == 2
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_methods_declare_the_backbone_groups_they_target():
    """Plan time refuses a backbone without them (tests/test_families.py); here: each method that
    reaches into the backbone says where, and DiT has those groups."""
    from bench.backbone import DiTBackbone

    for name in ("lora", "adaptformer", "vpt-deep", "difffit"):
        groups = build_method(name).groups
        assert groups and set(groups) <= set(DiTBackbone.groups), name
    assert build_method("bitfit").groups == ()  # BitFit only needs biases, which every module has


def _tiny_dit():
    from diffusers import DiTTransformer2DModel

    from bench.tasks import load_task

    return DiTTransformer2DModel(**load_task("dit-transfer", "tiny").spec.backbone.config)


def _ctx(model):
    from bench.backbone import DiTBackbone
    from bench.method import TrainContext

    return TrainContext(DiTBackbone(model, None, 1.0, 64, "test"), None, 1000, 8)


def test_difffit_gamma_blocks_beyond_the_backbone():
    method = build_method("difffit", {"gamma_blocks": "5"})
    with pytest.raises(BenchError, match="gamma_blocks=5 but the backbone has 4 blocks"):
        model = _tiny_dit()
        method.prepare(model, _ctx(model))


def test_injecting_twice_is_refused():
    model = _tiny_dit()
    build_method("adaptformer").prepare(model, _ctx(model))
    with pytest.raises(BenchError, match="already applied"):
        build_method("adaptformer").prepare(model, _ctx(model))
