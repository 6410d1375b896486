"""Running a grid of planned runs: in this process one after another (default), or fanned out
through submitit as one job per (dataset, seed): a Slurm job array, or submitit's local executor
(one subprocess per job) on a workstation. Every job calls the same `execute` with its
`PlannedRun` (bench/planning.py), as planned here, and a job whose result is current is skipped,
so a grid can be resubmitted after preemption."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import BenchError, RunFailed
from bench.paths import cache_dir

if TYPE_CHECKING:
    from bench.planning import PlannedRun
    from bench.runner import RunOptions


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


def _job(run: "PlannedRun", options: "RunOptions", results_dir: str) -> str:
    # Runs on the worker: the method is built there (methods may hold injected modules).
    os.environ["BENCH_RESULTS"] = results_dir
    from bench.runner import execute

    return str(execute(run, run.build_method(), log=lambda msg: print(msg, flush=True), options=options))


def run_inline(runs: list["PlannedRun"], options: "RunOptions", log) -> list[Path]:
    from bench.runner import execute

    with sigterm_interrupts():  # `kill` ends a run as Ctrl-C does: temporary files removed, resume hint
        return [execute(run, run.build_method(), log=log, options=options) for run in runs]


@contextmanager
def sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt here for a while, so a killed `bench run` unwinds as an
    interrupted one (cancelling its jobs, see `cancelled_on_interrupt`) instead of vanishing.
    Signal handlers belong to the main thread; elsewhere this does nothing."""
    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_cluster(cluster: str) -> None:
    """The requested submitit back-end exists here, checked before any work: asked for Slurm
    where there is none, submitit's AutoExecutor would quietly run the jobs as local processes
    while we said `(slurm)`."""
    import shutil

    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise BenchError("--cluster slurm: Slurm is not available here (no `sbatch` on PATH); run on a Slurm "
                         "login node, or use --cluster local (subprocesses on this machine)")


def make_executor(opts: ClusterOptions):
    """submitit's executor for `opts.cluster`, named explicitly (never AutoExecutor's guess).
    Logs: on Slurm one folder per job, `<folder>/%j`, which sbatch and submitit resolve to the
    real job id; the local and debug back-ends take the folder as given (their controller would
    create a literal `%j` folder), and submitit names each file there by the job id
    (`<job id>_<task>_log.out`)."""
    import submitit

    check_cluster(opts.cluster)
    folder = Path(opts.folder) if opts.folder else cache_dir() / "submitit"
    executor = submitit.AutoExecutor(folder=folder / "%j" if opts.cluster == "slurm" else folder,
                                     cluster=opts.cluster)
    params = dict(timeout_min=opts.timeout_min, name="bench")
    if opts.cluster == "slurm":
        params.update(slurm_partition=opts.partition, gpus_per_node=opts.gpus_per_node,
                      cpus_per_task=opts.cpus_per_task, mem_gb=opts.mem_gb,
                      slurm_array_parallelism=opts.array_parallelism)
    elif opts.cluster == "local":
        params.update(gpus_per_node=opts.gpus_per_node if _has_cuda() else 0)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


@contextmanager
def cancelled_on_interrupt(jobs, log):
    """Ctrl-C or SIGTERM while this process waits for its jobs cancels the ones still running
    (Slurm: scancel; local: the controller kills its tasks). Without it the training processes
    outlive us: submitit's workers ignore SIGTERM (Slurm sends it before preemption)."""
    try:
        with sigterm_interrupts():
            yield
    except KeyboardInterrupt:
        running = [job for job in jobs if not job.done()]
        for job in running:
            try:
                job.cancel(check=False)
            except Exception as exc:  # one that cannot be cancelled does not keep the others running
                log(f"could not cancel job {job.job_id}: {type(exc).__name__}: {exc}")
        log(f"interrupted: cancelled {len(running)} running job(s) of {len(jobs)}")
        raise


def run_submitit(runs: list["PlannedRun"], options: "RunOptions", opts: ClusterOptions, log) -> list[Path]:
    from bench.paths import results_dir

    executor = make_executor(opts)
    # The device is chosen on the worker, where the GPU is.
    options = replace(options, device="auto")
    jobs = executor.map_array(_job, runs, [options] * len(runs), [str(results_dir())] * len(runs))
    logs = sorted({str(job.paths.stdout.parent) for job in jobs})
    log(f"submitted {len(jobs)} job(s) to submitit ({opts.cluster}): {', '.join(j.job_id for j in jobs)}; "
        f"logs in {', '.join(logs)}")
    paths, failed = [], []
    with cancelled_on_interrupt(jobs, log):
        for run, job in zip(runs, jobs):
            try:
                paths.append(Path(job.result()))
            except Exception as exc:  # one failed job does not hide the others' results
                failed.append(f"{run.dataset}/seed{run.seed} (job {job.job_id}): {str(exc).strip().splitlines()[-1]}")
    if failed:
        raise RunFailed(f"{len(failed)} of {len(jobs)} job(s) failed: " + "; ".join(failed))
    return paths


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_planned(runs: list["PlannedRun"], options: "RunOptions", executor: str, opts: ClusterOptions | None,
                log) -> list[Path]:
    """Carry out planned runs (force, resume and device from `options`) with the named executor."""
    if executor == "inline":
        return run_inline(runs, options, log)
    if executor == "submitit":
        return run_submitit(runs, options, opts or ClusterOptions(), log)
    raise BenchError(f"unknown executor {executor!r}; use inline or submitit")
