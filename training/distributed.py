"""Data-parallel training on PyTorch DDP: the process group, the batch split and the launcher.

A run under ``torchrun`` (or ``cvae-sdk train --nproc N``, which launches torchrun) has W ranks.
Every rank draws the same seeded permutation and the same noise, takes the *global* batch that a
single process would take, and trains on its own slice of it. DDP averages the slices' gradients;
each rank's loss is weighted by its share of the batch, so every optimiser step equals the
single-process step up to float summation order. That is the contract of PyTorch's
``DistributedSampler`` (each rank sees a disjoint 1/W of every epoch) applied per batch instead of
per epoch, so the loss curve follows the single-process one rather than a reshuffled one.

Only rank 0 writes (checkpoints, metrics, plots); all ranks read a checkpoint to resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cvae_sdk.backends import TrainConfig
from cvae_sdk.checks import even_split
from cvae_sdk.exits import EXIT_USAGE, USER_ERRORS, exit_status

WORKER_MODULE = "cvae_sdk_training.distributed"


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run: ``world_size == 1`` is plain single-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device) -> DistContext:
    """Join the process group torchrun describes (gloo on CPU, NCCL on GPU); a no-op otherwise."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistContext()
    context = DistContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return context


def wait_for_all(context: DistContext) -> None:
    """Block until every rank gets here, so ranks > 0 do not tear down while rank 0 still writes.

    Without it, one CI run saw rank 1, which had finished first, abort at exit ("terminate called
    without an active exception") while rank 0 was still validating and writing.
    """
    if context.distributed:
        dist.barrier()


def teardown(context: DistContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device, context: DistContext) -> torch.device:
    """One GPU per local rank; CPU ranks share the CPU."""
    if device.type != "cuda" or not context.distributed:
        return device
    if context.local_rank >= torch.cuda.device_count():
        raise ValueError(f"local rank {context.local_rank} has no GPU: torch sees {torch.cuda.device_count()}; "
                         "launch at most that many processes per node")
    return torch.device("cuda", context.local_rank)


def rank_slice(batch_size: int, context: DistContext) -> slice:
    """This rank's contiguous part of a global batch of ``batch_size`` (parts differ by at most one)."""
    return slice(*even_split(batch_size, context.world_size, context.rank))


def all_sum(values: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Sum a small float64 CPU tensor over ranks (the identity in a single process)."""
    if not context.distributed:
        return values
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def launch(backend: str, config: TrainConfig, *, nproc: int, resume: bool, progress: bool) -> int:
    """Run ``nproc`` training processes under torchrun on this machine; returns torchrun's exit status."""
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    if under_torchrun():
        raise ValueError("already running under torchrun, which sets the process count; drop --nproc")
    if backend == "torch":  # fail here, in one process, on what every worker would fail on
        from .preflight import preflight

        preflight(config, resume)
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
               "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "--rdzv-id", uuid.uuid4().hex,
               "-m", WORKER_MODULE, backend, json.dumps(config.to_dict()),
               "--resume" if resume else "--no-resume", "--progress" if progress else "--no-progress"]
    # N processes share this machine's cores, unless OMP_NUM_THREADS says otherwise.
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    return subprocess.run(command, check=False, env={**os.environ, "OMP_NUM_THREADS": threads}).returncode


def _worker(argv: list[str]) -> int:
    """One torchrun worker, as ``launch`` starts it: train, then rank 0 prints the CLI's summary line."""
    from cvae_sdk.backends import TrainingDiverged, get_backend

    backend, config_json, resume, progress = argv
    main = os.environ.get("RANK", "0") == "0"
    try:
        config = TrainConfig.from_dict(json.loads(config_json))
        result = get_backend(backend).train(config, resume=resume == "--resume", progress=progress == "--progress")
    except (*USER_ERRORS, TrainingDiverged) as err:
        if main:
            print(f"error: {err}", file=sys.stderr)
        return exit_status(err) or EXIT_USAGE
    if main:
        print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
