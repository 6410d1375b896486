"""Content hashes of files and state dicts: what pins weights, data and a run's final state."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """Content hash of a state dict, independent of file format."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
