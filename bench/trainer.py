"""The ONE shared training loop. Every method runs through it, with the same budget.

The family supplies batches (`draw_batch`: "x0" plus the backbone's condition keys) and,
optionally, a `Tracker` (bench/tracking.py) that evaluates metrics every K steps; the loss is the
backbone's common denoiser call, so the loop knows no architecture and no kind of experiment.

Determinism: before step k the loop seeds torch's global RNG from (seed, k), so batch indices,
flips, label dropout, noise, timesteps and any randomness a method draws depend only on the seed
and the step number. A checkpoint therefore needs only the method's state, the optimizer state
and k; resuming from it reproduces an uninterrupted run bit for bit (tests/test_resume.py).
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from bench.atomic import atomic_write
from bench.checkpoints import (CHECKSUM_KEY, _method_state, _read_checkpoint, checkpoint_sha256,  # noqa: F401
                               latest_checkpoint, load_checkpoint_state)
from bench.errors import BenchError, RunFailed
from bench.method import DEFERRED_IMAGES, Batch, Method, TrainContext
from bench.progress import paused, phase, progress
from bench.spec import TrainSpec


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**63 - 1)


@dataclass
class TrainOutcome:
    steps: int
    final_loss: float | None  # None when nothing was trained (zero steps)
    loss_curve: list[tuple[int, float]]
    trainable_params: int
    resumed_from: int
    diagnostics: dict | None = None  # Method.diagnostics after training (BNN: sigma, sampling's effect)


def diffusion_loss(backbone, schedule, batch: Batch, t, spec: TrainSpec | None = None,
                   input_noise: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
                   noise: torch.Tensor | None = None, model: torch.nn.Module | None = None) -> torch.Tensor:
    """Per-sample loss through the backbone's common denoiser call: the epsilon MSE, plus for
    `spec.loss == "hybrid"` the weighted VLB term that trains the learned variance (bench/vlb.py).
    `input_noise(noise)` may return a different noise to build x_t from (the target stays `noise`);
    `noise` is drawn here unless given; `model` replaces the backbone's own (a data-parallel view)."""
    if noise is None:
        noise = torch.randn_like(batch["x0"])
    perturbed = input_noise(noise) if input_noise is not None else None
    x_t = schedule.add_noise(batch["x0"], noise if perturbed is None else perturbed, t)
    eps, v = backbone.predict_with_variance(x_t, t, {k: batch[k] for k in backbone.cond_keys}, model)
    mse = (eps - noise).pow(2).flatten(1).mean(1)
    if spec is None or spec.loss in (None, "simple"):
        return mse
    if v is None:
        raise BenchError("train.loss is 'hybrid' but the backbone has no learned-sigma channels "
                         "(set out_channels to twice in_channels, or use loss: simple)")
    from bench.vlb import vlb_term

    weight = 1.0 if spec.vlb_weight is None else spec.vlb_weight
    return mse + weight * vlb_term(schedule, batch["x0"], x_t, t, eps, v)


