"""Sequential calibration of layer-wise pruning with and without the carried forward
(``ForwardCache``): calibration seconds, solver seconds and whether the two give
bit-identical weights and masks, on random inputs of each model's shape (timing only:
the data does not change the work). ``lw_magnitude`` keeps the solver out of the way.

    python benchmarks/bench_layerwise_calibration.py --threads 1 \\
        --out benchmarks/results/layerwise_calibration_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot.layerwise import LayerwiseSettings, prune_layerwise
from prunekit.models import create_model

SHAPES = {"lenet5_caffe": (1, 28, 28), "lenet_300_100": (1, 28, 28), "vgg19": (3, 32, 32)}


def measure(model_name: str, samples: int, method: str, allocation: str, cache: bool) -> dict:
    torch.manual_seed(0)
    model = create_model(model_name).eval()
    inputs = torch.randn(samples, *SHAPES[model_name])
    settings = LayerwiseSettings(calibration_samples=samples, allocation=allocation)
    started = time.perf_counter()
    result = prune_layerwise(
        model, list(prunable_parameters(model)), method, 0.9, inputs,
        settings=settings, calibration_cache=cache,
    )
    total = time.perf_counter() - started
    record = result.record
    return {
        "seconds": total,
        "calibration_seconds": record.calibration_seconds,
        "solve_seconds": record.selection_seconds,
        "cache_bytes": record.calibration_cache_bytes,
        "weights": result.weights,
        "mask": result.mask,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5_caffe", "vgg19"])
    parser.add_argument("--samples", nargs="+", type=int, default=[1024, 128],
                        help="calibration samples, one per model")
    parser.add_argument("--method", default="lw_magnitude")
    parser.add_argument("--allocations", nargs="+", default=["uniform", "global"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for model_name, samples in zip(args.models, args.samples, strict=True):
        for allocation in args.allocations:
            runs = {cache: measure(model_name, samples, args.method, allocation, cache)
                    for cache in (False, True)}
            before, after = runs[False], runs[True]
            identical = all(
                torch.equal(before["weights"][n], after["weights"][n])
                and torch.equal(before["mask"][n], after["mask"][n])
                for n in before["weights"]
            )
            row = {
                "model": model_name, "samples": samples, "method": args.method,
                "allocation": allocation, "identical": identical,
                "cache_bytes": after["cache_bytes"],
                **{f"{k}_recompute": before[k] for k in
                   ("seconds", "calibration_seconds", "solve_seconds")},
                **{f"{k}_cached": after[k] for k in
                   ("seconds", "calibration_seconds", "solve_seconds")},
            }
            rows.append(row)
            print(f"{model_name} n={samples} {allocation}: calibration "
                  f"{before['calibration_seconds']:.2f} s -> {after['calibration_seconds']:.2f} s "
                  f"(cache {after['cache_bytes'] / 2**20:.1f} MiB), identical={identical}",
                  flush=True)
    if args.out:
        args.out.write_text(json.dumps({
            "threads": args.threads, "torch": torch.__version__,
            "machine": platform.machine(), "rows": rows,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
