"""Reading a run's checkpoints: which one is the latest, and the method state it holds.

The trainer writes them (bench/trainer.py `save_checkpoint`); the runner, analyses and a backbone
taken from a finished run (bench/backbone/from_run.py) read them through here, so reading a
checkpoint never needs the trainer or the runner. Where a run keeps them is `bench.paths.checkpoint_dir`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from bench.errors import BenchError


def latest_checkpoint(folder: Path) -> Path | None:
    ckpts = sorted(folder.glob("step-*.safetensors"), key=lambda p: int(p.stem.split("-")[1]))
    return ckpts[-1] if ckpts else None


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        return load_file(path), meta
    except Exception as exc:
        raise BenchError(f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it or run with --force") from None


def load_checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """The method state of the model a run evaluated: what `Method.state_dict` returned, with the
    EMA of the trained weights in place of the weights where the run kept one."""
    tensors = _read_checkpoint(path)[0]
    state = _method_state(tensors)
    return {k: tensors.get(f"ema.{k}", v) for k, v in state.items()}


def _method_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
