"""The whole one-shot CBS pipeline on MLPNet (CBS paper settings), stage by stage,
with the process's peak memory, and the Fisher inverse against the reference recursive
rank-1 Woodbury computed in the same run.

Stages of the CBS pipeline: m per-sample gradients (torch.func), the factored Fisher,
CBS-S selection (RMP start + swap search scored by the real training loss) and the
CBS-U update; "whole pipeline" is these plus loading. Then, separately, the diagonal of
F⁻¹ that OBS/WoodFisher need (one m×m Cholesky; CBS never forms it).

The reference inverse applies one Sherman-Morrison update per gradient to an explicit
B×B inverse. At the full B = 32,360 it would need 8.4 GB and hours, so it runs on the
first ``--reference-block`` weights with the same m and is extrapolated by (d/B)² (its
cost is m·B²); the factored inverse is also timed at that block size, so the ratio at
equal size is measured, not extrapolated.

    python benchmarks/bench_oneshot_pipeline.py --threads 2 --out result.json

Peak memory is the maximum resident set size (ru_maxrss): it includes the interpreter,
torch and the MNIST arrays. Targets (issue 4): whole pipeline ≤ 2 minutes and ≤ 4 GB on
2 cores; factored inverse ≥ 10× faster than the reference.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from prunekit.checkpoints import load_pretrained
from prunekit.data import get_dataset
from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot import CBSSettings, prune_one_shot
from prunekit.methods.oneshot.evidence import stack_samples
from prunekit.methods.oneshot.training_loss import weights_loss
from prunekit.second_order import EmpiricalFisher, per_sample_gradients

sys.path.insert(0, str(Path(__file__).parent))
from bench_fisher_inverse import reference_inverse  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", default=str(SHARED / "checkpoints/mnist_25_epoch_93.97.ckpt")
    )
    parser.add_argument("--data-dir", default=str(SHARED / "data/mnist"))
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--m", type=int, default=10000, help="gradient samples")
    parser.add_argument("--damp", type=float, default=1e-3)
    parser.add_argument("--rmp-trials", type=int, default=50)
    parser.add_argument("--reference-block", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    times: dict[str, float] = {}
    start_all = time.perf_counter()
    model = load_pretrained("mlpnet", args.checkpoint).eval()
    train = get_dataset("mnist", root=args.data_dir, train=True)
    test = get_dataset("mnist", root=args.data_dir, train=False)
    names = list(prunable_parameters(model))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
    x, y = stack_samples(train, order[: args.m].tolist())
    training_loss = weights_loss(model, names, x, y)

    t = time.perf_counter()
    grads = per_sample_gradients(model, names, x, y)
    times["gradients"] = time.perf_counter() - t

    t = time.perf_counter()
    fisher = EmpiricalFisher(grads, args.damp)  # factored; CBS never needs F⁻¹ itself
    times["fisher"] = time.perf_counter() - t

    result = prune_one_shot(
        model,
        names,
        "cbs",
        args.sparsity,
        fisher=fisher,
        training_loss=training_loss,
        settings=[CBSSettings(rmp_trials=args.rmp_trials)],
        generator=torch.Generator().manual_seed(args.seed),
    )
    times["cbs_selection"] = result.record.selection_seconds
    times["cbs_update"] = result.record.update_seconds
    times["whole_pipeline"] = time.perf_counter() - start_all
    peak = peak_rss_gib()

    # what OBS/WoodFisher need on top: the diagonal of F⁻¹ (one m×m Cholesky)
    t = time.perf_counter()
    fisher.inverse_diagonal()
    times["fisher_inverse_diagonal"] = time.perf_counter() - t
    peak_with_inverse = peak_rss_gib()

    with torch.no_grad():
        for name, value in result.weights.items():
            model.get_parameter(name).copy_(value)
        xt, yt = stack_samples(test, list(range(len(test))))
        top1 = float((model(xt).argmax(1) == yt).float().mean() * 100)

    block = min(args.reference_block, grads.shape[1])
    sub = grads[:, :block].contiguous()
    t = time.perf_counter()
    EmpiricalFisher(sub, args.damp).inverse_diagonal()  # the cheaper form at this size
    factored_block = time.perf_counter() - t
    t = time.perf_counter()
    reference_inverse(sub, args.damp)
    reference_block = time.perf_counter() - t
    d = grads.shape[1]
    reference_full = reference_block * (d / block) ** 2

    figures = {
        "settings": vars(args),
        "threads": torch.get_num_threads(),
        "seconds": times,
        "peak_rss_gib": peak,
        "peak_rss_gib_with_inverse": peak_with_inverse,
        "test_top1": top1,
        "removed": result.mask.num_removed,
        "inverse": {
            "block": block,
            "factored_seconds_at_block": factored_block,
            "reference_seconds_at_block": reference_block,
            "speedup_at_block": reference_block / factored_block,
            "factored_seconds_full": times["fisher_inverse_diagonal"],
            "reference_seconds_full_extrapolated": reference_full,
            "speedup_full": reference_full / times["fisher_inverse_diagonal"],
        },
    }
    print(f"MLPNet, sparsity {args.sparsity}, m = {args.m}, {torch.get_num_threads()} threads")
    print("| stage | seconds |\n|---|---:|")
    for stage, seconds in times.items():
        print(f"| {stage} | {seconds:.1f} |")
    print(
        f"peak RSS {peak:.2f} GiB for the CBS pipeline, {peak_with_inverse:.2f} GiB after the "
        f"inverse diagonal; test top-1 after CBS {top1:.2f}%"
    )
    inv = figures["inverse"]
    print(
        f"Fisher inverse at B = {block}: factored {inv['factored_seconds_at_block']:.2f}s, "
        f"rank-1 reference {inv['reference_seconds_at_block']:.2f}s "
        f"({inv['speedup_at_block']:.0f}×); at d = {d}: factored "
        f"{inv['factored_seconds_full']:.1f}s vs reference ≈ "
        f"{inv['reference_seconds_full_extrapolated']:.0f}s extrapolated "
        f"({inv['speedup_full']:.0f}×)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
