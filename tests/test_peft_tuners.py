"""Tuners written as peft configs (`peft:<name>` = baselines/peft/<name>.json, baselines/peft_tuner.py).

Every committed config passes its plan-time check and trains through the real shared trainer on the
tiny DiT and the tiny UNet (both have the `attention` group): exactly the tuner's own parameters are
trainable, they train, everything else stays bit-identical, and a checkpoint loaded into a freshly
prepared model reproduces it; two tuners resume bit-identically. `peft:lora` is the built-in `lora`
step for step. A malformed or unsupported config is one `error:` line of the real CLI at plan time,
with nothing written; the config file's sha256 is part of the method config, so editing the file
changes the config hash and the run identity, and reports call old results stale.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from bench.backbone import adapter_class, noise_schedule
from bench.method import TrainContext
from bench.planning import plan_run, run_identity
from bench.registry import build_method, composed_names, method_names, recorded_config_change
from bench.runner import check_run
from bench.spec import TrainSpec
from bench.tasks import load_task
from bench.trainer import latest_checkpoint, load_checkpoint_state, train
from conftest import ROOT, bench_cli

CONFIGS = sorted(p.stem for p in (ROOT / "baselines" / "peft").glob("*.json"))
TASKS = {"dit": load_task("dit-transfer", "tiny"), "unet": load_task("limited-data", "tiny")}
REQUIRED = {"lora", "dora", "loha", "lokr", "oft", "boft", "vera", "ia3"}


def backbone(kind: str, seed: int = 0):
    """A randomly initialised tiny backbone of the task's architecture (no weights file needed)."""
    torch.manual_seed(seed)
    return adapter_class(TASKS[kind].spec.backbone.kind).from_scratch(TASKS[kind].spec.backbone)


def context(kind: str, bb) -> TrainContext:
    task = TASKS[kind]
    bank = {"x0": torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1,
            "y": torch.full((16,), 64)}
    return TrainContext(bb, next(iter(task.spec.datasets.values())), 1000, 4, extra_data=lambda name: bank)


def draw(kind: str):
    def batch():  # from torch's RNG, which the trainer seeds before every step
        out = {"x0": torch.rand(4, 3, 16, 16) * 2 - 1}
        if kind == "dit":
            out["y"] = torch.randint(0, 10, (4,))
        return out
    return batch


def run_training(name: str, kind: str, ckpt: Path, steps: int, *, resume=False, every=100, overrides=None):
    method = build_method(name, overrides or {})
    ctx = context(kind, backbone(kind))
    spec = TrainSpec(batch_size=4, steps=steps, lr=1e-3, checkpoint_every=every)
    outcome = train(method, ctx, draw(kind), spec, noise_schedule(TASKS[kind].spec.diffusion), seed=3, steps=steps,
                    ckpt_dir=ckpt, resume=resume)
    return method, ctx.backbone.model, outcome


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_the_required_tuners_are_committed_and_registered():
    assert REQUIRED <= set(CONFIGS)
    assert {f"peft:{c}" for c in CONFIGS} <= set(method_names())
    assert {f"peft:{c}+diff-tuning" for c in CONFIGS} <= set(composed_names())


@pytest.mark.parametrize("kind", ["dit", "unet"])
@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_plans_and_trains_its_adapter_only(config, kind, tmp_path):
    name = f"peft:{config}"
    method = build_method(name, family=TASKS[kind].family)
    method.check_backbone(TASKS[kind].spec.backbone)  # the plan-time check, on the meta device
    prefix = __import__("peft").mapping.PEFT_TYPE_TO_TUNER_MAPPING[method.config.peft_type].prefix

    fresh = backbone(kind)
    before = snapshot(fresh.model)
    method_, trained, outcome = run_training(name, kind, tmp_path, steps=3)
    after = snapshot(trained)
    trainable = {n for n, _ in method_.trainable_parameters(trained)}
    assert trainable and all(f".{prefix}" in n for n in trainable)
    assert {n for n, p in trained.named_parameters() if p.requires_grad} == trainable
    # Base weights: peft moves a wrapped layer's weight to `<layer>.base_layer.weight`.
    for n, value in after.items():
        if n in trainable:
            continue
        assert torch.equal(value, before[n.replace(".base_layer", "")]), f"frozen parameter {n} changed"
    changed = [n for n in trainable if n in after and not _equal_to_fresh_prepare(name, kind, n, after[n])]
    assert changed, f"{name}: no adapter parameter trained"
    assert outcome.trainable_params == sum(after[n].numel() for n in trainable)

    # Checkpoint round trip: a fresh method and backbone, prepared with other RNG state, loads it.
    state = load_checkpoint_state(latest_checkpoint(tmp_path))
    assert set(state) == trainable
    again = build_method(name)
    bb = backbone(kind)
    torch.manual_seed(12345)
    model = again.prepare(bb.model, context(kind, bb))
    again.load_state_dict(model, state)
    for n, p in trained.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[n]), n
    for n, b in trained.named_buffers():  # VeRA's shared projections come back from its seed
        assert torch.equal(b, dict(model.named_buffers())[n]), n
    x, t = torch.rand(2, 3, 16, 16) * 2 - 1, torch.tensor([10, 700])
    cond = {"y": torch.tensor([1, 64])} if kind == "dit" else {}
    with torch.no_grad():
        assert torch.equal(bb.output(x, t, cond, trained.eval()), bb.output(x, t, cond, model.eval()))


