"""One run trained data-parallel over two processes (`accelerate launch`, gloo on CPU) against the
same run in one process with the same global batch (bench/distributed.py): the final weights agree
to the declared tolerance (the two differ only in the order of floating-point sums), the logged
losses too, and only the main process writes the result. A run of every family: full fine-tuning
(dit-transfer), CEP pre-training from scratch (corruption-sweep: a per-row delta drawn with the
batch, tracked metrics on the main process while the other waits), Diff-Tuning (bank rows all in
the second process's share, their loss normalised over the global batch), full fine-tuning with
the hybrid loss (limited-data), DreamBooth with its class rows (few-shot: instance rows in one
process, class rows in the other) and a ControlNet (controlnet-convergence).

Without launching: each process of a launch resolves its own GPU, cuda:LOCAL_RANK; deferred
autoencoder encoding of a share equals the rows of the global batch's encoding (and, in one
process, the old eager encoding bit for bit); the subset means of Diff-Tuning's and DreamBooth's
losses, taken over shares, average to the global batch's loss and gradient."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from bench.errors import BenchError
from bench.runner import checkpoint_dir
from bench.trainer import latest_checkpoint, load_checkpoint_state
from conftest import ROOT, bench_cli, result_files, small_task_file

# The two runs' final weights may differ by this fraction of how far training moved them (L2 over all
# parameters). Gradients differ only in summation order, but Adam divides by their running RMS, so
# a parameter whose gradient is ~0 can step by up to lr either way: the bound is relative.
TOLERANCE = 0.01  # measured after 6 steps: full-ft 3.9e-4, cep 3.1e-5, diff-tuning 1.1e-4, limited-data
#                    2.5e-5, dreambooth 7.1e-6, controlnet 2.4e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _final_state(result, cache, monkeypatch) -> dict[str, torch.Tensor]:
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    return load_checkpoint_state(latest_checkpoint(checkpoint_dir(result)))


def _initial(task_file, seed: int = 0) -> dict[str, torch.Tensor]:
    """The weights training started from: the task's tiny pre-trained DiT, or (pre-training from
    scratch) its random initialisation, which the runner seeds with the run's seed."""
    from bench.backbone import load_backbone
    from bench.tasks import load_task

    torch.manual_seed(seed)
    return {k: v.detach() for k, v in load_backbone(load_task(str(task_file), "tiny").spec.backbone).model
            .named_parameters()}


_FEWSHOT = yaml.safe_load((ROOT / "tasks" / "fewshot-corruption.yaml").read_text())["profiles"]["tiny"]["params"]
# DreamBooth at 3 steps per image x 2 images (--sweep num_images=2), one prompt, few class images.
_DREAMBOOTH_PARAMS = {**_FEWSHOT, "prompts": _FEWSHOT["prompts"][:1], "images_per_prompt": 2,
                      "protocols": {"default": {"steps_per_image": 3, "lr": 1e-4}},
                      "class_images": {**_FEWSHOT["class_images"], "per_image": 2, "steps": 3}}

