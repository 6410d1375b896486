"""`bench check`: CONTRIBUTING.md's worked example, installed as a temporary package registered
through its entry point, passes; three deliberately broken methods each fail with a line naming
the contract they break."""

from __future__ import annotations

import re
import textwrap

from conftest import ROOT, bench_cli

def contributing_example() -> str:
    """The worked example of CONTRIBUTING.md, verbatim (its first python block)."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)

BROKEN = '''
import torch

import bench.families.class_transfer as class_transfer
from baselines._common import freeze, unfreeze
from bench.method import Method


class _OutputOnly(Method):
    families = frozenset({"class-transfer"})

    def prepare(self, model, ctx):
        freeze(model)
        unfreeze(p for n, p in model.named_parameters() if n.startswith("proj_out"))
        return model


class UpdatesFrozen(_OutputOnly):
    """Nudges a frozen weight on every batch."""
    name = "updates-frozen"

    def make_batch(self, batch, ctx):
        with torch.no_grad():
            ctx.backbone.model.pos_embed.proj.weight.add_(1e-3)
        return batch


class BreaksResume(_OutputOnly):
    """Keeps a step counter outside its state_dict: a resumed run restarts it."""
    name = "breaks-resume"
    calls = 0

    def loss(self, per_sample, batch, ctx):
        BreaksResume.calls += 1
        return per_sample.mean() * (1.0 + 0.5 * BreaksResume.calls)


class TouchesSeed(_OutputOnly):
    """Moves the sampler's seed and reseeds torch's global RNG."""
    name = "touches-seed"

    def prepare(self, model, ctx):
        class_transfer.SAMPLING_SEED = 0
        torch.manual_seed(0)
        return super().prepare(model, ctx)
'''


def _plugin_package(root, module: str, source: str, entry_points: dict[str, str]):
    """A package with a dist-info folder, as `pip install` would leave it: entry points are found
    through importlib.metadata on the path, exactly as for an installed plug-in."""
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    (root / module / "methods.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[bench.methods]\n" + "".join(f"{name} = {module}.methods:{cls}\n" for name, cls in entry_points.items()))
    return {"PYTHONPATH": str(root)}


def test_the_contributing_example_passes_bench_check_through_its_entry_point(tmp_path):
    env = _plugin_package(tmp_path, "my_pkg", contributing_example(), {"output-head": "OutputHead"})
    proc = bench_cli("check", "output-head", env_extra=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("output-head:")]
    checks = {ln.split()[2]: ln.split()[1] for ln in lines}
    assert checks == {"frozen": "ok", "state": "ok", "resume": "ok", "compose": "ok", "bookkeeping": "ok",
                      "params": "info"}, lines
    assert "passed: output-head" in proc.stdout


def test_broken_methods_fail_naming_the_broken_contract(tmp_path):
    env = _plugin_package(tmp_path, "brokenplugin", BROKEN, {
        "updates-frozen": "UpdatesFrozen", "breaks-resume": "BreaksResume", "touches-seed": "TouchesSeed"})
    proc = bench_cli("check", "updates-frozen", "breaks-resume", "touches-seed", env_extra=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fails = [ln for ln in proc.stdout.splitlines() if ln.split()[1:2] == ["FAIL"]]

    def failed(method):  # check name -> line
        return {ln.split()[2]: ln for ln in fails if ln.startswith(f"{method}:")}

    frozen = failed("updates-frozen")
    assert "frozen parameter(s) changed during training: pos_embed.proj.weight" in frozen["frozen"]
    resume = failed("breaks-resume")
    assert set(resume) == {"resume"} and "differs from an uninterrupted run" in resume["resume"]
    seed = failed("touches-seed")
    assert set(seed) == {"bookkeeping"} and "reseeds a global RNG" in seed["bookkeeping"]
    assert "methods.py" in seed["bookkeeping"]  # the line points at the plug-in's own file
    assert "FAILED: updates-frozen, breaks-resume, touches-seed" in proc.stdout