def _shard(parallel, batch: Batch, t: torch.Tensor, noise: torch.Tensor):
    rows = parallel.shard({**batch, "__t": t, "__noise": noise})
    t, noise = rows.pop("__t"), rows.pop("__noise")
    return rows, t, noise


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            out[f"opt.{i}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return out


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = value
    sd["state"] = state
    opt.load_state_dict(sd)


def make_optimizer(params: list[torch.nn.Parameter], lr: float, weight_decay: float,
                   fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW. On CUDA the fused kernel (one launch for all parameters; torch's default there is
    the foreach path); elsewhere torch's default, the per-parameter loop, whose arithmetic the
    committed tiny-profile results were computed with. `fused` forces the choice (tests,
    benchmarks/bench_step_fixed_cost_cpu.py); on the CPU the fused kernel agrees with the loop to
    the tolerance tests/test_fast_step.py states, not bit for bit, so it stays off there."""
    if fused is None:
        fused = bool(params) and all(p.device.type == "cuda" for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **({"fused": True} if fused else {}))


class EMA:
    """An exponential moving average of the trainable parameters (the weights DiT and Diff-Tuning
    sample from): starts as a copy of them and moves by (1 - decay) towards them after every
    optimizer step, as DiT's `update_ema`. It travels in every checkpoint, so a resumed run ends
    with the same average; `swap_in` puts it into the model for sampling and scoring."""

    def __init__(self, named: list[tuple[str, torch.nn.Parameter]], decay: float):
        self.decay = decay
        self.params = dict(named)
        self.shadow = {n: p.detach().clone() for n, p in named}
        # One multi-tensor kernel per update instead of a Python loop over (675M parameters in
        # ~250 tensors for DiT-XL/2); on the CPU foreach runs lerp_ per tensor, the same bits as
        # the loop (tests/test_fast_step.py).
        self._shadow_list = list(self.shadow.values())
        self._param_list = [p.detach() for p in self.params.values()]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._shadow_list, self._param_list, 1.0 - self.decay)

    @torch.no_grad()
    def update_reference(self) -> None:
        """The per-parameter loop `update` replaces (DiT's `update_ema`), kept to test against."""
        for n, p in self.params.items():
            self.shadow[n].lerp_(p.detach(), 1.0 - self.decay)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"ema.{n}": v.contiguous() for n, v in self.shadow.items()}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.shadow if f"ema.{n}" not in tensors]
        if missing:
            raise BenchError(f"checkpoint has no EMA of {missing[:3]} but this run keeps one; run with --force")
        for n in self.shadow:
            self.shadow[n].copy_(tensors[f"ema.{n}"])

    @torch.no_grad()
    def swap_in(self) -> None:
        for n, p in self.params.items():
            p.copy_(self.shadow[n])

    @contextmanager
    def applied(self):
        """The average in the model for a while (tracked metrics score what sampling will use)."""
        saved = {n: p.detach().clone() for n, p in self.params.items()}
        self.swap_in()
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(saved[n])


def save_checkpoint(path: Path, method: Method, model, opt, step: int, losses, tracking: dict | None = None,
                    ema: EMA | None = None) -> None:
    tensors = {f"model.{k}": v.contiguous() for k, v in method.state_dict(model).items()}
    tensors.update(_optimizer_tensors(opt))
    if ema is not None:
        tensors.update(ema.tensors())
    meta = {"step": str(step), "losses": json.dumps(losses)}
    if tracking is not None:  # the tracked curve so far: a resumed run ends with the same curve
        meta["tracking"] = json.dumps(tracking)
    meta[CHECKSUM_KEY] = checkpoint_sha256(tensors, meta)  # checked on every read (bench/checkpoints.py)
    with atomic_write(path) as tmp:  # a checkpoint is either complete or absent
        save_file(tensors, tmp, metadata=meta)


def load_checkpoint(path: Path, method: Method, model, opt, tracker=None, ema: EMA | None = None) -> tuple[int, list]:
    tensors, meta = _read_checkpoint(path, require_checksum=True)  # a changed or unchecked one is refused
    method.load_state_dict(model, _method_state(tensors))
    _load_optimizer(opt, tensors)
    if ema is not None:
        ema.load(tensors)
    if tracker is not None:
        if "tracking" not in meta:
            raise BenchError(f"checkpoint {path} has no tracked curve but this run tracks metrics; "
                             f"run with --force to start over")
        tracker.load_state(json.loads(meta["tracking"]))
    return int(meta["step"]), [tuple(x) for x in json.loads(meta["losses"])]


def train(
    method: Method,
    ctx: TrainContext,
    draw_batch: Callable[[], Batch],
    spec: TrainSpec,
    schedule,
    *,
    seed: int,
    steps: int,
    ckpt_dir: Path,
    resume: bool = False,
    log_every: int = 10,
    tracker=None,
    parallel=None,
) -> TrainOutcome:
    """`parallel` (bench/distributed.py): this process's part of a data-parallel run; it trains on
    its share of each global batch, and only the main process tracks and writes checkpoints."""
    model = ctx.backbone.model
    torch.manual_seed(step_seed(seed, -1))  # module injection in prepare() is seeded too
    model = method.prepare(model, ctx)
    ctx.backbone.model = model
    named = method.trainable_parameters(model)
    if not named:
        raise BenchError(f"method {method.full_name!r} has no trainable parameters")
    opt = make_optimizer([p for _, p in named], method.learning_rate(spec.lr), spec.weight_decay)
    ema = EMA(named, spec.ema_decay) if spec.ema_decay is not None else None
    model.train()
    main = parallel is None or parallel.is_main
    if not main:
        tracker = None  # the main process tracks; the others would only repeat it
    forward_model = parallel.wrap(model) if parallel is not None else None

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    start, losses = 0, []
    last = latest_checkpoint(ckpt_dir)
    if resume and last is not None:
        start, losses = load_checkpoint(last, method, model, opt, tracker, ema)
        if main:
            print(f"resume from step {start} of {steps} ({last})", flush=True)
    elif resume and main:  # said, not silent: an interrupted run whose checkpoints are gone starts over
        print(f"resume no checkpoint to resume from ({ckpt_dir}); starting from step 0", flush=True)
    elif last is not None and main:  # a fresh run never inherits a stale checkpoint
        for old in ckpt_dir.glob("step-*.safetensors"):
            old.unlink(missing_ok=True)
    resumed_from = start

    timesteps = schedule.config.num_train_timesteps
    device = ctx.backbone.device
    running = 0.0
    tracked = (lambda: tracker.state()) if tracker is not None else (lambda: None)
    scored = (lambda: ema.applied()) if ema is not None else nullcontext
    if tracker is not None and start == 0 and tracker.due(0, steps):
        phase("track  step 0 (the pre-trained model)")
        with scored():
            tracker(0)
    # The bar times training steps only: tracking and the family's extra data (the knowledge
    # bank is sampled on its first use, inside step 1) are phases of their own, outside its clock.
    bar = progress(range(start, steps), desc=f"train {method.full_name}", unit="step", leave=False,
                   initial=start, total=steps)
    extra_data = ctx.extra_data

    def timed_extra_data(name):
        with paused(bar):
            return extra_data(name)

    ctx.extra_data = timed_extra_data
    for step in bar:
        torch.manual_seed(step_seed(seed, step))
        batch = method.make_batch(draw_batch(), ctx)
        t = method.sample_timesteps(batch, ctx)
        if t is None:
            t = torch.randint(0, timesteps, (len(batch["x0"]),))
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        t = t.to(device)
        # The noise is drawn for the whole global batch (as diffusion_loss would), then sharded.
        noise = torch.randn_like(batch["x0"])
        if parallel is not None:
            ctx.world, ctx.global_counts = parallel.world, parallel.counts(batch)
            batch, t, noise = _shard(parallel, batch, t, noise)
        if DEFERRED_IMAGES in batch:  # images a family deferred: encoded for this process's rows only
            batch = ctx.backbone.finish_encoding(batch)
        method.train_batch(batch, ctx)
        per_sample = diffusion_loss(ctx.backbone, schedule, batch, t, spec,
                                    input_noise=lambda noise: method.input_noise(noise, batch, ctx),
                                    noise=noise, model=forward_model)
        loss = method.loss(per_sample, batch, ctx)
        if loss is None:
            loss = per_sample.mean()
        penalty = method.penalty(model, ctx)
        if penalty is not None:
            loss = loss + penalty
        value = loss.item() if parallel is None else parallel.mean(loss.item())
        if not math.isfinite(value):
            raise RunFailed(f"loss became {value} at step {step} (method {method.full_name}); "
                            f"lower the learning rate or check the method. No result was written.")
        loss.backward()
        if spec.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for _, p in named], spec.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        method.after_step(model, ctx)
        last_batch = (batch, t, noise)
        if ema is not None:
            ema.update()
        running += value
        if (step + 1) % log_every == 0 or step + 1 == steps:
            n = (step % log_every) + 1
            losses.append((step + 1, running / n))
            bar.set_postfix(loss=f"{running / n:.4f}", refresh=False)  # shown at the bar's own pace
            running = 0.0
        if tracker is not None and tracker.due(step + 1, steps):
            with paused(bar), scored():
                tracker(step + 1)
        if main and (step + 1) % spec.checkpoint_every == 0 and step + 1 < steps:
            save_checkpoint(ckpt_dir / f"step-{step + 1}.safetensors", method, model, opt, step + 1, losses, tracked(),
                            ema)
    bar.close()
    ctx.extra_data = extra_data
    probe = None  # a run resumed at its last step ran no batch here: nothing to probe
    if steps > start:
        def probe(sampled: bool, draw: int = 0) -> float:
            """The diffusion loss on the last batch (its t and noise), the model in training mode
            (sampled: Bayesian weights drawn from a fixed seed) or in evaluation mode (the means)."""
            b, tt, nn_ = last_batch
            model.train(sampled)
            with torch.no_grad(), torch.random.fork_rng():
                torch.manual_seed(step_seed(seed, steps + draw))
                value = diffusion_loss(ctx.backbone, schedule, b, tt, spec, noise=nn_).mean().item()
            model.train()
            return value

    diagnostics = method.diagnostics(model, ctx, probe)
    if diagnostics is not None and not hasattr(method, "parts"):  # keyed by part, composed or not
        diagnostics = {method.name: diagnostics}
    if main:
        save_checkpoint(ckpt_dir / f"step-{steps}.safetensors", method, model, opt, steps, losses, tracked(), ema)
    if ema is not None:
        ema.swap_in()  # the harness samples, scores and records the average, as DiT's sampler does
    return TrainOutcome(steps, losses[-1][1] if losses else None, losses,
                        sum(p.numel() for _, p in named), resumed_from, diagnostics)
