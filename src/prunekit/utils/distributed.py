"""``torch.distributed`` for every package: who this process is, joining the process
group that ``torchrun`` describes, sharding a batch, and the collectives the methods use
(sum, gather of rows, broadcast, a checksum every rank must agree on).

Without a process group every function is the single-process identity: rank 0 of 1.
"""

from __future__ import annotations

import datetime
import hashlib
import os

import torch
import torch.distributed as dist
from torch import Tensor

from prunekit.errors import ConfigError, PrunekitError

BACKENDS = ("gloo", "nccl")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, or when not distributed: the process that writes files."""
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    """``torchrun`` (or any launcher using its variables) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def init_from_environment(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT, LOCAL_RANK). ``backend``: ``PRUNEKIT_DIST_BACKEND`` or
    nccl when CUDA is available, else gloo. Returns whether a group was joined (False
    outside torchrun, or when one already exists)."""
    if not launched_by_torchrun() or is_distributed():
        return False
    backend = (
        backend
        or os.environ.get("PRUNEKIT_DIST_BACKEND")
        or ("nccl" if torch.cuda.is_available() else "gloo")
    )
    if backend not in BACKENDS:
        raise ConfigError(f"unknown distributed backend {backend!r}: use gloo or nccl")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ConfigError("the nccl backend needs CUDA; set PRUNEKIT_DIST_BACKEND=gloo")
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def leave(*, succeeded: bool = True) -> None:
    """Leave the process group, if any. After work that ``succeeded`` every rank first
    waits for the others (a barrier), so no rank tears its connections down while a
    peer still uses them (gloo aborts the peer then); after a failure it leaves at once,
    since the other ranks may never reach the barrier."""
    if not is_distributed():
        return
    try:
        if succeeded:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard_bounds(n: int, rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """This rank's contiguous part ``[start, end)`` of ``n`` items (sizes differ by ≤ 1)."""
    rank = get_rank() if rank is None else rank
    world = get_world_size() if world is None else world
    return rank * n // world, (rank + 1) * n // world


def _device_for_collectives(tensor: Tensor) -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum_(tensors: list[Tensor]) -> list[Tensor]:
    """Sum each tensor over the processes, in place (one flat buffer, one call)."""
    if not is_distributed() or not tensors:
        return tensors
    device = _device_for_collectives(tensors[0])
    flat = torch.cat([t.reshape(-1).to(device) for t in tensors])
    dist.all_reduce(flat)
    start = 0
    for t in tensors:
        t.copy_(flat[start : start + t.numel()].reshape(t.shape))
        start += t.numel()
    return tensors


def gather_rows(local: Tensor, total: int) -> Tensor:
    """The (total, ...) tensor whose rows :func:`shard_bounds` gave out, from every
    rank's ``local`` rows, on every rank (rank order)."""
    if not is_distributed():
        return local
    world = get_world_size()
    sizes = [shard_bounds(total, r, world) for r in range(world)]
    largest = max(end - start for start, end in sizes)
    device = _device_for_collectives(local)
    padded = torch.zeros((largest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: len(local)] = local.to(device)
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded)
    rows = [piece[: end - start] for piece, (start, end) in zip(pieces, sizes, strict=True)]
    return torch.cat(rows).to(local.device)


def broadcast_(tensors: list[Tensor], source: int = 0) -> list[Tensor]:
    """Every rank's ``tensors`` set to ``source``'s, in place."""
    if not is_distributed() or not tensors:
        return tensors
    device = _device_for_collectives(tensors[0])
    for t in tensors:
        buffer = t.detach().to(device).contiguous()
        if buffer.dtype == torch.bool:
            buffer = buffer.to(torch.uint8)
        dist.broadcast(buffer, source)
        t.copy_(buffer.to(t.device, dtype=t.dtype))
    return tensors


def checksum(tensors: list[Tensor]) -> int:
    """A 63-bit hash of the tensors' bytes (their order, shapes and values)."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def check_identical(tensors: list[Tensor], what: str) -> int:
    """Stop with a clear error unless every rank holds the same ``tensors`` (bit for
    bit); returns their checksum."""
    value = checksum(tensors)
    if is_distributed():
        mine = torch.tensor([value], dtype=torch.int64)
        mine = mine.to(_device_for_collectives(mine))
        everyone = [torch.empty_like(mine) for _ in range(get_world_size())]
        dist.all_gather(everyone, mine)
        values = [int(v) for v in everyone]
        if len(set(values)) > 1:
            raise PrunekitError(
                f"{what} differs between processes (checksums {values}); they must be "
                "identical before training: report this as a bug"
            )
    return value