_PREPARED: dict = {}


def _equal_to_fresh_prepare(name, kind, param, value) -> bool:
    """Whether `param` still holds the value prepare() gave it (seeded as the trainer seeds it)."""
    from bench.trainer import step_seed

    if (name, kind) not in _PREPARED:
        bb = backbone(kind)
        torch.manual_seed(step_seed(3, -1))
        _PREPARED[name, kind] = snapshot(build_method(name).prepare(bb.model, context(kind, bb)))
    return torch.equal(_PREPARED[name, kind][param], value)


def test_peft_lora_is_the_builtin_lora_step_for_step(tmp_path):
    _, ours, _ = run_training("peft:lora", "dit", tmp_path / "a", steps=3)
    _, builtin, _ = run_training("lora", "dit", tmp_path / "b", steps=3)
    a, b = snapshot(ours), snapshot(builtin)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_composes_with_diff_tuning(tmp_path):
    method, model, _ = run_training("peft:lora+diff-tuning", "dit", tmp_path, steps=2)
    assert {n for n, _ in method.trainable_parameters(model)} == \
        {n for n, _ in build_method("lora").trainable_parameters(run_training("lora", "dit", tmp_path / "l", 1)[1])}
    check_run(TASKS["dit"], build_method("peft:lora+diff-tuning", family="class-transfer"))


@pytest.mark.parametrize("name", ["peft:vera", "peft:boft"])
def test_resume_is_bit_identical(name, tmp_path):
    _, straight, _ = run_training(name, "dit", tmp_path / "a", steps=4)
    run_training(name, "dit", tmp_path / "b", steps=2, every=2)
    _, resumed, outcome = run_training(name, "dit", tmp_path / "b", steps=4, resume=True)
    assert outcome.resumed_from == 2
    for n, p in straight.named_parameters():
        assert torch.equal(p, dict(resumed.named_parameters())[n]), n


def test_set_overrides_a_key_of_the_file():
    method = build_method("peft:lora", {"r": "4", "lora_alpha": "4"})
    bb = backbone("dit")
    model = method.prepare(bb.model, context("dit", bb))
    shapes = {p.shape for n, p in model.named_parameters() if "lora_A" in n}
    assert shapes == {torch.Size([4, 64])}


# -- identity -------------------------------------------------------------------------------------

def _tuner_dir(tmp_path: Path, monkeypatch, name: str = "mine", source: str = "lora") -> Path:
    folder = tmp_path / "tuners"
    folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "baselines" / "peft" / f"{source}.json", folder / f"{name}.json")
    monkeypatch.setenv("BENCH_PEFT_PATH", str(folder))
    return folder / f"{name}.json"


def test_the_config_files_hash_is_in_the_config_hash_and_the_run_identity(tmp_path, monkeypatch):
    import hashlib

    path = _tuner_dir(tmp_path, monkeypatch)
    task = TASKS["dit"]
    data = {"train": "t", "reference": "r"}

    def planned():
        run = plan_run(task, build_method("peft:mine"), "food101", 0)
        return run, run_identity(**run.identity_fields(), data=data)

    run, identity = planned()
    assert run.method_config["config_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run.path.parts[-4] == "peft_mine"  # no colon in a result path
    assert recorded_config_change("peft:mine", run.method_config) is None
    from bench.planning import recorded_overrides  # what bench verify rebuilds from a result file

    rebuilt = build_method("peft:mine", recorded_overrides("peft:mine", run.method_config))
    assert rebuilt.config_dict() == run.method_config

    path.write_text(path.read_text().replace('"r": 8', '"r": 8 '))  # same values, other bytes
    run2, identity2 = planned()
    assert run2.config_hash != run.config_hash and identity2 != identity
    assert "changed since" in recorded_config_change("peft:mine", run.method_config)
    composed = {"peft:mine": run.method_config, "diff-tuning": {}}
    assert "changed since" in recorded_config_change("peft:mine+diff-tuning", composed)
    # Rebuilding the old run (bench verify) refuses, in one line, rather than train another config.
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="changed since"):
        build_method("peft:mine", recorded_overrides("peft:mine", run.method_config))
    path.unlink()
    assert "no longer exists" in recorded_config_change("peft:mine", run.method_config)


# -- bad configs: one line at plan time, nothing written ------------------------------------------

