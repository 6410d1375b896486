"""`bench check METHOD`: the plug-in contract of a method, checked before review.

For every family the method declares, on the tiny profile of each task of that family (first
dataset, seed 0, a budget of a few steps), in a throw-away results and cache folder:

    frozen        parameters the method does not train are bit-identical after training, and
                  the pre-trained parameters are still the model's (not replaced)
    state         what `state_dict` saves, loaded into a freshly prepared model, gives the same
                  tensors and the same predictions
    resume        a run interrupted half-way and resumed from its checkpoint ends bit-identical
                  to an uninterrupted one
    compose       `METHOD+diff-tuning` builds and trains, or the line says why it cannot
    bookkeeping   a run through the harness writes exactly the result file the harness keys, and
                  the samples and metrics it records are reproduced from the saved state; while
                  the method runs, nothing reseeds a global RNG from outside the harness and no
                  attribute of the harness (bench.*) or of torch's RNG functions is replaced
    params        the trainable-parameter count on each paper architecture (built without weights)

One line per check; a failed check makes the command exit non-zero.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from bench.errors import BenchError

CHECK_STEPS, CHECK_SEED = 4, 0
DIFF_TUNING = "diff-tuning"

# A budget of a few steps and a handful of samples: the checks test behaviour, not quality.
_SHRINK = {"train.steps": CHECK_STEPS, "train.batch_size": 4, "train.checkpoint_every": 2,
           "sampling.steps": 3, "sampling.num_samples": 16, "sampling.batch_size": 16,
           "evaluation.kid_subset_size": 8, "evaluation.kid_subsets": 2}
_BANK = {"knowledge_bank.num_images": 8, "knowledge_bank.steps": 3, "knowledge_bank.batch_size": 8}


@dataclass
class Check:
    name: str
    status: str  # "ok", "FAIL" or "info" (not applicable, with the reason)
    detail: str

    def line(self, where: str) -> str:
        return f"{self.status:<4}  {self.name:<11} {where}: {self.detail}"


def tasks_for(family: str) -> list[str]:
    """The suite's tasks of a family (every task for a method of every family)."""
    from bench.families import family_class
    from bench.tasks import available_tasks, read_task_file

    return [name for name, path in sorted(available_tasks().items())
            if family == "*" or family_class(read_task_file(path).family).name == family]


def check_task(task_name: str):
    """The task's tiny profile, shrunk to a check's budget (same code path)."""
    from bench.tasks import load_task

    task = load_task(task_name, "tiny")
    spec = task.spec
    shrink = dict(_SHRINK)
    if spec.knowledge_bank is not None:
        shrink.update(_BANK)
    if spec.tracking is not None:
        shrink.update({"tracking.every_steps": 2, "tracking.num_samples": 16})
    if "ewc" in spec.evaluation.metrics:
        shrink["evaluation.ewc_samples"] = 16
    dataset = next(iter(spec.datasets))
    if spec.datasets[dataset].synthetic is not None:
        shrink[f"datasets.{dataset}.synthetic.num_train"] = 32
        shrink[f"datasets.{dataset}.synthetic.num_eval"] = 32
    return task.with_overrides(shrink), dataset


# -- guards ---------------------------------------------------------------------------------------

_RESEEDERS = [(torch, "manual_seed"), (torch.random, "manual_seed"), (torch, "seed"), (torch, "set_rng_state"),
              (np.random, "seed"), (random, "seed")]


def _trusted_roots() -> list[Path]:
    """The harness and the libraries it calls (which may reseed inside their own code)."""
    import diffusers
    import peft

    return [Path(m.__file__).resolve().parent for m in (sys.modules["bench"], torch, np, diffusers, peft)] + \
        [Path(random.__file__).resolve().parent]


def _trusted(filename: str, roots: list[Path]) -> bool:
    path = Path(filename).resolve()
    return any(path.is_relative_to(root) for root in roots)


@contextmanager
def reseed_guard() -> Iterator[list[str]]:
    """Records every call that reseeds a global RNG from code outside bench/ (a method's file,
    say); the harness seeds every step itself, and a method that reseeds takes that away."""
    calls: list[str] = []
    saved = [(mod, name, getattr(mod, name)) for mod, name in _RESEEDERS]
    roots = _trusted_roots()

    def wrap(mod, name, fn):
        def guarded(*args, **kwargs):
            caller = sys._getframe(1).f_code
            if not _trusted(caller.co_filename, roots):
                calls.append(f"{mod.__name__}.{name} called at {Path(caller.co_filename).name}:"
                             f"{sys._getframe(1).f_lineno}")
            return fn(*args, **kwargs)
        return guarded

    for mod, name, fn in saved:
        setattr(mod, name, wrap(mod, name, fn))
    try:
        yield calls
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)


