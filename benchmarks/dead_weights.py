"""Kept weights on no input-to-output path, per one-shot method, before and after they
are given back to the count (``methods.oneshot.reclaim``): MLPNet (the CBS paper's
checkpoint) on MNIST, m gradients, one shot and in stages.

    python benchmarks/dead_weights.py --m 1000 --sparsities 0.9 0.95 0.98 \\
        --out benchmarks/results/dead_weights_mlpnet.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.data import Subset

from prunekit.checkpoints import load_pretrained
from prunekit.data import get_dataset
from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot import CBSSettings, FisherSettings, prune_model
from prunekit.methods.oneshot.evidence import sample_order
from prunekit.methods.oneshot.multistage import StageSettings, prune_in_stages

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--damp", type=float, default=3e-2)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    parser.add_argument("--methods", nargs="+", default=["magnitude", "woodfisher", "cbs", "l0"])
    parser.add_argument("--stages", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_pretrained("mlpnet", SHARED / "checkpoints" / "mnist_25_epoch_93.97.ckpt").eval()
    train = get_dataset("mnist", root=SHARED / "data" / "mnist", train=True)
    train = Subset(train, sample_order(train, 0)[5000:])  # as with --validation-size 5000
    names = list(prunable_parameters(model))
    fisher = FisherSettings(samples=args.m, damp=args.damp)
    rows = []
    for sparsity in args.sparsities:
        for method in args.methods:
            one = prune_model(
                model, method, sparsity, train, fisher=fisher, loss_samples=10000,
                settings=[CBSSettings(rmp_trials=10)],
            )  # fmt: skip
            rows.append({"method": method, "stages": 1, "sparsity": sparsity,
                         "dead_selected": one.record.dead_weights_selected,
                         "dead_kept": one.record.dead_weights_kept})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
            if method == "magnitude" or args.stages <= 1:
                continue
            staged = prune_in_stages(
                model, names, method, sparsity, train, stages=StageSettings(count=args.stages),
                fisher=fisher, loss_samples=10000, settings=[CBSSettings(rmp_trials=10)],
            )  # fmt: skip
            record = staged.result.record
            rows.append({"method": method, "stages": args.stages, "sparsity": sparsity,
                         "dead_selected": record.dead_weights_selected,
                         "dead_kept": record.dead_weights_kept})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