BAD = {
    "bad-json": ('{"peft_type": "LORA", "target_groups": ["attention"],}', "dit-transfer",
                 ["bad.json: not valid JSON", "line 1"]),
    "unknown-peft-type": ('{"peft_type": "LORRA", "target_groups": ["attention"]}', "dit-transfer",
                          ["unknown peft_type 'LORRA'", "did you mean 'LORA'"]),
    "unknown-key": ('{"peft_type": "LORA", "target_groups": ["attention"], "rank": 8}', "dit-transfer",
                    ["unknown key 'rank' for peft_type LORA"]),
    "bench-owned-key": ('{"peft_type": "LORA", "target_groups": ["attention"], "target_modules": ["to_q"]}',
                        "dit-transfer", ["key 'target_modules'", "target_groups"]),
    "no-groups": ('{"peft_type": "LORA", "r": 8}', "dit-transfer", ["target_groups must be"]),
    "bad-value": ('{"peft_type": "OFT", "target_groups": ["attention"], "r": 4, "oft_block_size": 4}',
                  "dit-transfer", ["peft rejects the config"]),
    "unknown-group": ('{"peft_type": "LORA", "target_groups": ["atention"]}', "dit-transfer",
                      ["module group(s) ['atention']", "attention"]),
    "group-missing-here": ('{"peft_type": "LORA", "target_groups": ["mlp"]}', "limited-data",
                           ["module group(s) ['mlp']", "unet2d"]),
    "no-such-layer": ('{"peft_type": "LORA", "target_groups": ["attention"], "targets": ["to_qq"]}', "dit-transfer",
                      ["no Linear or Conv layer named ['to_qq']"]),
    "unsupported-layer-type": ('{"peft_type": "VERA", "target_groups": ["resnets"]}', "limited-data",
                               ["peft:bad (VERA) cannot adapt Conv2d layers", "unet2d", "hold Conv2d, Linear"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_config_is_one_line_at_plan_time(case, tmp_path):
    text, task, needles = BAD[case]
    folder = tmp_path / "tuners"
    folder.mkdir()
    (folder / "bad.json").write_text(text)
    proc = bench_cli("run", "--task", task, "--method", "peft:bad", "--profile", "tiny", "--seeds", "0", "--smoke",
                     env_extra={"BENCH_PEFT_PATH": str(folder)})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))


def test_an_unknown_tuner_name_suggests_the_committed_ones():
    proc = bench_cli("run", "--task", "dit-transfer", "--method", "peft:lorra", "--profile", "tiny", "--smoke")
    assert proc.returncode != 0
    assert "unknown method 'peft:lorra'" in proc.stderr and "peft:lora" in proc.stderr, proc.stderr


# -- CONTRIBUTING.md's worked example ---------------------------------------------------------------

def contributing_example() -> tuple[str, str]:
    """(name, JSON text) of the tuner example in CONTRIBUTING.md, verbatim."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("## Contributing a tuner as a config", 1)[1].split("\n## ", 1)[0]
    name = re.search(r"save it as `baselines/peft/([a-z0-9_-]+)\.json`", section).group(1)
    return name, re.search(r"```json\n(.*?)```", section, re.S).group(1)


def test_the_contributing_example_runs_and_editing_it_makes_its_result_stale(tmp_path, monkeypatch):
    from bench.report.load import load_results

    name, text = contributing_example()
    folder = tmp_path / "tuners"
    folder.mkdir()
    (folder / f"{name}.json").write_text(text)
    env = {"BENCH_PEFT_PATH": str(folder)}
    bench_cli("run", "--task", "dit-transfer", "--method", f"peft:{name}", "--profile", "tiny", "--seeds", "0",
              "--dataset", "food101", "--smoke", env_extra=env, check_rc=0)
    results = tmp_path / "results"
    files = list(results.rglob("seed0.json"))
    assert len(files) == 1 and f"/peft_{name}/" in str(files[0])
    recorded = json.loads(files[0].read_text())
    assert recorded["method"] == f"peft:{name}"
    assert recorded["method_config"]["target_groups"] == ["attention", "mlp"]
    assert recorded["training"]["trainable_params"] > 0

    monkeypatch.setenv("BENCH_PEFT_PATH", str(folder))  # the report reads the tuner folder in this process
    loaded = load_results(results)
    assert not loaded.stale and len(loaded.smoke) == 1
    (folder / f"{name}.json").write_text(text.replace('"r": 4', '"r": 2').replace('"lora_alpha": 4', '"lora_alpha": 2'))
    loaded = load_results(results)
    assert len(loaded.stale) == 1 and "changed since" in loaded.stale_lines()[0]
    # The same file on a UNet task: refused at plan time, naming the group it lacks.
    proc = bench_cli("run", "--task", "limited-data", "--method", f"peft:{name}", "--profile", "tiny", "--seeds", "0",
                     "--smoke", env_extra=env)
    assert proc.returncode != 0 and "module group(s) ['mlp']" in proc.stderr, proc.stderr
