"""One way to write a file so that readers see it complete or not at all."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_write(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a per-process temporary path beside `path`; on success it replaces `path`, on error
    it is removed. `suffix` is for writers that insist on an extension (np.savez adds `.npz`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_tensors(path: Path, make) -> dict:
    """The tensors saved at `path` (safetensors), or `make()`'s, written atomically first: the one
    pattern behind every sampled-once artefact (knowledge bank, EWC Fisher data, Fisher)."""
    from safetensors.torch import load_file, save_file

    if path.exists():
        return load_file(path)
    tensors = make()
    with atomic_write(path) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, tmp)
    return tensors
