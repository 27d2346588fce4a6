"""Small helpers for ``torch.distributed``: who am I, and launching local process groups."""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from prunekit.utils.distributed import get_rank, is_distributed, is_main_process, leave

__all__ = ["find_free_port", "get_rank", "is_distributed", "is_main_process", "launch_local"]


def find_free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _worker(
    rank: int, fn: Callable, world_size: int, port: int, backend: str, timeout_s: float, args: tuple
) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    succeeded = False
    try:
        fn(rank, world_size, *args)
        succeeded = True
    finally:
        leave(succeeded=succeeded)


def launch_local(
    fn: Callable[..., None],
    world_size: int,
    *args: object,
    backend: str = "gloo",
    timeout_s: float = 120.0,
) -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` processes on this machine.

    Each process joins a process group (``backend``, default gloo, which works on CPU)
    rendezvousing on 127.0.0.1 at a free port, and leaves it when ``fn`` returns.
    ``fn`` must be importable (defined at module level). An exception in any process
    is raised here.

    Example::

        def work(rank, world_size, run_dir):
            fit(model, train_loader, test_loader, config, run_dir)

        launch_local(work, 2, Path("runs/ddp"))
    """
    port = find_free_port()
    mp.spawn(
        _worker,
        args=(fn, world_size, port, backend, timeout_s, args),
        nprocs=world_size,
        join=True,
    )
