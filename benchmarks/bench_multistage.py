"""Multi-stage one-shot pruning of MLPNet against single-stage CBS, measured in one run:
wall time and peak memory (each configuration in its own child process, so its
``ru_maxrss`` is its own), with m gradients of the CBS checkpoint on MNIST.

    python benchmarks/bench_multistage.py --m 10000 --methods l0 cbs \\
        --sparsities 0.5 0.7 0.9 0.95 0.98 --out benchmarks/results/multistage_mlpnet_cpu.json

The stages use the defaults since issue 16 (fresh samples every stage, first-order
term, λ 3e-2). The official CHITA++ code measured on this machine at 0.98, m = 10,000
(shared/docs/CHITA_SIDE_BY_SIDE.md): 9:57 and 10.8 GB, given beside each row as a ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHITA_SECONDS, CHITA_GIB = 597.0, 10.8  # official CHITA++, 0.98, m = 10,000, this machine


def one(method: str, stages: int, sparsity: float, m: int, damp: float, threads: int) -> dict:
    import torch
    from torch.utils.data import Subset

    from prunekit.checkpoints import load_pretrained
    from prunekit.data import get_dataset
    from prunekit.masks import prunable_parameters
    from prunekit.methods.oneshot import CBSSettings, FisherSettings
    from prunekit.methods.oneshot.evidence import sample_order
    from prunekit.methods.oneshot.multistage import StageSettings, prune_in_stages

    torch.set_num_threads(threads)
    model = load_pretrained("mlpnet", SHARED / "checkpoints" / "mnist_25_epoch_93.97.ckpt")
    train = get_dataset("mnist", root=SHARED / "data" / "mnist", train=True)
    train = Subset(train, sample_order(train, 0)[5000:])  # as with --validation-size 5000
    started = time.perf_counter()
    out = prune_in_stages(
        model.eval(), list(prunable_parameters(model)), method, sparsity, train,
        stages=StageSettings(count=stages), fisher=FisherSettings(samples=m, damp=damp),
        loss_samples=10000, settings=[CBSSettings()],
    )  # fmt: skip
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    return {"method": method, "stages": stages, "sparsity": sparsity, "m": m,
            "seconds": seconds, "peak_rss_gib": peak,
            "evidence_seconds": sum(r.evidence_seconds for r in out.stages),
            "prune_seconds": sum(r.prune_seconds for r in out.stages)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", type=int, default=10000)
    parser.add_argument("--damp", type=float, default=3e-2)
    parser.add_argument("--stages", type=int, default=15)
    parser.add_argument("--methods", nargs="+", default=["l0", "cbs"])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.98])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "STAGES", "SPARSITY"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.one:
        method, stages, sparsity = args.one
        print(json.dumps(one(method, int(stages), float(sparsity), args.m, args.damp,
                             args.threads)))  # fmt: skip
        return
    def measure(method: str, stages: int, sparsity: float) -> dict:
        done = subprocess.run(
            [sys.executable, __file__, "--one", method, str(stages), str(sparsity),
             "--m", str(args.m), "--damp", str(args.damp), "--threads", str(args.threads)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(done.stdout.strip().splitlines()[-1])

    rows = []
    for sparsity in args.sparsities:
        single = measure("cbs", 1, sparsity)
        for method in args.methods:
            staged = measure(method, args.stages, sparsity)
            rows.append({
                "sparsity": sparsity, "method": method, "single_stage_cbs": single,
                "multi_stage": staged,
                "time_ratio": staged["seconds"] / single["seconds"],
                "memory_ratio": staged["peak_rss_gib"] / single["peak_rss_gib"],
                "time_over_chita": staged["seconds"] / CHITA_SECONDS,
                "memory_over_chita": staged["peak_rss_gib"] / CHITA_GIB,
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
