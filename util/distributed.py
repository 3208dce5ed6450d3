"""Data-parallel setup: where this process sits in a launch, its process group, host-side collectives.

A run is launched one of three ways:

- `torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
- SLURM's `srun` sets SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID; the rendezvous host is the first
  node of SLURM_JOB_NODELIST unless MASTER_ADDR is set, the port MASTER_PORT or one derived from
  the job id (so that two jobs sharing a node do not collide);
- plain `python`: neither is set, one process, no process group.

`read_launch_env` turns the environment into a `LaunchEnv` without touching torch.distributed, so
it can be tested on its own; `init_distributed` then creates the process group (NCCL on CUDA,
gloo on the CPU) and returns a `DistributedContext`.

The collectives here take host values (Python floats, ints, bools) that the engine has already
read from the GPU. Under NCCL they travel through a second, gloo group on the CPU: reducing them on
the GPU would queue behind the step's kernels, and reading the result back would stall the host.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

# torchrun's default port; used under SLURM without a job id.
DEFAULT_MASTER_PORT = 29500
# Under SLURM the port is derived from the job id inside [20000, 30000): below Linux's ephemeral
# range (32768+), and the same for every task of a job without any communication.
_SLURM_PORT_BASE = 20000
_SLURM_PORT_SPAN = 10000


@dataclass(frozen=True)
class LaunchEnv:
    """What the launcher told this process: its place among the others and where to meet them."""

    launcher: str  # "torchrun" or "slurm"
    rank: int
    world_size: int
    local_rank: int
    master_addr: str | None  # None: torchrun's env:// rendezvous reads it itself
    master_port: int | None


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run; `distributed` is True when a process group exists."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    distributed: bool = False
    # The group that carries host values (see the module docstring); None means the default group.
    cpu_group: dist.ProcessGroup | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0 prints, writes checkpoints, log.txt and TensorBoard events."""
        return self.rank == 0


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list in its compressed form.

    `node[01-04],gpu7` -> `node01`; `gpu7,node[1-2]` -> `gpu7`; `rack[2-3]-node[09,11]` -> `rack2-node09`.
    Zero padding is kept as written, since it is part of the host name.
    """
    first_entry = _split_top_level(nodelist.strip())[0]
    # Each bracket holds ranges `a-b` and single values separated by commas; take the first value.
    host = re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split(",")[0].split("-")[0], first_entry)
    if not host or "[" in host or "]" in host:
        raise ValueError(f"cannot read a host name from SLURM node list {nodelist!r}; set MASTER_ADDR instead")
    return host


def _split_top_level(nodelist: str) -> list[str]:
    """Split at the commas that are not inside brackets."""
    entries, depth, start = [], 0, 0
    for i, char in enumerate(nodelist):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            entries.append(nodelist[start:i])
            start = i + 1
    entries.append(nodelist[start:])
    return entries


def _int_var(environ: Mapping[str, str], name: str) -> int:
    value = environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _check_ranks(launch: LaunchEnv, names: tuple[str, str, str]) -> LaunchEnv:
    rank_var, size_var, local_var = names
    if launch.world_size < 1:
        raise ValueError(f"{size_var}={launch.world_size}: the number of processes must be at least 1")
    if not 0 <= launch.rank < launch.world_size:
        raise ValueError(f"{rank_var}={launch.rank} is outside [0, {size_var}={launch.world_size})")
    if launch.local_rank < 0:
        raise ValueError(f"{local_var}={launch.local_rank} must not be negative")
    return launch


def _torchrun_env(environ: Mapping[str, str]) -> LaunchEnv:
    missing = [name for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if name not in environ]
    if missing:
        raise ValueError(
            f"RANK or WORLD_SIZE is set but {', '.join(missing)} is not: launch with torchrun, "
            "which sets RANK, WORLD_SIZE and LOCAL_RANK together, or unset them for a single process"
        )
    port = _int_var(environ, "MASTER_PORT") if "MASTER_PORT" in environ else None
    launch = LaunchEnv(
        launcher="torchrun",
        rank=_int_var(environ, "RANK"),
        world_size=_int_var(environ, "WORLD_SIZE"),
        local_rank=_int_var(environ, "LOCAL_RANK"),
        master_addr=environ.get("MASTER_ADDR"),
        master_port=port,
    )
    return _check_ranks(launch, ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def _slurm_env(environ: Mapping[str, str]) -> LaunchEnv:
    if "SLURM_NTASKS" not in environ:
        raise ValueError("SLURM_PROCID is set but SLURM_NTASKS is not: start the tasks with srun --ntasks N")
    if "MASTER_ADDR" in environ:
        addr = environ["MASTER_ADDR"]
    else:
        nodelist = environ.get("SLURM_JOB_NODELIST", environ.get("SLURM_NODELIST"))
        if nodelist is None:
            raise ValueError("under SLURM, set MASTER_ADDR or SLURM_JOB_NODELIST (the rendezvous host)")
        addr = first_host(nodelist)
    if "MASTER_PORT" in environ:
        port = _int_var(environ, "MASTER_PORT")
    elif "SLURM_JOB_ID" in environ:
        port = _SLURM_PORT_BASE + _int_var(environ, "SLURM_JOB_ID") % _SLURM_PORT_SPAN
    else:
        port = DEFAULT_MASTER_PORT
    launch = LaunchEnv(
        launcher="slurm",
        rank=_int_var(environ, "SLURM_PROCID"),
        world_size=_int_var(environ, "SLURM_NTASKS"),
        local_rank=_int_var(environ, "SLURM_LOCALID") if "SLURM_LOCALID" in environ else 0,
        master_addr=addr,
        master_port=port,
    )
    return _check_ranks(launch, ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"))


def read_launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """torchrun's variables if set (they win inside a SLURM allocation), else SLURM's, else None."""
    environ = os.environ if environ is None else environ
    if "RANK" in environ or "WORLD_SIZE" in environ:
        return _torchrun_env(environ)
    if "SLURM_PROCID" in environ:
        return _slurm_env(environ)
    return None


def _resolve_device(device: str, local_rank: int, distributed: bool) -> torch.device:
    """The device this process computes on; under a launcher, CUDA means cuda:LOCAL_RANK."""
    requested = torch.device(device)
    if requested.type != "cuda":
        return requested
    if not torch.cuda.is_available():
        raise RuntimeError(f"--device {device} was asked for, but torch sees no CUDA GPU; pass --device cpu")
    if requested.index is not None and distributed and requested.index != local_rank:
        raise ValueError(
            f"--device {device} names one GPU, but each process of a multi-process launch uses "
            f"cuda:LOCAL_RANK (here cuda:{local_rank}); pass --device cuda"
        )
    index = requested.index if requested.index is not None else local_rank
    if index >= torch.cuda.device_count():
        raise RuntimeError(
            f"this process wants cuda:{index} but only {torch.cuda.device_count()} GPU(s) are visible; "
            "start at most that many processes per node (torchrun --nproc_per_node) or check CUDA_VISIBLE_DEVICES"
        )
    return torch.device("cuda", index)


def _init_method(launch: LaunchEnv, dist_url: str) -> str:
    # torchrun's env:// rendezvous reads MASTER_ADDR/PORT itself; under SLURM they may exist only in
    # `launch`, so spell them out rather than write them into os.environ.
    if dist_url == "env://" and launch.launcher == "slurm":
        return f"tcp://{launch.master_addr}:{launch.master_port}"
    return dist_url


def init_distributed(device: str, dist_url: str = "env://") -> DistributedContext:
    """Join the run described by the environment and select this process's device.

    A launch of one process (WORLD_SIZE=1 or SLURM_NTASKS=1) creates no process group: the engine
    then needs no DistributedDataParallel wrapper and no collectives. `dist_url` other than
    `env://` (for example `tcp://host:port`) is passed to torch.distributed as it is.
    """
    launch = read_launch_env()
    distributed = launch is not None and launch.world_size > 1
    rank, world_size, local_rank = (launch.rank, launch.world_size, launch.local_rank) if launch else (0, 1, 0)
    resolved = _resolve_device(device, local_rank, distributed)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if not distributed:
        logger.info("single process on %s", resolved)
        return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)

    backend = "nccl" if resolved.type == "cuda" else "gloo"
    init_method = _init_method(launch, dist_url)
    logger.info("rank %d/%d (%s, local rank %d) joining %s with %s on %s",
                rank, world_size, launch.launcher, local_rank, init_method, backend, resolved)
    dist.init_process_group(
        backend=backend,
        init_method=init_method,
        world_size=world_size,
        rank=rank,
        device_id=resolved if backend == "nccl" else None,
    )
    # Every rank must create the gloo group, in the same order: new_group is itself a collective.
    cpu_group = dist.new_group(backend="gloo") if backend == "nccl" else None
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved,
                              distributed=True, cpu_group=cpu_group)


def all_reduce_mean(values: Mapping[str, float], context: DistributedContext) -> dict[str, float]:
    """The mean of each value over all ranks, in one collective; the values as given when not distributed.

    Every rank must pass the same keys (the order does not matter).
    """
    if not context.distributed:
        return dict(values)
    names = sorted(values)
    packed = torch.tensor([float(values[name]) for name in names], dtype=torch.float64)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=context.cpu_group)
    return {name: total / context.world_size for name, total in zip(names, packed.tolist())}


def gather_from_ranks(value: Any, context: DistributedContext) -> list[Any]:
    """`value` (any picklable host object) of every rank, in rank order, on every rank."""
    if not context.distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value, group=context.cpu_group)
    return gathered


def all_reduce_sum_counts(counts: Mapping[str, int], context: DistributedContext) -> dict[str, int]:
    """The sum of each count over all ranks; a key missing on some ranks counts 0 there.

    Ranks may see different keys (say, reasons for dropping a bad sample), so the dictionaries
    themselves are gathered, not a tensor of agreed length.
    """
    total: Counter[str] = Counter()
    for rank_counts in gather_from_ranks(dict(counts), context):
        total.update(rank_counts)
    return dict(total)


def any_rank(flag: bool, context: DistributedContext) -> bool:
    """True when `flag` is True on at least one rank (say, a stop signal that reached only some)."""
    if not context.distributed:
        return flag
    packed = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(packed, op=dist.ReduceOp.MAX, group=context.cpu_group)
    return bool(packed.item())


def barrier(context: DistributedContext) -> None:
    """Wait for every rank; nothing to wait for in a single process."""
    if context.distributed:
        dist.barrier(group=context.cpu_group)


def shutdown_distributed(context: DistributedContext) -> None:
    """Destroy the process groups this run created (call once, also after an error)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
