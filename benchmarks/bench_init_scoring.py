"""Time and peak memory of the pruning-at-init scores, as ratios to one training step.

For VGG-19 (CIFAR, 10 classes) and GraSP's 2×-wide ResNet-32, on 10 images per
class (100 images, interleaved by class as the class-balanced sampler gives them;
random CIFAR-shaped data unless ``--data-root`` holds CIFAR-10), each scoring method
is timed and its peak memory measured against one training step in the same run:
forward + backward (cross-entropy, train mode) on the same 100 images.

- random, magnitude; SNIP on one batch of 100; SynFlow one round;
- GraSP with the 100 images in 1, 2 and 4 chunks (``--grasp-chunks``): g needs every
  chunk before any H·g, so a chunk's gradient is computed twice unless its graph is
  kept; the last chunk's is. Exact H·g by double backward costs about three steps
  for one chunk (forward, backward with graph, then a backward through both graphs
  with twice the convolutions of a plain backward), plus one step's worth for the
  other chunks' first gradient: about 3 + (n − 1)/n steps for n chunks. Memory of
  the double backward is about 2–3× a step's activations per chunk, plus g and H·g.

Time: wall clock, median of ``--repeats`` runs after one warm-up, methods
interleaved so that drift hits all alike; on CPU the process CPU time is reported
too (steadier when other processes share the cores).

Peak memory, measured in separate runs:
- CUDA: ``torch.cuda.max_memory_allocated`` during the call minus the memory
  allocated just before (tensor bytes).
- CPU: the peak resident set size of this process during the call minus its
  resident size just before. The peak is reset through ``/proc/self/clear_refs``
  (Linux), and the script re-executes itself with ``MALLOC_MMAP_THRESHOLD_=65536``
  so that glibc serves every tensor of 64 KiB or more with its own mapping and gives
  it back when freed: the resident size then follows the live tensors (the model,
  the data and anything allocated before are in the baseline, not in the peak).

    python benchmarks/bench_init_scoring.py --repeats 3 --out bench_init.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from prunekit.methods.init import (
    grasp_scores,
    magnitude_scores,
    random_scores,
    snip_scores,
    synflow_scores,
)
from prunekit.models import create_model

MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"
MODELS = {"vgg19": {}, "resnet32": {"width": 2}}
TARGETS = {"grasp": {"time": 3.0, "memory": 1.5}, "snip": {"time": 1.2}}


def rss_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_bytes(function: Callable[[], object], device: torch.device) -> int:
    """Peak memory of ``function()`` above what was in use just before it."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        function()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current resident size
    before = rss_bytes("VmRSS")
    function()
    return rss_bytes("VmHWM") - before


def timed(function: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def load_data(root: str | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    if root:
        from prunekit.data import get_dataset
        from prunekit.data.sampler import class_balanced_batches

        dataset = get_dataset("cifar10", root=root, train=True, augment=False)
        ((x, y),) = class_balanced_batches(dataset, samples_per_class=10, num_iters=1, seed=0)
        source = f"CIFAR-10 training images from {root}"
    else:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(100, 3, 32, 32, generator=generator)
        y = torch.arange(100) % 10
        source = "random N(0, 1) images of CIFAR shape, labels interleaved by class"
    return x.to(device), y.to(device), source


def methods_for(model, x, y, grasp_chunks: list[int]) -> dict[str, Callable[[], object]]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)

    out: dict[str, Callable[[], object]] = {
        "step": step,
        "random": lambda: random_scores(model, generator=torch.Generator().manual_seed(0)),
        "magnitude": lambda: magnitude_scores(model),
        "snip": lambda: snip_scores(model, (x, y)),
    }
    for n in grasp_chunks:
        size = -(-len(x) // n)
        out[f"grasp/{n}"] = lambda size=size: grasp_scores(model, (x, y), chunk_size=size)
    out["synflow"] = lambda: synflow_scores(model, tuple(x.shape[1:]))
    return out


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, **MODELS[name]).to(device).train()
    x, y, source = load_data(args.data_root, device)
    methods = methods_for(model, x, y, args.grasp_chunks)
    for function in methods.values():  # warm-up: lazy initialisations, kernel caches
        function()
    walls: dict[str, list[float]] = {k: [] for k in methods}
    cpus: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(args.repeats):
        for key, function in methods.items():
            wall, cpu = timed(function, device)
            walls[key].append(wall)
            cpus[key].append(cpu)
    peaks = {
        key: statistics.median(peak_bytes(function, device) for _ in range(args.memory_repeats))
        for key, function in methods.items()
    }
    step_wall = statistics.median(walls["step"])
    step_cpu = statistics.median(cpus["step"])
    rows = {}
    for key in methods:
        wall, cpu = statistics.median(walls[key]), statistics.median(cpus[key])
        rows[key] = {
            "seconds": wall,
            "time_ratio": wall / step_wall,
            "cpu_seconds": cpu,
            "cpu_time_ratio": cpu / step_cpu,
            "peak_bytes": peaks[key],
            "memory_ratio": peaks[key] / peaks["step"],
            "all_seconds": walls[key],
        }
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": source,
        "images": len(x),
        "rows": rows,
    }


def print_table(name: str, result: dict, device: torch.device) -> None:
    step = result["rows"]["step"]
    print(
        f"\n{name}: {result['parameters']:,} parameters, {result['images']} images; "
        f"one step {step['seconds']:.3f} s, peak +{step['peak_bytes'] / 2**20:.0f} MiB"
    )
    cpu_col = device.type == "cpu"
    header = f"{'method':<10} {'seconds':>8} {'× step':>7}"
    header += f" {'CPU × step':>10}" if cpu_col else ""
    header += f" {'peak MiB':>9} {'× step':>7}"
    print(header)
    print("-" * len(header))
    for key, row in result["rows"].items():
        line = f"{key:<10} {row['seconds']:8.3f} {row['time_ratio']:7.2f}"
        line += f" {row['cpu_time_ratio']:10.2f}" if cpu_col else ""
        line += f" {row['peak_bytes'] / 2**20:9.0f} {row['memory_ratio']:7.2f}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--memory-repeats", type=int, default=1)
    parser.add_argument("--models", default="vgg19,resnet32")
    parser.add_argument(
        "--grasp-chunks", default="1,2,4", help="numbers of chunks the 100 images go in"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--data-root", default=None, help="folder with CIFAR-10 (optional)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    args.grasp_chunks = [int(n) for n in args.grasp_chunks.split(",") if n]
    device = torch.device(args.device)

    if device.type == "cpu":
        if not Path("/proc/self/clear_refs").exists():
            parser.error("CPU peak memory needs Linux /proc/self/clear_refs")
        if os.environ.get(MMAP_ENV) is None:
            os.environ[MMAP_ENV] = "65536"
            os.execv(sys.executable, [sys.executable, *sys.argv])
    if args.threads:
        torch.set_num_threads(args.threads)

    results = {
        "device": str(device)
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "memory": (
            "torch.cuda.max_memory_allocated above the allocation before the call"
            if device.type == "cuda"
            else f"peak RSS above RSS before the call ({MMAP_ENV}={os.environ.get(MMAP_ENV)})"
        ),
        "targets": TARGETS,
        "models": {},
    }
    for name in args.models.split(","):
        results["models"][name] = bench_model(name, args, device)
        print_table(name, results["models"][name], device)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
