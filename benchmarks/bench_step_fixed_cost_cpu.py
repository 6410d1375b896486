"""The fixed cost of a training step on the CPU: AdamW plus the EMA update over P parameters, the
part of a step that does not scale with the batch (bench/trainer.py).

    python benchmarks/bench_step_fixed_cost_cpu.py [--params 50e6] [--steps 10] [--warmup 2]
    python benchmarks/bench_step_fixed_cost_cpu.py --paper-size   # DiT-XL/2's 674.8M: ~17 GB of RAM

The parameters have DiT-XL/2's tensor shapes (its pinned architecture built on the meta device, no
weights), taken in module order until P is reached, so the tensor count and sizes are the paper
model's. Gradients are random and fixed. Three paths, each timed alone (the others' memory freed):

- current: what the trainer ran before the fast path, and still runs on the CPU: AdamW as torch
  builds it by default (on the CPU the per-parameter loop) and the EMA as a Python loop of lerp_;
- foreach: AdamW(foreach=True) and the EMA as one `torch._foreach_lerp_`;
- fused: AdamW(fused=True) (the CUDA default of bench/trainer.make_optimizer) and the foreach EMA.

Printed: median ms per step (optimizer step + zero_grad-free EMA update) and each path's ratio to
`current`. Memory: 5 copies of P float32 values (weights, gradients, two Adam moments, the EMA),
20 bytes per parameter, plus the fused kernels' temporaries. Nothing is asserted; record the
numbers with the machine they came from.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import torch

PAPER_PARAMS = 674_800_000  # DiT-XL/2 at 256 px (bench/backbone/dit.py DIT_XL_2_256)


def shapes(limit: int) -> list[torch.Size]:
    """DiT-XL/2's parameter shapes in module order, cycled until `limit` values are reached."""
    from bench.backbone import adapter_class
    from bench.tasks import load_task

    spec = load_task("dit-transfer", "paper").spec.backbone
    model = adapter_class(spec.kind).build_without_weights(spec)
    model_shapes = [p.shape for p in model.parameters()]
    out, total = [], 0
    while total < limit:
        for s in model_shapes:
            if total >= limit:
                break
            out.append(s)
            total += s.numel()
    return out


def one_path(path: str, tensor_shapes, steps: int, warmup: int) -> float:
    from bench.trainer import EMA

    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.02) for s in tensor_shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    kw = {"current": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[path]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, **kw)
    ema = EMA([(f"p{i}", p) for i, p in enumerate(params)], 0.9999)
    update = ema.update_reference if path == "current" else ema.update
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.step()
        update()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    del opt, ema, params
    gc.collect()
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=float, default=50e6, help="number of parameters (default 50M, ~1 GB)")
    ap.add_argument("--paper-size", action="store_true", help=f"DiT-XL/2's {PAPER_PARAMS / 1e6:.1f}M (~17 GB)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = PAPER_PARAMS if args.paper_size else int(args.params)
    tensor_shapes = shapes(n)
    total = sum(s.numel() for s in tensor_shapes)
    print(f"{total / 1e6:.1f}M parameters in {len(tensor_shapes)} tensors (DiT-XL/2 shapes), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.steps} steps after {args.warmup} warm-up")
    results = {}
    for path in ("current", "foreach", "fused"):
        results[path] = one_path(path, tensor_shapes, args.steps, args.warmup)
    print("| path | AdamW | EMA | ms per step | / current |")
    print("| --- | --- | --- | --- | --- |")
    what = {"current": ("default (per-parameter loop on CPU)", "Python loop of lerp_"),
            "foreach": ("foreach=True", "_foreach_lerp_"), "fused": ("fused=True", "_foreach_lerp_")}
    for path, ms in results.items():
        print(f"| {path} | {what[path][0]} | {what[path][1]} | {ms:.1f} | {ms / results['current']:.3f} |")


if __name__ == "__main__":
    main()