CASES = {  # id -> (task, method and its CLI arguments, dataset, small_task_file overrides)
    "full-ft": ("dit-transfer", "full-ft", "food101", {}),
    "cep": ("corruption-sweep", "cep-u --sweep eta=0", "source64", {  # as conftest.pretraining_source, with tracking
        "datasets": {"imagenet1k": None, "source64": {"title": "source", "num_classes": 64, "synthetic": {
            "generator": "source-shapes", "num_train": 128, "num_eval": 320, "seed": 1}}},
        "params": {"guidance_scales": [1.0], "memorization_threshold": None, "memorization_extractor": None}}),
    "diff-tuning": ("dit-transfer", "diff-tuning", "food101", {}),
    # The other families, untracked (CEP covers the main process tracking while the other waits):
    "limited-data": ("limited-data", "full-ft", "pokemon", {"tracking": None}),  # hybrid loss, learned sigma
    # DreamBooth: 8 instance rows then 8 class rows, so each process holds rows of one kind only.
    "dreambooth": ("fewshot-corruption", "dreambooth --sweep num_images=2", "checker-ball",
                   {"tracking": None, "params": _DREAMBOOTH_PARAMS}),
    "controlnet": ("controlnet-convergence", "controlnet", "edge", {"tracking": None}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_two_process_run_matches_a_one_process_run(tmp_path, monkeypatch, case):
    # `--multi_gpu` is accelerate's torchrun launcher; with `--device cpu` the processes use gloo.
    # (accelerate's `--cpu` runs a single process whatever --num_processes says.)
    name, method, dataset, overrides = CASES[case]
    task = small_task_file(tmp_path, name, **overrides)  # global batch 8, 6 steps
    args = ["run", "--task", task, "--method", *method.split(), "--profile", "tiny", "--dataset", dataset,
            "--seeds", "0", "--device", "cpu"]
    one, two = tmp_path / "one", tmp_path / "two"
    bench_cli(*args, env_extra={"BENCH_RESULTS": str(one / "results"), "BENCH_CACHE": str(one / "cache")},
              check_rc=0)
    env = {**os.environ, "BENCH_RESULTS": str(two / "results"), "BENCH_CACHE": str(two / "cache")}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", str(_free_port()), "-m", "bench", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote  ") == 1  # the main process alone writes
    (r1,), (r2,) = result_files(one / "results"), result_files(two / "results")
    assert r1.relative_to(one / "results") == r2.relative_to(two / "results")  # the same run, same key
    a, b = json.loads(r1.read_text()), json.loads(r2.read_text())
    assert b["provenance"]["data_parallel"] == {"processes": 2, "backend": "gloo"}
    assert "data_parallel" not in a["provenance"]
    assert a["run_identity"] == b["run_identity"]
    for (s1, l1), (s2, l2) in zip(a["training"]["loss_curve"], b["training"]["loss_curve"]):
        assert s1 == s2 and abs(l1 - l2) <= 1e-5 * max(1.0, abs(l1))
    w1, w2 = _final_state(r1, one / "cache", monkeypatch), _final_state(r2, two / "cache", monkeypatch)
    assert w1.keys() == w2.keys()
    # BENCH_CACHE is two's now: the two-process run's first checkpoint (checkpoint folders are keyed by
    # the result's absolute path, so r1's are in one's cache only).
    w0 = load_checkpoint_state(sorted(checkpoint_dir(r2).glob("step-*.safetensors"))[0])  # after 2 steps
    start = _initial(task)
    update = math.sqrt(sum((w1[k] - start[k]).pow(2).sum().item() for k in w1))
    apart = math.sqrt(sum((w1[k] - w2[k]).pow(2).sum().item() for k in w1))
    print(f"{case}: apart / update = {apart / update:.2e}")  # shown with -s
    assert apart <= TOLERANCE * update, (apart, update)
    assert any(not torch.equal(w1[k], w0[k]) for k in w1)
    # No strays: the result, and the results folder's id that keys its checkpoints (bench.paths).
    assert sorted(p.name for p in (two / "results").rglob("*") if p.is_file()) == [".bench-results-id", "seed0.json"]


# -- without launching ---------------------------------------------------------------------------

def _launched(monkeypatch, local_rank: int, world: int = 4, gpus: int = 4) -> list:
    """The environment torchrun / `accelerate launch` gives process `local_rank`, on a machine with
    `gpus` (simulated) CUDA devices; returns the list `torch.cuda.set_device` calls land in."""
    for key, value in {"WORLD_SIZE": world, "RANK": local_rank, "LOCAL_RANK": local_rank,
                       "LOCAL_WORLD_SIZE": world, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": 29500}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(torch.device(d)))
    return calls


def test_each_process_of_a_launch_resolves_its_own_gpu(monkeypatch):
    from bench.distributed import use_device
    from bench.runner import resolve_device

    calls = _launched(monkeypatch, local_rank=3)
    for name in ("auto", "cuda"):
        assert resolve_device(name) == torch.device("cuda", 3)  # not cuda:0, where every rank used to land
    use_device(resolve_device("auto"))  # what bench.runner.execute does before the backbone moves
    assert calls == [torch.device("cuda", 3)]
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(BenchError, match="every process"):
        resolve_device("cuda:0")
    _launched(monkeypatch, local_rank=5, world=8, gpus=4)  # more processes than GPUs on this machine
    with pytest.raises(BenchError, match="LOCAL_RANK=5"):
        resolve_device("auto")
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: CUDA as asked, no index
    assert resolve_device("auto") == torch.device("cuda")


def test_a_launch_waits_hours_for_the_main_process_tracking(monkeypatch):
    from datetime import timedelta

    from bench.distributed import DEFAULT_COLLECTIVE_TIMEOUT_S, collective_timeout

    assert collective_timeout() == timedelta(seconds=DEFAULT_COLLECTIVE_TIMEOUT_S) >= timedelta(hours=1)
    monkeypatch.setenv("BENCH_COLLECTIVE_TIMEOUT_S", "90")
    assert collective_timeout() == timedelta(seconds=90)
    monkeypatch.setenv("BENCH_COLLECTIVE_TIMEOUT_S", "soon")
    with pytest.raises(BenchError, match="BENCH_COLLECTIVE_TIMEOUT_S"):
        collective_timeout()


def _vae_backbone():
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    from bench.backbone import adapter_class

    torch.manual_seed(0)
    dit = DiTTransformer2DModel(num_layers=1, num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                out_channels=4, patch_size=2, sample_size=4, num_embeds_ada_norm=10,
                                norm_type="ada_norm_zero")
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=4, sample_size=8)
    return adapter_class("dit")(dit, vae, 0.18215, 10, "test")


def test_deferred_encoding_of_a_share_is_that_share_of_the_global_encoding():
    from bench.distributed import DataParallel

    backbone = _vae_backbone()
    images = torch.randint(0, 256, (8, 8, 8, 3), dtype=torch.uint8)
    torch.manual_seed(1)
    eager = backbone.encode(images)  # what families did before: the posterior drawn inside encode
    torch.manual_seed(1)
    deferred = backbone.encode_later(images)
    assert deferred["x0"].shape == eager.shape == backbone.latent_shape(8)
    assert torch.equal(backbone.finish_encoding(dict(deferred))["x0"], eager)  # one process: bit for bit
    shares = [backbone.finish_encoding(DataParallel(None, rank, 2).shard(deferred))["x0"] for rank in (0, 1)]
    assert torch.allclose(torch.cat(shares), eager, atol=1e-6)  # each process encodes its 4 rows only


def _shared_loss(method, per_sample, batch, world=2):
    """The loss and gradient DDP makes of `world` processes each computing `method.loss` on its share:
    the mean of the processes' losses, and of their gradients."""
    from bench.distributed import DataParallel
    from bench.method import TrainContext

    losses = []
    for rank in range(world):
        ctx = TrainContext(backbone=None, dataset=None, num_timesteps=1000, batch_size=8, world=world,
                           global_counts=DataParallel(None, rank, world).counts(batch))
        rows = DataParallel(None, rank, world).shard({**batch, "__v": per_sample})
        losses.append(method.loss(rows.pop("__v"), rows, ctx))
    return sum(losses) / world


@pytest.mark.parametrize("name,flag,rows", [("diff-tuning", "bank", [7]), ("diff-tuning", "bank", [5, 6, 7]),
                                            ("dreambooth", "prior", [4, 5, 6, 7])])
def test_subset_means_over_shares_average_to_the_global_loss(name, flag, rows):
    # Bank rows are the last of the batch, class rows its second half: one process may hold none.
    from bench.method import TrainContext
    from bench.registry import build_method

    method = build_method(name)
    values = torch.rand(8, dtype=torch.float64, requires_grad=True)
    batch = {"x0": torch.zeros(8, 1), flag: torch.isin(torch.arange(8), torch.tensor(rows))}
    one = method.loss(values, batch, TrainContext(backbone=None, dataset=None, num_timesteps=1000, batch_size=8))
    (g_one,) = torch.autograd.grad(one, values)
    two = _shared_loss(method, values, batch)
    (g_two,) = torch.autograd.grad(two, values)
    assert torch.allclose(one, two) and torch.allclose(g_one, g_two)
