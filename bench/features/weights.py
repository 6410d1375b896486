"""Locating and verifying extractor weights: explicit path > environment variable > the torch
hub checkpoint folder ($TORCH_HOME/hub/checkpoints, where torch-fidelity keeps them) >
download. Every file is sha256-checked before use; a mismatch is an error, never a warning."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.backbone import file_sha256
from bench.errors import BenchError


@dataclass(frozen=True)
class WeightsFile:
    name: str              # what the weights are, for messages
    url: str
    filename: str          # the file name in the hub checkpoint folder
    sha256: str            # full digest, or a prefix (torch.hub's convention in file names)
    env_var: str           # explicit path override


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def verify(path: Path, expected: str, what: str) -> str:
    """The file's sha256, after checking it starts with `expected` (a full digest or prefix)."""
    if not path.is_file():
        raise BenchError(f"{what} weights file {path} does not exist")
    digest = file_sha256(path)
    if expected and not digest.startswith(expected.lower()):
        raise BenchError(f"{what} weights {path} have sha256 {digest[:16]}..., expected {expected[:16]}...; "
                         f"the file is corrupt, truncated or not the right weights")
    return digest


def tiny_asset(path: Path, expected: str | None, what: str, build: str) -> str:
    """The sha256 of a tiny-profile asset built here (`bench build-tiny <build>`), after checking it
    exists and, when the task pins one, matches the pin; otherwise one line with the rebuild command."""
    if not path.exists():
        raise BenchError(f"{what} weights {path} are missing; rebuild them with `bench build-tiny {build}`")
    digest = file_sha256(path)
    if expected is not None and digest != expected:
        raise BenchError(f"{what} weights {path} have sha256 {digest[:12]}..., the task expects {expected[:12]}...; "
                         f"rebuild with `bench build-tiny {build}` or fix the task")
    return digest


def resolve(spec: WeightsFile, path: str | os.PathLike | None = None, expected_sha256: str | None = None,
            allow_download: bool | None = None) -> tuple[Path, str]:
    """(path, sha256) of verified weights. `expected_sha256` replaces the manifest's digest
    (e.g. for a converted copy whose hash you checked yourself)."""
    expected = spec.sha256 if expected_sha256 is None else expected_sha256
    chosen = path or os.environ.get(spec.env_var)
    if chosen:
        p = Path(chosen).expanduser()
        return p, verify(p, expected, spec.name)
    cached = hub_checkpoint_dir() / spec.filename
    if cached.is_file():
        return cached, verify(cached, expected, spec.name)
    if allow_download is None:
        allow_download = os.environ.get("BENCH_OFFLINE", "") in ("", "0") and \
            os.environ.get("HF_HUB_OFFLINE", "") in ("", "0")
    hint = (f"put the file at {cached} or pass its path with {spec.env_var}=/path/to/{spec.filename} "
            f"(download it from {spec.url})")
    if not allow_download:
        raise BenchError(f"{spec.name} weights not found and downloads are off (offline); {hint}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + f".{os.getpid()}.partial")
    try:
        torch.hub.download_url_to_file(spec.url, str(tmp), progress=False)
        digest = verify(tmp, expected, spec.name)
        os.replace(tmp, cached)
    except BenchError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # network errors of every kind
        tmp.unlink(missing_ok=True)
        raise BenchError(f"could not download {spec.name} weights ({type(exc).__name__}); {hint}") from None
    return cached, digest
