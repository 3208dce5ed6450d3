"""util.distributed: reading torchrun's and SLURM's variables, and real collectives over two gloo processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from support import free_port
from util.distributed import (
    DEFAULT_MASTER_PORT,
    DistributedContext,
    LaunchEnv,
    all_reduce_mean,
    all_reduce_sum_counts,
    any_rank,
    barrier,
    first_host,
    init_distributed,
    read_launch_env,
    shutdown_distributed,
)

LAUNCH_VARIABLES = (
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
    "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_JOB_ID",
)


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("gpu7", "gpu7"),
        ("node[01-04]", "node01"),
        ("node[01-04],gpu7", "node01"),
        ("gpu7,node[01-04]", "gpu7"),
        ("node[7,3-5]", "node7"),
        ("node[001-004,010]", "node001"),
        ("rack[2-3]-node[09,11]", "rack2-node09"),
        ("a-b.c[3-4].example", "a-b.c3.example"),
    ],
)
def test_first_host_of_compressed_slurm_nodelists(nodelist, host):
    assert first_host(nodelist) == host


def test_first_host_rejects_an_unreadable_nodelist():
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        first_host("node[01-04")


def test_torchrun_variables():
    environ = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "host0", "MASTER_PORT": "1234"}
    assert read_launch_env(environ) == LaunchEnv("torchrun", rank=5, world_size=8, local_rank=1,
                                                 master_addr="host0", master_port=1234)


def test_slurm_variables_with_master_from_nodelist_and_port_from_job_id():
    environ = {"SLURM_PROCID": "6", "SLURM_NTASKS": "16", "SLURM_LOCALID": "2",
               "SLURM_JOB_NODELIST": "node[03-06],gpu7", "SLURM_JOB_ID": "123456"}
    assert read_launch_env(environ) == LaunchEnv("slurm", rank=6, world_size=16, local_rank=2,
                                                 master_addr="node03", master_port=20000 + 3456)


def test_slurm_takes_master_addr_and_port_from_the_environment_when_set():
    environ = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "node[1-2]",
               "SLURM_JOB_ID": "7", "MASTER_ADDR": "10.0.0.9", "MASTER_PORT": "4321"}
    launch = read_launch_env(environ)
    assert (launch.master_addr, launch.master_port) == ("10.0.0.9", 4321)


def test_slurm_without_job_id_uses_the_default_port():
    environ = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_NODELIST": "gpu[4-5]"}
    launch = read_launch_env(environ)
    assert (launch.master_addr, launch.master_port, launch.local_rank) == ("gpu4", DEFAULT_MASTER_PORT, 0)


def test_torchrun_wins_inside_a_slurm_allocation():
    environ = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
               "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NODELIST": "node1"}
    assert read_launch_env(environ).launcher == "torchrun"


def test_no_launcher_means_a_single_process():
    assert read_launch_env({"PATH": "/bin"}) is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RANK": "0", "WORLD_SIZE": "2"}, "LOCAL_RANK"),
        ({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK='x'"),
        ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, r"RANK=2 is outside \[0, WORLD_SIZE=2\)"),
        ({"SLURM_PROCID": "0"}, "SLURM_NTASKS"),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, "SLURM_JOB_NODELIST"),
    ],
)
def test_bad_launch_variables_are_named(environ, message):
    with pytest.raises(ValueError, match=message):
        read_launch_env(environ)


def test_init_without_launcher_is_a_plain_cpu_process(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    context = init_distributed("cpu")
    assert context == DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"),
                                         distributed=False)
    assert context.is_main
    # Without a process group the helpers hand back what they were given.
    assert all_reduce_mean({"loss": 2.5}, context) == {"loss": 2.5}
    assert all_reduce_sum_counts({"bad_image": 3}, context) == {"bad_image": 3}
    assert any_rank(True, context) is True and any_rank(False, context) is False
    barrier(context)
    shutdown_distributed(context)


def test_a_launch_of_one_process_creates_no_group(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    context = init_distributed("cpu")
    assert not context.distributed and not torch.distributed.is_initialized()


def _worker(rank: int, launcher: str, port: int, out_dir: str) -> None:
    for name in LAUNCH_VARIABLES:
        os.environ.pop(name, None)
    if launcher == "torchrun":
        os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    else:
        os.environ.update(SLURM_PROCID=str(rank), SLURM_NTASKS="2", SLURM_LOCALID=str(rank),
                          SLURM_JOB_NODELIST="localhost", MASTER_PORT=str(port))
    context = init_distributed("cpu")
    try:
        result = {
            "context": [context.rank, context.world_size, context.local_rank, str(context.device),
                        context.distributed, context.is_main],
            # rank 0 gives 1.0 and 10.0, rank 1 gives 2.0 and 30.0 (keys in another order on purpose).
            "mean": all_reduce_mean({"loss": 1.0, "acc": 10.0} if rank == 0 else {"acc": 30.0, "loss": 2.0}, context),
            "counts": all_reduce_sum_counts({"bad_image": 1} if rank == 0 else {"bad_image": 2, "too_long": 5},
                                            context),
            "any_one": any_rank(rank == 1, context),
            "any_none": any_rank(False, context),
        }
        barrier(context)
    finally:
        shutdown_distributed(context)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_two_gloo_processes_reduce_to_the_right_values(tmp_path, launcher):
    mp.spawn(_worker, args=(launcher, free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert results[0]["context"] == [0, 2, 0, "cpu", True, True]
    assert results[1]["context"] == [1, 2, 1, "cpu", True, False]
    for result in results:
        assert result["mean"] == {"loss": 1.5, "acc": 20.0}
        assert result["counts"] == {"bad_image": 3, "too_long": 5}
        assert result["any_one"] is True
        assert result["any_none"] is False
