"""Factored Fisher inverse (one m×m Cholesky per block) against the reference
recursive rank-1 Woodbury on an explicit B×B inverse, on the same gradients.

What OBS/CBS need from F⁻¹ is its diagonal and products F⁻¹v. The reference builds
the explicit inverse with one Sherman-Morrison update per gradient,

    F⁻¹ ← F⁻¹ − (F⁻¹g)(F⁻¹g)ᵀ / (m + gᵀF⁻¹g),   starting from I/λ,

which costs m·B² memory-bound operations and B² memory. The factored form costs
about 2m²B + m³/3 flops and m² memory (memory columns exclude G, which both read).
Both run at block size ``--d`` on the same G; the factored form also runs at
``--full-d`` (MLPNet's 32,360 weights by default), where the reference time is
extrapolated as t_ref · (full_d / d)² (its cost is m·B²), and optionally checked by
timing a few updates on the full explicit block (``--probe-updates``).

    python benchmarks/bench_fisher_inverse.py --d 4000 --m 1000 --dtype float64
"""

from __future__ import annotations

import argparse
import time

import torch

from prunekit.second_order.fisher import EmpiricalFisher, estimate_bytes, one_block


def reference_inverse(grads: torch.Tensor, damp: float) -> torch.Tensor:
    """Explicit F⁻¹ by m sequential rank-1 (Sherman-Morrison) updates."""
    m, d = grads.shape
    inverse = torch.eye(d, dtype=grads.dtype) / damp
    for g in grads:
        v = inverse @ g
        # In-place rank-1 update through GEMM (the fastest of addr_/outer/addmm_ here).
        inverse.addmm_(v[:, None], v[None, :], alpha=-1.0 / (m + g @ v).item())
    return inverse


def factored(grads: torch.Tensor, damp: float, probe: torch.Tensor):
    fisher = EmpiricalFisher(grads, damp, dtype=grads.dtype, method="woodbury")
    return fisher.inverse_diagonal(), fisher.inverse_matvec(probe)


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def reference_update_seconds(grads: torch.Tensor, damp: float, updates: int) -> float:
    """Seconds per rank-1 update on an explicit d×d inverse, timed over ``updates``."""
    m, d = grads.shape
    inverse = torch.eye(d, dtype=grads.dtype) / damp
    start = time.perf_counter()
    for g in grads[:updates]:
        v = inverse @ g
        inverse.addmm_(v[:, None], v[None, :], alpha=-1.0 / (m + g @ v).item())
    return (time.perf_counter() - start) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=int, default=4000, help="block size for the head-to-head")
    parser.add_argument("--m", type=int, default=1000, help="number of gradient samples")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--damp", type=float, default=1e-3, help="dampening λ")
    parser.add_argument("--full-d", type=int, default=32360, help="full block (0: skip)")
    parser.add_argument(
        "--probe-updates",
        type=int,
        default=0,
        help="also time this many rank-1 updates on the full explicit block (needs full-d² "
        "memory) and extrapolate × m, to check the B² extrapolation",
    )
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    item = torch.empty((), dtype=dtype).element_size()
    generator = torch.Generator().manual_seed(args.seed)
    full_d = max(args.full_d, args.d)
    grads_full = torch.randn(args.m, full_d, generator=generator, dtype=dtype) * 0.1
    grads = grads_full[:, : args.d].contiguous()
    probe = torch.randn(args.d, generator=generator, dtype=dtype)
    print(f"m = {args.m}, λ = {args.damp}, {args.dtype}, {torch.get_num_threads()} threads")

    rows = []

    def row(name: str, block: int, seconds: float, nbytes: int, how: str) -> float:
        rows.append((name, block, seconds, nbytes, how))
        return seconds

    reference, factored_name = "rank-1 reference, explicit B×B", "factored (m×m Cholesky)"
    t_fact, (diagonal, product) = timed(factored, grads, args.damp, probe)
    row(factored_name, args.d, t_fact, estimate_bytes(one_block(args.d), args.m, dtype), "measured")
    start = time.perf_counter()
    inverse = reference_inverse(grads, args.damp)
    ref_diagonal, ref_product = inverse.diagonal(), inverse @ probe
    t_ref = row(reference, args.d, time.perf_counter() - start, args.d**2 * item, "measured")
    del inverse
    diag_error = ((diagonal - ref_diagonal).abs() / ref_diagonal).max().item()
    prod_error = ((product - ref_product).norm() / ref_product.norm()).item()

    if args.full_d:
        probe_full = torch.randn(full_d, generator=generator, dtype=dtype)
        t_full, _ = timed(factored, grads_full, args.damp, probe_full)
        full_bytes = estimate_bytes(one_block(full_d), args.m, dtype)
        row(factored_name, full_d, t_full, full_bytes, "measured")
        scale = (full_d / args.d) ** 2
        t_full_ref = row(reference, full_d, t_ref * scale, full_d**2 * item, "extrapolated × B²")
        if args.probe_updates:
            per_update = reference_update_seconds(grads_full, args.damp, args.probe_updates)
            how = f"{args.probe_updates} updates timed, × m"
            row(reference, full_d, per_update * args.m, full_d**2 * item, how)

    print("\n| method | block B | seconds | memory (GiB) | how |")
    print("|---|---:|---:|---:|---|")
    for name, block, seconds, nbytes, how in rows:
        print(f"| {name} | {block:,} | {seconds:.2f} | {nbytes / 2**30:.3f} | {how} |")
    print(f"\nspeed-up at B = {args.d:,}: {t_ref / t_fact:.1f}× (both measured)")
    if args.full_d:
        print(f"speed-up at B = {full_d:,}: {t_full_ref / t_full:.1f}× (reference extrapolated)")
    print(f"agreement: max relative diag error {diag_error:.2e}, F⁻¹v error {prod_error:.2e}")


if __name__ == "__main__":
    main()
