"""Data-parallel training of one run over several processes, on accelerate (`accelerate launch`).

    accelerate launch --num_processes 8 -m bench run --task corruption-sweep --method clean ...

Every process runs the same `bench run`. The trainer seeds torch's RNG from (seed, step) before
every step, so every process draws the same global batch, timesteps and noise; each keeps its own
contiguous share of the rows, and DistributedDataParallel (accelerate's `prepare_model`) averages
the gradients, which is the gradient of the global batch's mean loss. A 2-process run therefore
matches a 1-process run with the same global batch up to the order of floating-point sums
(tests/test_distributed.py declares the tolerance); randomness a method draws inside its loss on
its share (IP's extra noise) differs by design. Only the main process tracks metrics, writes
checkpoints, samples, scores and writes the result; the others stop after training.
Grids of runs still fan out with submitit (bench/executors.py); this splits one run.

What is drawn per row of the global batch travels with the rows: a method's per-row state (CEP's
delta) is a column of the batch, and a family whose images go through a stochastic autoencoder
draws the posterior noise for the global batch but encodes only this process's rows after
sharding (bench.backbone.base: `encode_later`, `finish_encoding`). A loss over a subset of rows
(Diff-Tuning's bank rows, DreamBooth's class rows) is normalised by the subset's size in the
global batch (`TrainContext.flag_mean`), so the averaged gradient is the global batch's.

Devices: each process trains on `cuda:LOCAL_RANK` (`process_device`), set before any module moves.
While the main process tracks metrics (sampling and scoring, minutes to hours on the paper
profiles) the others wait in the next step's collective, so the process group's timeout is
`collective_timeout()` (BENCH_COLLECTIVE_TIMEOUT_S, default 6 hours) instead of torch's 10 to 30 minutes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from bench.errors import BenchError


DEFAULT_COLLECTIVE_TIMEOUT_S = 6 * 3600


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int | None:
    """This process's index on its machine under a launcher with several processes, else None."""
    if world_size() <= 1 or os.environ.get("LOCAL_RANK") is None:
        return None
    return int(os.environ["LOCAL_RANK"])


def process_device(device: torch.device) -> torch.device:
    """The device this process trains on. Under `accelerate launch` / torchrun with several
    processes, CUDA without an index (`--device auto` or `cuda`) is `cuda:LOCAL_RANK`: resolved
    before the backbone moves, so each process's model lands on its own GPU and not all on cuda:0."""
    rank = local_rank()
    if device.type != "cuda" or rank is None:
        return device
    count = torch.cuda.device_count()
    if device.index is not None:
        raise BenchError(f"--device {device} under a launch of {world_size()} processes would put every process on "
                         f"{device}; use --device auto or cuda (process k takes cuda:LOCAL_RANK)")
    if rank >= count:
        raise BenchError(f"process with LOCAL_RANK={rank} has no GPU of its own: this machine has {count} CUDA "
                         f"device(s); launch at most {count} processes per machine")
    return torch.device("cuda", rank)


def use_device(device: torch.device) -> None:
    """Make `device` this process's current CUDA device (kernels and NCCL use it), before any module moves."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


def collective_timeout() -> timedelta:
    """How long a process waits in a collective: the main process tracks metrics alone meanwhile."""
    value = os.environ.get("BENCH_COLLECTIVE_TIMEOUT_S")
    try:
        seconds = float(value) if value else DEFAULT_COLLECTIVE_TIMEOUT_S
    except ValueError:
        raise BenchError(f"BENCH_COLLECTIVE_TIMEOUT_S={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise BenchError(f"BENCH_COLLECTIVE_TIMEOUT_S={value!r} must be positive")
    return timedelta(seconds=seconds)


@dataclass
class DataParallel:
    accelerator: Any
    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The DDP view of `model` for the training forward (same parameters, hooks that average
        gradients); everything else keeps using `model` itself, names unchanged."""
        return self.accelerator.prepare_model(model, device_placement=False)

    def shard(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This process's contiguous share of every tensor's rows (all of one length)."""
        n = len(next(iter(rows.values())))
        if n % self.world:
            raise BenchError(f"a batch of {n} rows does not split over {self.world} processes; make the global "
                             f"batch (train.batch_size, plus any rows a method adds) a multiple of it")
        k = n // self.world
        return {name: v[self.rank * k:(self.rank + 1) * k] for name, v in rows.items()}

    def mean(self, value: float) -> float:
        """The mean of a scalar over processes (the logged loss is the global batch's)."""
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world

    def info(self) -> dict:
        return {"processes": self.world, "backend": torch.distributed.get_backend()}

    def counts(self, rows: dict[str, torch.Tensor]) -> dict[str, int]:
        """The global batch's row count ("") and, per boolean column, how many rows it flags: what
        `TrainContext.flag_mean` divides by on a share of the rows."""
        n = len(next(iter(rows.values())))
        return {"": n, **{k: int(v.sum()) for k, v in rows.items() if v.dtype == torch.bool and v.dim() == 1}}


def data_parallel(device: torch.device) -> DataParallel | None:
    """The process group of an `accelerate launch` with several processes, else None."""
    if world_size() <= 1:
        return None
    from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs

    # Methods may leave a trainable parameter without gradient on some step (a label row no sample
    # of the batch uses); DDP must not wait for it.
    acc = Accelerator(cpu=device.type == "cpu",
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True),
                                       InitProcessGroupKwargs(timeout=collective_timeout())])
    return DataParallel(acc, acc.process_index, acc.num_processes)
