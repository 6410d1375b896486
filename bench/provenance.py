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


# The environment that makes each library on the CPU path choose its kernels for one x86 SIMD
# level: ATen, oneDNN, MKL, OpenBLAS (numpy's and scipy's: FID's matrix square root) and numpy's own
# SIMD loops (KID's sums) each pick when they load, so it is set before a child process starts.
# Measured: a dit-transfer result recorded on an AVX2 AMD EPYC re-runs bit for bit (weights, samples,
# every metric) on an AVX-512 AMD EPYC with these pins and the recorded thread count (OpenBLAS's
# too); ATen's pin alone gives the same final weights, and with none they agree to ~1e-5 relative.
# OpenBLAS's Haswell core for records from Intel CPUs is not measured.
SIMD_LEVELS = ("DEFAULT", "AVX2", "AVX512")
KERNEL_PINS = {"AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}}
# What a result records of them (OpenBLAS's core follows the CPU vendor, not the level: bench/verify.py).
KERNEL_ENV = (*dict.fromkeys(k for pins in KERNEL_PINS.values() for k in pins), "OPENBLAS_CORETYPE")


def device_info() -> dict:
    # cpu_capability is the SIMD level ATen's kernels dispatch on: with the CPU model, what decides
    # whether two machines can agree bit for bit (README, "Determinism and resume").
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor()
            or platform.machine(), "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    # Kernel pins in the environment (KERNEL_PINS above): with them an AVX-512 machine
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
