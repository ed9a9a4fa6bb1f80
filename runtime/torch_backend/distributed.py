"""`specc train --backend torch --nproc N`: data-parallel training with torch.distributed (imports torch).

    specc train SPEC --backend torch --nproc 2                       # 2 processes on this machine
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m cli train SPEC --backend torch                            # 8 processes on 2 machines

`--nproc N` starts N processes with torch.multiprocessing.spawn, each given torch's standard environment
(RANK, WORLD_SIZE, LOCAL_RANK) and a rendezvous file in a fresh temporary folder (SPECC_DIST_INIT=file://...,
torch's FileStore): no TCP port is chosen, so no other program can take it between its choice and its
use (a port found free and then bound by the processes could be taken meanwhile on a busy machine).
Under torchrun the environment (MASTER_ADDR/MASTER_PORT too) is already there and the command runs as one
of its processes (`init_method="env://"`). Every process then joins the process group (gloo on CPU,
NCCL on GPUs) and runs the one training loop with the model wrapped in DistributedDataParallel (one
wrapper per phase of the train section), which all-reduces the gradients. All processes draw the same global
permutation, augmentation and noise (the same seeds); each trains on its slice of every global batch
(runtime/torch_backend/trainer.py: TorchBackend.shard). Only rank 0 writes checkpoints, history and logs.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from compiler.errors import UserError


def env_world() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when this process is one of a distributed run, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def init(device: str) -> tuple[int, int, str]:
    """Join the process group from the environment; returns (rank, world, this process's device)."""
    rank, world, local = env_world() or (0, 1, 0)
    cuda = device == "cuda" or device == "auto" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        url = os.environ.get(INIT_VAR)
        if url:
            dist.init_process_group("nccl" if cuda else "gloo", init_method=url, rank=rank, world_size=world)
        else:
            dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
    return rank, world, "cpu" if not cuda else device


def finish(ok: bool = True) -> None:
    """Leave the process group. After a successful run every process first waits for the others (rank 0
    still writes checkpoints and logs when the rest are done): a process that tore its connections down while
    a peer still held them could abort that peer in gloo ("terminate called without an active exception",
    exit -6). After a failure there is no barrier: the peer may never arrive, and spawn stops the rest."""
    if dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


INIT_VAR = "SPECC_DIST_INIT"


def launch(main: Callable[[list[str]], int], argv: list[str], nproc: int) -> int:
    """Run `main(argv)` (the `specc` command line's entry point, passed in: the runtime does not import the
    command line) in `nproc` processes on this machine; the first non-zero exit code, else 0."""
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory(prefix="specc-ddp-") as tmp:
        url = Path(tmp, "rendezvous").as_uri()          # the processes create it; removed with the folder
        try:
            mp.spawn(_worker, args=(main, argv, nproc, url), nprocs=nproc, join=True)
        except mp.ProcessExitedException as e:
            return int(e.exit_code or 1)
        except mp.ProcessRaisedException as e:
            raise UserError(f"a training process failed: {str(e).strip().splitlines()[-1]}") from None
    return 0


def _worker(rank: int, main: Callable[[list[str]], int], argv: list[str], world: int, url: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    os.environ[INIT_VAR] = url
    if "OMP_NUM_THREADS" not in os.environ:          # as torchrun: the cores are shared by the processes
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    code = main(argv)
    if code:
        sys.exit(code)


def gather_rows(t: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every process's rows of a batch (process i holds sizes[i] rows), in rank order."""
    m = max(sizes)
    dtype = t.dtype
    if dtype == torch.bool:
        t = t.to(torch.uint8)
    pad = torch.zeros((m,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
    pad[:t.shape[0]] = t
    parts = [torch.empty_like(pad) for _ in sizes]
    dist.all_gather(parts, pad)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]).to(dtype)


def all_sum(t: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_buffers(module: Any) -> None:
    """Rank 0's buffers (batch-norm running statistics) to every process."""
    for b in module.buffers():
        dist.broadcast(b, 0)
