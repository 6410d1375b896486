"""Running a grid of runs: in this process one after another (default), or fanned out through
submitit as one job per (dataset, seed): a Slurm job array, or submitit's local executor (one
subprocess per job) on a workstation. Every job calls the same `execute`, and a job whose result
file exists is skipped, so a grid can be resubmitted after preemption."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from bench.errors import BenchError, RunFailed
from bench.paths import cache_dir


@dataclass(frozen=True)
class ClusterOptions:
    cluster: str = "slurm"          # slurm | local | debug (submitit's names)
    folder: str | None = None       # submitit logs; default <cache>/submitit
    timeout_min: int = 24 * 60
    partition: str | None = None
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 64
    array_parallelism: int = 64


def _job(req, results_dir: str) -> str:
    # Runs on the worker: rebuild the method there (methods may hold injected modules).
    os.environ["BENCH_RESULTS"] = results_dir
    from bench.registry import build_method
    from bench.runner import execute

    method = build_method(req.method_name, req.overrides, family=req.task.family)
    return str(execute(req, method, log=lambda msg: print(msg, flush=True)))


def run_inline(requests, log) -> list[Path]:
    from bench.registry import build_method
    from bench.runner import execute

    out = []
    for req in requests:
        method = build_method(req.method_name, req.overrides, family=req.task.family)
        out.append(execute(req, method, log=log))
    return out


def run_submitit(requests, opts: ClusterOptions, log) -> list[Path]:
    import submitit

    from bench.paths import results_dir

    folder = Path(opts.folder) if opts.folder else cache_dir() / "submitit"
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=None if opts.cluster == "slurm" else opts.cluster)
    params = dict(timeout_min=opts.timeout_min, name="bench")
    if opts.cluster == "slurm":
        params.update(slurm_partition=opts.partition, gpus_per_node=opts.gpus_per_node,
                      cpus_per_task=opts.cpus_per_task, mem_gb=opts.mem_gb,
                      slurm_array_parallelism=opts.array_parallelism)
    elif opts.cluster == "local":
        params.update(gpus_per_node=opts.gpus_per_node if _has_cuda() else 0)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    # The device is chosen on the worker, where the GPU is.
    requests = [replace(r, device="auto") for r in requests]
    jobs = executor.map_array(_job, requests, [str(results_dir())] * len(requests))
    log(f"submitted {len(jobs)} job(s) to submitit ({opts.cluster}); logs in {folder}")
    paths, failed = [], []
    for req, job in zip(requests, jobs):
        try:
            paths.append(Path(job.result()))
        except Exception as exc:  # one failed job does not hide the others' results
            failed.append(f"{req.dataset}/seed{req.seed} (job {job.job_id}): {str(exc).strip().splitlines()[-1]}")
    if failed:
        raise RunFailed(f"{len(failed)} of {len(jobs)} job(s) failed: " + "; ".join(failed))
    return paths


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_requests(requests, executor: str, opts: ClusterOptions | None, log) -> list[Path]:
    if executor == "inline":
        return run_inline(requests, log)
    if executor == "submitit":
        return run_submitit(requests, opts or ClusterOptions(), log)
    raise BenchError(f"unknown executor {executor!r}; use inline or submitit")
