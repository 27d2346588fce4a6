"""Time of OBC and the joint solver (lw_l0) on mlp_wide, measured on a slice of rows.

Both solvers treat the rows of a layer independently given H (OBC row by row; the joint
solver's backsolves and swaps per row, its IHT steps as products with H), so the time
of ``--rows`` rows of layers.1 (4096 × 4096), times 4096 / rows, estimates one 4096 ×
4096 layer; mlp_wide has four of them, a 4096 × 784 one and a 10 × 4096 one. The
per-layer work (H's factor, a few seconds) is scaled up with the rows, so the estimate
errs high by that much. SparseGPT is not timed here: its cost is dominated by H's
factor, and the whole model's time is measured by the reproduction itself. H is that
of layers.1 on ``--samples`` training images through the dense first layer. One thread.

    python reproductions/layerwise_large_row_timing.py --rows 32 --sparsities 0.5 0.9
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prunekit.data import get_dataset
from prunekit.models import create_model
from prunekit.second_order.layerwise import (
    HessianAccumulator,
    joint_layer,
    obc_layer,
)

ROOT = Path(__file__).resolve().parents[1]


def layer_hessian(model: torch.nn.Module, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    train = get_dataset("mnist", root=ROOT.parent / "shared" / "data" / "mnist", train=True)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:samples]
    x = torch.stack([train[int(i)][0] for i in order]).flatten(1)
    first = model.layers[0]
    with torch.no_grad():
        inputs = torch.relu(first(x))
    accumulator = HessianAccumulator(inputs.shape[1])
    accumulator.add_batch(inputs)
    return model.layers[1].weight.detach(), accumulator.hessian


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "runs/large_model/model.pt"))
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.9])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = create_model("mlp_wide")
    model.load_state_dict(torch.load(args.checkpoint, weights_only=True, map_location="cpu"))
    W, H = layer_hessian(model.eval(), args.samples)
    rows = W[: args.rows]
    scale = W.shape[0] / args.rows
    for sparsity in args.sparsities:
        count = round(sparsity * rows.numel())
        for name, solve in (
            ("obc", lambda c=count: obc_layer(rows, H, c)),
            ("lw_l0", lambda c=count: joint_layer(rows, H, c)),
        ):
            started = time.perf_counter()
            result = solve()
            seconds = time.perf_counter() - started
            print(
                json.dumps(
                    {
                        "solver": name,
                        "sparsity": sparsity,
                        "rows": args.rows,
                        "seconds": round(seconds, 2),
                        "per_4096_layer_s": round(seconds * scale, 1),
                        "error": round(float(result.error), 4),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
