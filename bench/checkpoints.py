"""Reading a run's checkpoints: which one is the latest, and the method state it holds.

The trainer writes them (bench/trainer.py `save_checkpoint`); the runner, analyses and a backbone
taken from a finished run (bench/backbone/from_run.py) read them through here, so reading a
checkpoint never needs the trainer or the runner. Where a run keeps them is `bench.paths.checkpoint_dir`.

Every checkpoint records, in its metadata, the sha256 of its tensors and of its other metadata
(`CHECKSUM_KEY`, `checkpoint_sha256`). Reading one recomputes it: a checkpoint whose bits changed
after it was written (a flipped bit in a tensor with the header intact) is refused instead of
silently moving a resumed run's numbers under the same run identity. Resuming also refuses a
checkpoint without the checksum (written before checksums existed).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from bench.errors import BenchError

CHECKSUM_KEY = "sha256"


def checkpoint_sha256(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes, in name order) and every metadata entry
    except the checksum itself."""
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in meta.items() if k != CHECKSUM_KEY}, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def latest_checkpoint(folder: Path) -> Path | None:
    ckpts = sorted(folder.glob("step-*.safetensors"), key=lambda p: int(p.stem.split("-")[1]))
    return ckpts[-1] if ckpts else None


def _read_checkpoint(path: Path, require_checksum: bool = False) -> tuple[dict, dict]:
    """(tensors, metadata), checked against the checksum recorded in the file. `require_checksum`
    (resuming): a checkpoint without one is refused too."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(path)
    except Exception as exc:
        raise BenchError(f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it or run with --force") from None
    recorded = meta.get(CHECKSUM_KEY)
    if recorded is None:
        if require_checksum:
            raise BenchError(f"checkpoint {path} predates checkpoint checksums and cannot be checked; "
                             f"rerun without --resume to start over from step 0")
    elif checkpoint_sha256(tensors, meta) != recorded:
        raise BenchError(f"checkpoint {path} does not match the sha256 recorded in it (it changed after it was "
                         f"written); refusing it. Rerun without --resume to start over from step 0")
    return tensors, meta


def load_checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """The method state of the model a run evaluated: what `Method.state_dict` returned, with the
    EMA of the trained weights in place of the weights where the run kept one."""
    tensors = _read_checkpoint(path)[0]
    state = _method_state(tensors)
    return {k: tensors.get(f"ema.{k}", v) for k, v in state.items()}


def _method_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
