"""Bad method input: an unknown method, an unknown base in a composition, a config key that does
not exist (or a bad value), a method on a task family it does not support. Each is one line on
stderr, exit code 2, and nothing written under the results or cache folders."""

from __future__ import annotations

import pytest
import torch
import yaml

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


def _task_of_family(tmp_path, family):
    raw = yaml.safe_load((ROOT / "tasks" / "dit-transfer.yaml").read_text())
    raw["family"] = family
    path = tmp_path / f"dit-{family}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


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
    task = _task_of_family(tmp_path, "controlnet")
    proc = bench_cli("run", "--task", task, "--profile", "tiny", "--method", "difffit+diff-tuning", check_rc=2)
    _one_line_error(proc, "method 'difffit+diff-tuning' does not support task family 'controlnet'", "class-transfer")
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


def test_methods_refuse_a_backbone_that_is_not_a_dit():
    for name in ("bitfit", "lora", "adaptformer", "vpt-deep", "difffit"):
        method = build_method(name)
        if name == "bitfit":  # BitFit only needs biases; any module has a well-defined answer
            continue
        with pytest.raises(BenchError, match="needs a DiT backbone"):
            method.prepare(torch.nn.Linear(4, 4), None)


def _tiny_dit():
    from diffusers import DiTTransformer2DModel

    from bench.tasks import load_task

    return DiTTransformer2DModel(**load_task("dit-transfer", "tiny").spec.backbone.config)


def test_difffit_gamma_blocks_beyond_the_backbone():
    method = build_method("difffit", {"gamma_blocks": "5"})
    with pytest.raises(BenchError, match="gamma_blocks=5 but the backbone has 4 blocks"):
        method.prepare(_tiny_dit(), None)


def test_injecting_twice_is_refused():
    model = _tiny_dit()
    build_method("adaptformer").prepare(model, None)
    with pytest.raises(BenchError, match="already applied"):
        build_method("adaptformer").prepare(model, None)
