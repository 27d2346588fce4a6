"""Wall time and memory of the joint L0 solver at MLPNet's size, on one thread.

Random-ish gradients: G (m×d) = noise + a rank-50 part + column means, with
log-normal column scales; ḡ = the mean row; λ = 1e-3; one Fisher block (or MLPNet's
layers). Reports the solve's wall time, the process's peak memory above what it held
before the solve (G itself is m·d), and φ = ḡᵀδ + ½δᵀFδ for the solver, magnitude and
OBS selection (each with the exact update).

    PYTHONPATH=src python benchmarks/l0_realistic_size.py --d 30000 --m 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from prunekit.second_order import (
    EmpiricalFisher,
    cbs_update,
    l0_solve,
    layer_blocks,
    magnitude_start,
    one_block,
    woodfisher_select,
)

MLPNET_LAYERS = [784 * 40, 40 * 20, 20 * 10]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gradients(m: int, d: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Built in row chunks so that no temporary is larger than a chunk."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.randn(d, generator=generator))
    basis = torch.randn(50, d, generator=generator) / 7
    means = 0.3 * torch.randn(d, generator=generator)
    grads = torch.empty(m, d, dtype=dtype)
    for lo in range(0, m, 100):
        rows = min(100, m - lo)
        chunk = torch.randn(rows, d, generator=generator)
        chunk += torch.randn(rows, 50, generator=generator) @ basis + means
        grads[lo : lo + rows] = (chunk * scales * 1e-2).to(dtype)
    return grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=30000, help="weights (MLPNet: 32360)")
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--sparsity", type=float, default=0.98)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--blocks", choices=["one", "mlpnet"], default="one")
    parser.add_argument("--baselines", action="store_true", help="also magnitude and OBS")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    d = sum(MLPNET_LAYERS) if args.blocks == "mlpnet" else args.d
    blocks = layer_blocks(MLPNET_LAYERS) if args.blocks == "mlpnet" else one_block(d)
    grads = gradients(args.m, d, dtype)
    w = 0.1 * torch.randn(d, generator=torch.Generator().manual_seed(1)).to(dtype)
    gradient = grads.mean(0)
    fisher = EmpiricalFisher(grads, 1e-3, blocks, dtype=dtype)
    k = round(args.sparsity * d)

    before = rss_bytes()
    began = time.perf_counter()
    result = l0_solve(w, fisher, k, gradient=gradient)
    seconds = time.perf_counter() - began
    report = {
        "d": d,
        "m": args.m,
        "k": k,
        "dtype": args.dtype,
        "blocks": len(blocks),
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 2),
        "G_MiB": round(grads.numel() * grads.element_size() / 2**20, 1),
        "peak_above_start_MiB": round((peak_rss_bytes() - before) / 2**20, 1),
        "removed": int(result.removed.sum()),
        "objective": result.objective,
        "iht_iterations": result.iterations,
        "swaps": result.swaps,
    }
    if args.baselines:
        for name, mask in (
            ("magnitude", magnitude_start(w, k)),
            ("obs", woodfisher_select(w, fisher, k, gradient)),
        ):
            report[f"objective_{name}"] = cbs_update(w, fisher, mask, gradient=gradient).loss_change
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