def harness_snapshot() -> dict[str, int]:
    """id() of every module-level attribute of the harness's modules (and torch's RNG functions)."""
    snap = {}
    for name, mod in list(sys.modules.items()):
        if (name == "bench" or name.startswith("bench.")) and mod is not None and name != __name__:
            for attr, value in vars(mod).items():
                if not attr.startswith("__"):
                    snap[f"{name}.{attr}"] = id(value)
    for mod, fn in [(torch, "randn"), (torch, "rand"), (torch, "randint"), (torch, "Generator")]:
        snap[f"torch.{fn}"] = id(getattr(mod, fn))
    return snap


def changed_attributes(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return sorted(k for k, v in before.items() if k in after and after[k] != v)


# -- the checks -----------------------------------------------------------------------------------

class Harness:
    """One task and dataset, set up exactly as the runner does, without writing a result."""

    def __init__(self, task, dataset: str, method_name: str):
        self.task, self.dataset, self.method_name = task, dataset, method_name

    def setup(self, method_name: str | None = None):
        from bench.backbone import load_backbone
        from bench.families import family_class
        from bench.method import TrainContext
        from bench.registry import build_method

        spec = self.task.spec
        family = family_class(self.task.file.family)(self.task, self.dataset)
        family.load_data()
        torch.manual_seed(CHECK_SEED)
        backbone = load_backbone(spec.backbone)
        family.bind(backbone)
        method = build_method(method_name or self.method_name, family=family.name)
        ctx = TrainContext(backbone=backbone, dataset=family.dataset, num_timesteps=spec.diffusion.num_train_timesteps,
                           batch_size=spec.train.batch_size, extra_data=family.extra)
        return family, backbone, method, ctx

    def train(self, family, method, ctx, steps: int, ckpt_dir: Path, resume: bool = False):
        from bench.backbone import noise_schedule
        from bench.trainer import train

        spec = self.task.spec
        return train(method, ctx, lambda: family.draw_batch(spec.train), spec.train, noise_schedule(spec.diffusion),
                     seed=CHECK_SEED, steps=steps, ckpt_dir=ckpt_dir, resume=resume)


def check_frozen_and_state(h: Harness, work: Path) -> tuple[list[Check], dict]:
    from bench.backbone.base import state_sha256
    from bench.trainer import step_seed

    family, backbone, method, ctx = h.setup()
    before = {id(p): (n, p.detach().clone()) for n, p in backbone.model.named_parameters()}
    h.train(family, method, ctx, CHECK_STEPS, work / "uninterrupted")
    model = backbone.model
    now = {id(p): p for p in model.parameters()}
    trainable = {id(p) for _, p in method.trainable_parameters(model)}
    replaced = [n for i, (n, _) in before.items() if i not in now]
    changed = [n for i, (n, old) in before.items() if i in now and i not in trainable and not torch.equal(now[i], old)]
    moved = any(not torch.equal(now[i], old) for i, (_, old) in before.items() if i in trainable and i in now)
    moved = moved or any(i not in before for i in trainable)  # injected parameters count as trained
    if changed or replaced:
        what = (f"frozen parameter(s) changed during training: {', '.join(changed[:3])}" if changed
                else f"pre-trained parameter(s) replaced, not kept: {', '.join(replaced[:3])}")
        frozen = Check("frozen", "FAIL", what + (f" (+{len(changed) + len(replaced) - 3} more)"
                                                 if len(changed) + len(replaced) > 3 else ""))
    elif not moved:
        frozen = Check("frozen", "FAIL", f"no trainable parameter changed in {CHECK_STEPS} steps")
    else:
        frozen = Check("frozen", "ok", f"{len(before) - len(set(before) & trainable)} frozen tensors untouched, "
                                       f"{len(trainable)} trainable")

    # state: a fresh model, prepared with the same seed, loaded with what the method saves
    saved = {k: v.clone() for k, v in method.state_dict(model).items()}
    fam2, backbone2, method2, ctx2 = h.setup()
    torch.manual_seed(step_seed(CHECK_SEED, -1))
    backbone2.model = method2.prepare(backbone2.model, ctx2)
    try:
        method2.load_state_dict(backbone2.model, saved)
    except Exception as exc:  # noqa: BLE001 - a plug-in may raise anything; report it
        return [frozen, Check("state", "FAIL", f"load_state_dict of its own state raised {type(exc).__name__}: {exc}")], saved
    a, b = model.state_dict(), backbone2.model.state_dict()
    differ = sorted(k for k in a if k not in b or not torch.equal(a[k], b[k]))
    torch.manual_seed(1)
    batch = backbone.finish_encoding(family.draw_batch(h.task.spec.train))
    cond = {k: batch[k] for k in backbone.cond_keys}
    t = torch.randint(0, h.task.spec.diffusion.num_train_timesteps, (len(batch["x0"]),))
    model.eval(), backbone2.model.eval()
    with torch.no_grad():
        same = torch.equal(backbone.predict(batch["x0"], t, cond), backbone2.predict(batch["x0"], t, cond, model=backbone2.model))
    if differ or not same:
        state = Check("state", "FAIL", f"restoring its saved state does not give the trained model back "
                                       f"({', '.join(differ[:3]) or 'predictions differ'})")
    else:
        state = Check("state", "ok", f"{len(saved)} saved tensors restore the model (sha {state_sha256(saved)[:12]})")
    return [frozen, state], saved


def check_resume(h: Harness, work: Path, uninterrupted: dict) -> Check:
    from bench.backbone.base import state_sha256

    family, _, method, ctx = h.setup()
    h.train(family, method, ctx, CHECK_STEPS // 2, work / "interrupted")
    family, backbone, method, ctx = h.setup()  # a new process would start from scratch like this
    outcome = h.train(family, method, ctx, CHECK_STEPS, work / "interrupted", resume=True)
    resumed = method.state_dict(backbone.model)
    if outcome.resumed_from != CHECK_STEPS // 2:
        return Check("resume", "FAIL", f"the run did not resume from step {CHECK_STEPS // 2}")
    a, b = state_sha256(uninterrupted), state_sha256(resumed)
    if a != b:
        return Check("resume", "FAIL", f"interrupted at step {CHECK_STEPS // 2} and resumed, the final state differs "
                                       f"from an uninterrupted run ({b[:12]} vs {a[:12]}): state the method keeps "
                                       f"outside its state_dict is lost on resume")
    return Check("resume", "ok", f"interrupted at step {CHECK_STEPS // 2} and resumed: bit-identical ({a[:12]})")


def check_compose(h: Harness, work: Path) -> Check:
    from bench.families import family_class
    from bench.registry import build_method

    name = h.method_name
    if DIFF_TUNING in name.split("+"):
        return Check("compose", "info", f"{name} already includes diff-tuning")
    family = family_class(h.task.file.family)
    if "knowledge_bank" not in family.provides:
        return Check("compose", "info", f"family {family.name!r} provides no knowledge bank, which diff-tuning needs")
    composed = f"{name}+{DIFF_TUNING}"
    try:
        build_method(composed, family=family.name)
    except BenchError as err:
        return Check("compose", "info", f"does not compose: {err}")
    try:
        fam, _, method, ctx = h.setup(composed)
        h.train(fam, method, ctx, 2, work / "composed")
    except Exception as exc:  # noqa: BLE001
        return Check("compose", "FAIL", f"{composed} builds but training it raised {type(exc).__name__}: {exc}")
    return Check("compose", "ok", f"{composed} trains")


def check_bookkeeping(h: Harness, work: Path, before: dict[str, int]) -> Check:
    from bench.backbone.base import state_sha256
    from bench.families import family_class
    from bench.planning import plan_run
    from bench.registry import build_method
    from bench.runner import execute, load_finetuned

    task = h.task
    method = build_method(h.method_name, family=family_class(task.file.family).name)
    run = plan_run(task, method, h.dataset, CHECK_SEED, method_name=h.method_name)
    expected = run.path
    results = Path(os.environ["BENCH_RESULTS"])
    with reseed_guard() as reseeds:
        path = execute(run, method, log=lambda *_: None)
    patched = changed_attributes(before, harness_snapshot())
    if reseeds:
        return Check("bookkeeping", "FAIL", f"the method reseeds a global RNG ({reseeds[0]}); seeds are the harness's")
    if patched:
        return Check("bookkeeping", "FAIL", f"the method replaced harness attribute(s) {', '.join(patched[:3])}; "
                                            f"sampling, seeds and paths are the harness's")
    from bench.paths import RESULTS_ID

    # The results folder's id (bench.paths.results_folder_id, which keys checkpoints) is the harness's too.
    written = sorted(p for p in results.rglob("*") if p.is_file() and p != results / RESULTS_ID)
    if path != expected or written != [expected]:
        extra = [str(p.relative_to(results)) for p in written if p != expected]
        return Check("bookkeeping", "FAIL", f"files under results/ other than the harness's key: {extra[:3]}")
    recorded = json.loads(path.read_text())
    restored = run.build_method()
    backbone, _ = load_finetuned(run, restored)
    if state_sha256(restored.state_dict(backbone.model)) != recorded["provenance"]["final_state_sha256"]:
        return Check("bookkeeping", "FAIL", "the final state in the checkpoint is not the one the result records")
    family = family_class(task.file.family)(task, h.dataset)
    family.load_data()
    family.bind(backbone)
    again = family.evaluate(restored, CHECK_SEED)
    if again["samples"]["sha256"] != recorded["samples"]["sha256"]:
        return Check("bookkeeping", "FAIL", "the recorded samples are not reproduced from the saved state with the "
                                            "recorded sampling seed (does the model draw from a global RNG when sampling?)")
    if json.dumps(again["metrics"], sort_keys=True, default=str) != json.dumps(recorded["metrics"], sort_keys=True, default=str):
        return Check("bookkeeping", "FAIL", "the recorded metrics differ from those recomputed from the saved state")
    return Check("bookkeeping", "ok", f"one result file at the harness's key; samples {recorded['samples']['sha256'][:12]} "
                                      f"and metrics reproduced from the saved state")


def check_params(method_name: str, task_name: str) -> Check:
    from bench.params import count_parameters
    from bench.registry import build_method
    from bench.tasks import load_task

    spec = load_task(task_name, "paper").spec.backbone
    try:
        count = count_parameters(build_method(method_name), spec)
    except Exception as exc:  # noqa: BLE001
        return Check("params", "FAIL", f"cannot count its parameters on the paper architecture: {type(exc).__name__}: {exc}")
    if count.trainable == 0:
        return Check("params", "FAIL", "no trainable parameters on the paper architecture")
    return Check("params", "info", f"{count.trainable:,} trainable on the paper {spec.kind} "
                                   f"({100 * count.fraction:.3f}% of {count.backbone:,})")


def check_method(method_name: str, log=print) -> bool:
    """Runs every check of one method on every task of its families; True when none failed."""
    from bench.registry import build_method

    before = harness_snapshot()  # before the method's module is even imported
    method = build_method(method_name)  # unknown names and bad configs fail here, with one line
    families = sorted(method.families)
    tasks = sorted({t for f in families for t in tasks_for(f)})
    if not tasks:
        raise BenchError(f"method {method_name!r} declares families {families}, and no task in tasks/ has one of them")
    ok = True
    for task_name in tasks:
        task, dataset = check_task(task_name)
        where = f"{task_name} (tiny, {dataset})"
        from bench.runner import check_run

        try:
            check_run(task, build_method(method_name, family=task.family))
        except BenchError as err:  # what it declares (groups, extra data) does not fit the task
            log(Check("plan", "FAIL", str(err)).line(where))
            ok = False
            continue
        with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp, _isolated(Path(tmp)):
            h = Harness(task, dataset, method_name)
            work = Path(tmp) / "work"
            try:
                checks, saved = check_frozen_and_state(h, work)
                checks.append(check_resume(h, work, saved))
                checks.append(check_compose(h, work))
                checks.append(check_bookkeeping(h, work, before))
            except BenchError:
                raise
            except Exception as exc:  # noqa: BLE001 - a plug-in may raise anything; say where
                checks = [Check("run", "FAIL", f"{type(exc).__name__}: {exc}")]
        checks.append(check_params(method_name, task_name))
        for c in checks:
            log(c.line(where))
            ok = ok and c.status != "FAIL"
    return ok


@contextmanager
def _isolated(root: Path):
    """Results and caches of the check go to a throw-away folder, never the user's."""
    saved = {k: os.environ.get(k) for k in ("BENCH_RESULTS", "BENCH_CACHE")}
    os.environ["BENCH_RESULTS"], os.environ["BENCH_CACHE"] = str(root / "results"), str(root / "cache")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
