"""What produced a number: code version, environment, hardware."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

import torch

from bench.paths import project_root

PACKAGES = ["bench", "diffusion-transfer-bench", "torch", "torchvision", "diffusers", "numpy", "scipy",
            "safetensors", "pydantic", "datasets", "peft", "timm", "torch-fidelity", "clean-fid"]


def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=project_root(), capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        # results/ is excluded: writing results must not make the next run look dirty.
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results",
                    ":(exclude)LEADERBOARD.md", ":(exclude)reports")
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), for telling machines apart in provenance."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE",
              "NPY_DISABLE_CPU_FEATURES")


def device_info() -> dict:
    # cpu_capability is the SIMD level ATen's kernels dispatch on: with the CPU model, what decides
    # whether two machines can agree bit for bit (README, "Determinism and resume").
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor()
            or platform.machine(), "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    # Kernel pins in the environment (bench/verify.py KERNEL_PINS): with them an AVX-512 machine
    # records what an AVX2 one computes; without them every library runs at the machine's own level.
    pinned = {k: os.environ[k] for k in KERNEL_ENV if k in os.environ}
    if pinned:
        info["kernel_env"] = pinned
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


def peak_memory_mb() -> float:
    import resource

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
