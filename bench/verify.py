"""`bench verify [PATHS]`: re-run result files and compare them exactly.

A tiny-profile result is re-run from what it recorded (task and version, profile, task overrides,
method and config, dataset, seed, budget) in a throw-away results and cache folder, and the re-run
must give the same final-weight hash, the same samples and the same metrics, to the last bit.
Anything else is a failure that names the file and the first fields that differ: a hand-edited
number cannot pass. Paper-profile results cannot be re-run in CI; they are accepted only with full
provenance and the leaderboard shows them as "submitted, not re-run".

Bitwise equality holds on one kind of CPU (any thread count measured here); across CPU kinds
float kernels differ in the last bits (README, "Determinism and resume"). A result recorded at a
lower x86 SIMD level than this machine's (AVX2 here on AVX-512) is re-run in a child process with
every library's kernels pinned to the recorded level (`KERNEL_PINS` in bench/provenance.py), which restores bitwise
equality; any other mismatch on a result recorded on another CPU says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError
from bench.planning import recorded_overrides, replan, stored_identity
from bench.provenance import KERNEL_PINS, SIMD_LEVELS

PINNED_MARK = "BENCH_VERIFY_PINNED"  # set in the child: it re-runs in-process


def _device_record(result: dict) -> dict:
    """What a result recorded of the machine it ran on (provenance.device_info, plus run_device)."""
    return (result.get("provenance") or {}).get("device") or {}


def kernel_pins(result: dict) -> dict[str, str] | None:
    """The environment that re-runs `result` with the kernels of the SIMD level it was recorded at,
    where this machine's level is higher (a lower level cannot be raised); None where none is needed
    or known."""
    device = _device_record(result)
    theirs, here = device.get("cpu_capability"), torch.backends.cpu.get_cpu_capability()
    if theirs not in KERNEL_PINS or here not in SIMD_LEVELS or SIMD_LEVELS.index(theirs) >= SIMD_LEVELS.index(here):
        return None
    blas = "Zen" if "AMD" in str(device.get("cpu_model")) else "Haswell"
    return {**KERNEL_PINS[theirs], "OPENBLAS_CORETYPE": blas, "OMP_NUM_THREADS": str(device.get("torch_threads") or 1)}


def _verify_pinned(path: Path, pins: dict[str, str]) -> tuple[str, str]:
    """verify_file in a child process started with `pins`; its status and detail (as JSON on the
    child's last stdout line)."""
    child = "import json, sys; from pathlib import Path; from bench.verify import verify_file; " \
            "print(json.dumps(verify_file(Path(sys.argv[1]))))"
    proc = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True, text=True,
                          env={**os.environ, **pins, PINNED_MARK: "1"})
    try:
        status, detail = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return "FAIL", f"the re-run with kernels pinned to the recorded SIMD level failed: {last}"
    return status, f"{detail} (kernels pinned to {pins['ATEN_CPU_CAPABILITY'].upper()}, as recorded)"


REQUIRED_PROVENANCE = ("commit", "packages", "device", "backbone_sha256", "train_data_sha256", "final_state_sha256")
RERUN_PROFILES = ("tiny",)


def changed_result_files(since: str, root: Path) -> list[Path]:
    """Run-result files under `root` added or modified since the git ref `since`."""
    try:
        out = subprocess.run(["git", "diff", "--name-only", "--diff-filter=AM", since, "--", str(root)],
                             capture_output=True, text=True, check=True, cwd=root.parent).stdout
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        raise BenchError(f"cannot list files changed since {since!r}: "
                         f"{getattr(err, 'stderr', '') or err}".strip()) from None
    top = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                              cwd=root.parent).stdout.strip())
    return sorted(p for p in (top / line for line in out.splitlines()) if p.suffix == ".json" and _is_run(p))


