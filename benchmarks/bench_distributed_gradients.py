"""Gradient collection for the MLPNet Fisher (m = 10,000 per-sample gradients) in one
process against two processes on torch.distributed (gloo, this machine), measured in
one run: time to compute the rows, time to gather them, and the bytes each process
receives. Prints JSON; ``--out`` writes it.

    python benchmarks/bench_distributed_gradients.py \\
        --out benchmarks/results/distributed_gradients_cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist

from prunekit.checkpoints import load_pretrained
from prunekit.data import get_dataset
from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot.evidence import sample_order, stack_samples
from prunekit.models import create_model
from prunekit.second_order import per_sample_gradients
from prunekit.training import launch_local
from prunekit.utils.distributed import gather_rows, shard_bounds

SHARED = Path(__file__).resolve().parents[2] / "shared"


def samples(m: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    checkpoint = SHARED / "checkpoints" / "mnist_25_epoch_93.97.ckpt"
    mnist = SHARED / "data" / "mnist"
    if checkpoint.exists() and mnist.exists():
        model = load_pretrained("mlpnet", checkpoint).eval()
        train = get_dataset("mnist", root=mnist, train=True)
        x, y = stack_samples(train, sample_order(train, 0)[:m])
        return model, x, y, "real MNIST, the CBS checkpoint"
    torch.manual_seed(0)
    x, y = torch.randn(m, 1, 28, 28), torch.randint(0, 10, (m,))
    return create_model("mlpnet").eval(), x, y, "synthetic"


def collect(m: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    model, x, y, source = samples(m)
    names = list(prunable_parameters(model))
    start, end = shard_bounds(m)
    t = time.perf_counter()
    local = per_sample_gradients(model, names, x[start:end], y[start:end])
    compute = time.perf_counter() - t
    t = time.perf_counter()
    grads = gather_rows(local, m)
    gather = time.perf_counter() - t
    world = dist.get_world_size() if dist.is_initialized() else 1
    received = grads.element_size() * grads.numel() * (world - 1) / world
    return {"compute_s": compute, "gather_s": gather, "received_bytes": received,
            "m": m, "d": grads.shape[1], "source": source}  # fmt: skip


def _worker(rank: int, world: int, m: int, threads: int, out: Path) -> None:
    result = collect(m, threads)
    if rank == 0:
        out.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", type=int, default=10000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    one = collect(args.m, threads=2)
    scratch = Path("/tmp/prunekit_bench_two.json")
    launch_local(_worker, 2, args.m, 1, scratch, timeout_s=1800)
    two = json.loads(scratch.read_text())
    total_one, total_two = one["compute_s"], two["compute_s"] + two["gather_s"]
    figures = {
        "what": "per-sample gradients of MLPNet (d = 32,360) for the Fisher, m rows",
        "one_process_2_threads": one,
        "two_processes_1_thread_each_gloo": two,
        "ratio_two_over_one": total_two / total_one,
        "gather_share_of_two": two["gather_s"] / total_two,
        "note": "2 cores: two processes of 1 thread against one of 2 threads; rows are "
        "gathered (m·d float32 to every process) because CBS, OBS and the L0 solver read G.",
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
