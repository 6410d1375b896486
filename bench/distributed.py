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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from bench.errors import BenchError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


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


def data_parallel(device: torch.device) -> DataParallel | None:
    """The process group of an `accelerate launch` with several processes, else None."""
    if world_size() <= 1:
        return None
    from accelerate import Accelerator, DistributedDataParallelKwargs

    # Methods may leave a trainable parameter without gradient on some step (a label row no sample
    # of the batch uses); DDP must not wait for it.
    acc = Accelerator(cpu=device.type == "cpu",
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    return DataParallel(acc, acc.process_index, acc.num_processes)
