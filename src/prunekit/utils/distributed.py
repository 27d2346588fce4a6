"""``torch.distributed`` for every package: who this process is, joining the process
group that ``torchrun`` describes, sharding a batch, and the collectives the methods use
(sum, gather of rows, broadcast, a checksum every rank must agree on).

Without a process group every function is the single-process identity: rank 0 of 1.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import threading
import time

import torch
import torch.distributed as dist
from torch import Tensor

from prunekit.errors import ConfigError, PrunekitError

BACKENDS = ("gloo", "nccl")

# The group's key-value store (torchrun's), kept after the group is left: through it a
# failing rank tells rank 0 why it stops, and rank 0 waits for the others to be gone.
_store: dist.Store | None = None


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
    global _store
    try:
        _store = dist.distributed_c10d._get_default_store()
    except Exception:  # a private accessor; without it failures are only reported less tidily
        _store = None
    return True


def launch_rank() -> int:
    """This process's rank as torchrun numbered it (known before the group is joined and
    after it is left); 0 outside torchrun."""
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def launch_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1


def lost_a_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective failing because another process went away (gloo
    raises a plain RuntimeError naming the closed connection; nccl a DistBackendError)."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("Connection closed by peer", "Connection reset by peer")
    )


def _key(name: str) -> str:
    # torchrun's store outlives a restart of the workers: keys are per attempt
    return f"prunekit/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{name}"


def report_failure(message: str, code: int, kind: str) -> None:
    """This process stops: why (``message``, the exit ``code`` it would give alone, ``kind``
    "error", "bug" or "peer"), where the other ranks read it: rank 0 prints a peer's
    reason, and the others stop when rank 0 reports (:func:`follow_rank0`). Best effort."""
    if _store is None:
        return
    record = {"message": message, "code": code, "kind": kind}
    try:
        _store.set(_key(f"failed/{launch_rank()}"), json.dumps(record))
    except Exception:  # the store went with the launcher: nobody is left to read it
        pass


def report_stopped(store: dist.Store | None = None) -> None:
    """From a rank other than 0: it has left the group and is about to exit."""
    store = store or _store
    if store is not None:
        try:
            store.add(_key("stopped"), 1)
        except Exception:
            pass


def follow_rank0(interval_s: float = 0.1) -> None:
    """On a rank other than 0: a daemon thread that ends this process at once, quietly
    and with status 0, when rank 0 reports a failure, even while this process waits in a
    collective (rank 0 leaving the group does not always wake it: it waits for its
    timeout) or computes on (torchrun would then report it killed)."""
    if _store is None or launch_rank() == 0:
        return
    try:
        store = _store.clone()  # a connection of its own: a store client is not thread-safe
    except Exception:
        return
    key = _key("failed/0")

    def watch() -> None:
        while True:
            try:
                if store.check([key]):
                    break
            except Exception:  # the launcher's store is gone: nothing left to follow
                return
            time.sleep(interval_s)
        sys.stderr.flush()
        report_stopped(store)
        os._exit(0)

    threading.Thread(target=watch, name="prunekit-follow-rank0", daemon=True).start()


def peer_failure(wait_s: float = 0.0) -> tuple[int, dict] | None:
    """On rank 0: ``(rank, record)`` of the lowest rank that reported its own failure
    ("error" or "bug", not "peer"), waiting up to ``wait_s`` seconds for one; None."""
    if _store is None:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        for rank in range(1, launch_world_size()):
            key = _key(f"failed/{rank}")
            try:
                record = json.loads(_store.get(key)) if _store.check([key]) else None
            except Exception:
                return None
            if record is not None and record.get("kind") != "peer":
                return rank, record
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def wait_for_peers_to_stop(timeout_s: float) -> bool:
    """On rank 0 after a failure: wait until every other rank said it stopped, so that
    none is still alive (and reported killed by torchrun) when rank 0 exits."""
    others = launch_world_size() - 1
    if _store is None:  # the group was never joined: give the others a moment
        time.sleep(min(timeout_s, 1.0))
        return False
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            stopped = _store.add(_key("stopped"), 0)
        except Exception:
            return False
        if stopped >= others:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def record_for_launcher(message: str) -> None:
    """Write ``message`` to torchrun's error file for this process, so that torchrun's
    failure summary shows it instead of a pointer to its documentation."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    first = message.strip().splitlines()[-1] if message.strip() else "failed"
    data = {
        "message": {
            "message": first,
            "extraInfo": {"py_callstack": message.rstrip(), "timestamp": str(int(time.time()))},
        }
    }
    try:
        with open(path, "w") as file:
            json.dump(data, file)
    except OSError:
        pass


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
