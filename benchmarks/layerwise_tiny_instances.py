"""Layer-wise solvers: how often each reaches the exhaustive per-row optimum on tiny rows,
and the reconstruction errors on a realistic 300 × 784 layer.

Tiny: one row (d_out = 1, so the count is the row's), d_in = 10, correlated inputs
(X = AZ + shared mean, N = 40), undamped H; the optimum is the least-squares error of
the best of the C(d, k) supports; a solver reaches it within 1e-9 (relative).
Realistic: W (300 × 784, N(0, 1/28²)) against H = 2XXᵀ/N from 2,000 synthetic 28 × 28
"images" (blurred noise clipped to [0, 1], a 3-pixel dead border: 300 dead inputs),
errors relative to magnitude's.

    PYTHONPATH=src python benchmarks/layerwise_tiny_instances.py --instances 40 --realistic
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from prunekit.second_order.layerwise import (
    HessianAccumulator,
    joint_layer,
    least_squares_on_support,
    magnitude_layer,
    obc_layer,
    sparsegpt_layer,
)

SOLVERS = {
    "magnitude": magnitude_layer,
    "sparsegpt": sparsegpt_layer,
    "obc": obc_layer,
    "joint": joint_layer,
}


def tiny_instance(d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=generator, dtype=torch.float64) / d**0.5
    x = mixing @ torch.randn(d, 4 * d, generator=generator, dtype=torch.float64)
    x = x + 0.5 * torch.randn(d, 1, generator=generator, dtype=torch.float64)
    w = torch.randn(1, d, generator=generator, dtype=torch.float64)
    return w, 2 * x @ x.T / x.shape[1]


def exhaustive(w: torch.Tensor, H: torch.Tensor, k: int) -> float:
    d = w.shape[1]
    supports = list(itertools.combinations(range(d), d - k))
    kept = torch.zeros(len(supports), d, dtype=torch.bool)
    for i, support in enumerate(supports):
        kept[i, list(support)] = True
    rows = w.expand(len(supports), d)
    fitted = least_squares_on_support(rows, H, kept)
    delta = rows - fitted
    return float((((delta @ H) * delta).sum(1) / 2).min())


def tiny(instances: int, d: int) -> None:
    print(f"tiny rows, d_in = {d}, {instances} instances per k (rate of reaching the optimum)")
    print("k  " + "  ".join(f"{name:>9s}" for name in SOLVERS))
    totals = dict.fromkeys(SOLVERS, 0)
    for k in (3, 5, 7, 8):
        reached = dict.fromkeys(SOLVERS, 0)
        for seed in range(instances):
            w, H = tiny_instance(d, 1000 * k + seed)
            optimum = exhaustive(w, H, k)
            for name, solver in SOLVERS.items():
                kwargs = {} if name == "magnitude" else {"damp": 0.0}
                error = solver(w, H, k, **kwargs).error
                reached[name] += error <= optimum * (1 + 1e-9) + 1e-15
        print(f"{k}  " + "  ".join(f"{reached[n] / instances:9.2f}" for n in SOLVERS))
        for name in SOLVERS:
            totals[name] += reached[name]
    print("all " + "  ".join(f"{totals[n] / (4 * instances):8.2f}" for n in SOLVERS))


def images(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, 36, 36, generator=generator)
    bump = torch.exp(-(torch.arange(-4, 5.0) ** 2) / 6)
    kernel = bump[:, None] * bump[None, :]
    x = torch.nn.functional.conv2d(noise, (kernel / kernel.sum())[None, None])[:, 0]
    x = (3 * x + 0.2).clamp(0, 1)
    x[:, :3], x[:, -3:], x[:, :, :3], x[:, :, -3:] = 0, 0, 0, 0
    return x.reshape(n, 784)


def realistic(sparsities: list[float]) -> None:
    accumulator = HessianAccumulator(784)
    for batch in images(2000, 0).split(500):
        accumulator.add_batch(batch)
    H = accumulator.hessian
    W = torch.randn(300, 784, generator=torch.Generator().manual_seed(1)) / 28
    print("\nrealistic 300 × 784 layer (float32 weights): error / magnitude's, seconds")
    for sparsity in sparsities:
        count = round(sparsity * W.numel())
        errors, seconds = {}, {}
        for name, solver in SOLVERS.items():
            start = time.perf_counter()
            errors[name] = solver(W, H, count).error
            seconds[name] = time.perf_counter() - start
        line = "  ".join(
            f"{n} {errors[n] / errors['magnitude']:.4f} ({seconds[n]:.0f}s)" for n in SOLVERS
        )
        print(f"{sparsity}: {line}")
        print(
            f"      joint / obc = {errors['joint'] / errors['obc']:.3f}, "
            f"joint / sparsegpt = {errors['joint'] / errors['sparsegpt']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=40)
    parser.add_argument("--d-in", type=int, default=10)
    parser.add_argument("--realistic", action="store_true", help="also the 300 × 784 layer")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tiny(args.instances, args.d_in)
    if args.realistic:
        realistic(args.sparsities)


if __name__ == "__main__":
    main()