def _is_run(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return True  # unreadable: verify reports it
    return isinstance(data, dict) and "run_identity" in data


def _diff(recorded: Any, rerun: Any, prefix: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(rerun, dict):
        out = []
        for k in sorted(set(recorded) | set(rerun)):
            out += _diff(recorded.get(k), rerun.get(k), f"{prefix}{k}.")
        return out
    if json.dumps(recorded, default=str) != json.dumps(rerun, default=str):
        return [f"{prefix.rstrip('.')}: recorded {recorded!r}, re-run {rerun!r}"]
    return []


def check_provenance(result: dict) -> list[str]:
    prov = result.get("provenance") or {}
    return [k for k in REQUIRED_PROVENANCE if not prov.get(k)]


def recorded_task(result: dict, workdir: Path):
    """The task exactly as the result recorded it (its resolved profile spec and task overrides),
    whatever the task file in this checkout says now."""
    import yaml

    from bench.tasks import load_task

    rs = result["resolved_spec"]
    raw = {"version": rs["version"], "name": rs["task"], "family": rs["family"],
           "description": f"the spec recorded by a {rs['task']} result (bench verify)",
           "reference": {"title": "recorded spec", "url": "about:blank"}, "base": rs["spec"],
           "profiles": {rs["profile"]: {}}}
    path = workdir / f"{rs['task']}.recorded.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=True))
    return load_task(str(path), rs["profile"]).with_overrides(result.get("task_overrides") or {})


def recorded_device(result: dict) -> str:
    """The device kind a result was computed on: a CPU result re-run on a GPU (or the reverse)
    cannot agree bit for bit. Results from before `run_device` was recorded name only whether CUDA
    was there; without it they ran on the CPU."""
    device = _device_record(result)
    if device.get("run_device"):
        return device["run_device"]
    return "auto" if device.get("cuda") else "cpu"


def rerun(result: dict, workdir: Path) -> dict:
    """Re-runs a recorded tiny result in `workdir` (results and cache) and returns the new result."""
    from bench.check import _isolated
    from bench.registry import build_method
    from bench.runner import RunOptions, execute

    workdir.mkdir(parents=True, exist_ok=True)
    task = recorded_task(result, workdir)
    # The method is built again from its recorded config, and that rebuilt config is what the
    # re-run is keyed and hashed by: a config that no longer rebuilds the same fails the identity check.
    method = build_method(result["method"], recorded_overrides(result["method"], result["method_config"]),
                          family=task.family)
    device = recorded_device(result)
    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError("recorded on a GPU: re-running it bit for bit needs one, and this machine has no CUDA")
    # The recorded thread count: a UNet's convolutions reduce in a thread-dependent order, so 1 and
    # 2 threads differ in the last bits (the DiT's matmuls do not; README, "Determinism and resume").
    threads = _device_record(result).get("torch_threads")
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with _isolated(workdir):  # planned inside: its result path is under the throw-away folder
            run = replan(result, task, method)
            path = execute(run, method, log=lambda *_: None, options=RunOptions(device=device))
            return json.loads(path.read_text())
    finally:
        torch.set_num_threads(saved_threads)


def verify_file(path: Path) -> tuple[str, str]:
    """(status, detail): status is "ok", "submitted" (paper profile, provenance complete) or "FAIL"."""
    from bench.provenance import device_info

    try:
        result = json.loads(path.read_text())
        identity = stored_identity(result)
    except KeyError as err:
        return "FAIL", f"not a complete result file (no field {err.args[0]!r})"
    except (OSError, ValueError, TypeError) as err:
        return "FAIL", f"not a readable result file ({type(err).__name__}: {err})"
    if result.get("profile") not in RERUN_PROFILES:
        missing = check_provenance(result)
        if missing:
            return "FAIL", f"{result.get('profile')}-profile result without full provenance (missing {', '.join(missing)})"
        return "submitted", "submitted, not re-run: a paper-profile result with full provenance"
    if result.get("run_identity") is not None and identity != result["run_identity"]:  # absent in older files
        return "FAIL", "its recorded run identity does not match what it records (edited by hand?)"
    pins = None if os.environ.get(PINNED_MARK) else kernel_pins(result)
    if pins is not None:
        return _verify_pinned(path, pins)
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        try:
            new = rerun(result, Path(tmp))
        except BenchError as err:
            return "FAIL", str(err)
    if new["run_identity"] != identity:
        return "FAIL", "re-running the recorded spec does not reproduce the recorded run identity"
    diffs = _diff({"final_state_sha256": result["provenance"].get("final_state_sha256"),
                   "samples": result.get("samples"), "metrics": result.get("metrics")},
                  {"final_state_sha256": new["provenance"]["final_state_sha256"],
                   "samples": new.get("samples"), "metrics": new.get("metrics")})
    if diffs:
        here, there = device_info(), _device_record(result)
        note = ""
        keys = ("cpu_model", "cpu_capability")
        if any(here.get(k) != there.get(k) for k in keys):
            recorded_on = "/".join(str(there[k]) for k in keys) if all(k in there for k in keys) else \
                "a CPU the result does not name"
            note = (f" (recorded on {recorded_on}, re-run on {'/'.join(str(here.get(k)) for k in keys)}: "
                    f"bitwise equality holds on one CPU kind only)")
        more = f" (+{len(diffs) - 2} more)" if len(diffs) > 2 else ""
        return "FAIL", "re-run differs: " + "; ".join(diffs[:2]) + more + note
    return "ok", f"re-run bit-identical (final state {new['provenance']['final_state_sha256'][:12]}, " \
                 f"samples {new['samples']['sha256'][:12]}, {len(new['metrics'])} metrics)"
