"""Training speed of the paper-shape DiT-XL/2 on a GPU, the harness against a bare loop.

    python benchmarks/bench_dit_xl2_gpu.py [--steps 20] [--warmup 5] [--batch-size 32] [--peak-tflops 989]
    python benchmarks/bench_dit_xl2_gpu.py --device cpu --tiny --steps 2 --warmup 1   # smoke test of the script

The model is the paper profile's architecture (DiT-XL/2, 256 px -> 32x32x4 latents, learned
sigma), built by the DiT adapter from its pinned config with random weights (no download) and
with the original DiT's shared condition embedder. Each step is what `bench run` does: the shared
trainer's loss (hybrid: epsilon MSE + VLB), AdamW, the EMA update, under bf16 autocast. The bare
baseline is the same model, a plain epsilon-MSE step and AdamW, no harness. Printed: step time,
images per second, model FLOP utilisation (FLOPs of one forward+backward counted by
torch.utils.flop_counter, divided by the device's peak dense bf16 FLOP/s), peak memory, and the
harness/bare ratio. Nothing is asserted; record the numbers with the device they came from.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

# Peak dense bf16 tensor FLOP/s (vendor data sheets, SXM parts); --peak-tflops overrides.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def build(tiny: bool, device: torch.device):
    from bench.backbone import DiTBackbone, noise_schedule
    from bench.spec import BackboneSpec, DiffusionSpec, TrainSpec
    from bench.tasks import load_task

    if tiny:
        spec = load_task("dit-transfer", "tiny").spec.backbone.model_copy(update={"weights": None})
        spec = spec.model_copy(update={"config": {**spec.config, "in_channels": 4, "out_channels": 8}})
    else:
        spec = BackboneSpec(kind="dit", pretrained={"repo": "facebook/DiT-XL-2-256", "subfolder": "transformer"},
                            num_source_classes=1000)
    torch.manual_seed(0)
    backbone = DiTBackbone.from_scratch(spec).to(device)
    diffusion = DiffusionSpec(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    train = TrainSpec(batch_size=1, steps=1, lr=1e-4, checkpoint_every=1, loss="hybrid", ema_decay=0.9999)
    return backbone, noise_schedule(diffusion), train


def batch(backbone, n: int, device):
    size, ch = backbone.sample_size, backbone.channels
    return {"x0": torch.randn(n, ch, size, size, device=device),
            "y": torch.randint(0, backbone.null_class + 1, (n,), device=device)}


def harness_step(backbone, schedule, spec, opt, ema, b):
    from bench.trainer import diffusion_loss

    t = torch.randint(0, 1000, (len(b["x0"]),), device=b["x0"].device)
    with torch.autocast(b["x0"].device.type, dtype=torch.bfloat16):
        loss = diffusion_loss(backbone, schedule, b, t, spec).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    ema.update()


def bare_step(model, schedule, opt, b):
    noise = torch.randn_like(b["x0"])
    t = torch.randint(0, 1000, (len(b["x0"]),), device=b["x0"].device)
    with torch.autocast(b["x0"].device.type, dtype=torch.bfloat16):
        out = model(schedule.add_noise(b["x0"], noise, t), timestep=t, class_labels=b["y"]).sample
        loss = (out[:, : noise.shape[1]].float() - noise).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def timed(step, steps: int, warmup: int, device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps


def train_flops(backbone, b) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    t = torch.randint(0, 1000, (len(b["x0"]),), device=b["x0"].device)
    with FlopCounterMode(display=False) as counter:
        out = backbone.model(b["x0"], timestep=t, class_labels=b["y"]).sample
        out.float().pow(2).mean().backward()
    backbone.model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="the tiny profile's DiT (checks the script on a CPU)")
    p.add_argument("--peak-tflops", type=float, default=None)
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here; nothing measured (use --device cpu --tiny to check the script)")
        return 2
    device = torch.device(args.device)
    from bench.trainer import EMA

    backbone, schedule, spec = build(args.tiny, device)
    params = sum(p.numel() for p in backbone.model.parameters())
    b = batch(backbone, args.batch_size, device)
    flops = train_flops(backbone, b)

    results = {}
    for name in ("bare", "harness"):
        opt = torch.optim.AdamW(backbone.model.parameters(), lr=1e-4, weight_decay=0.0)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        if name == "bare":
            step = lambda: bare_step(backbone.model, schedule, opt, b)  # noqa: E731
        else:
            ema = EMA(list(backbone.model.named_parameters()), spec.ema_decay)
            step = lambda: harness_step(backbone, schedule, spec, opt, ema, b)  # noqa: E731
        seconds = timed(step, args.steps, args.warmup, device)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        results[name] = (seconds, peak)

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak_tf = peak_tflops(dev_name, args.peak_tflops)
    print(f"device: {dev_name}; torch {torch.__version__}; model: {'tiny DiT' if args.tiny else 'DiT-XL/2'} "
          f"({params / 1e6:.1f}M parameters), batch {args.batch_size}, bf16 autocast, "
          f"{flops / args.batch_size / 1e9:.1f} GFLOP per image per forward+backward")
    for name, (seconds, peak) in results.items():
        ips = args.batch_size / seconds
        mfu = f"{100 * flops / seconds / (peak_tf * 1e12):.1f}%" if peak_tf else "n/a (unknown peak; --peak-tflops)"
        print(f"  {name:8s} step {seconds * 1000:8.1f} ms   {ips:8.1f} img/s   MFU {mfu}   peak memory {peak:.1f} GiB")
    print(f"  harness / bare step time: {results['harness'][0] / results['bare'][0]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
