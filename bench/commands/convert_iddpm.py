"""`bench convert-iddpm`: a released improved-diffusion checkpoint (.pt) as UNet2DModel safetensors.

The limited-data task's paper profile loads the converted file (its `backbone.weights`); the
converter is bench/backbone/iddpm_convert.py, and the printed sha256 is what the task can pin.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import BenchError

NAME = "convert-iddpm"
HELP = "convert an improved-diffusion checkpoint (.pt) to UNet2DModel safetensors"


def add_arguments(p) -> None:
    p.add_argument("checkpoint", type=Path, help="improved-diffusion .pt file, e.g. imagenet64_uncond_100M_1500K.pt")
    p.add_argument("out", type=Path, help="where to write the .safetensors file")
    p.add_argument("--preset", default="iddpm-imagenet64", help="UNet2DModel architecture (bench/backbone/unet2d.py)")
    p.add_argument("--config", help="JSON object of UNet2DModel kwargs overriding the preset's (another size)")


def run(args, log) -> int:
    import torch
    from safetensors.torch import save_file

    from bench.atomic import atomic_write
    from bench.backbone.base import file_sha256
    from bench.backbone.iddpm_convert import convert_iddpm_state_dict
    from bench.backbone.unet2d import build_unet

    if not args.checkpoint.exists():
        raise BenchError(f"no such checkpoint: {args.checkpoint}")
    try:
        extra = json.loads(args.config) if args.config else {}
    except json.JSONDecodeError as err:
        raise BenchError(f"--config is not a JSON object: {err}") from None
    sd = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    config = {"preset": args.preset, **extra}
    state = convert_iddpm_state_dict(sd, config)
    model = build_unet(config)
    model.load_state_dict(state, strict=True)  # every tensor lands, shape for shape
    with atomic_write(args.out) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp)
    log(f"wrote {args.out} ({len(state)} tensors) sha256={file_sha256(args.out)}")
    return 0
