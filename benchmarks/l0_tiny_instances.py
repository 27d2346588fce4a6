"""How often each selection reaches the exhaustive optimum of the local model.

On tiny random instances (d ≤ 14, float64) the exact objective
min_δ ḡᵀδ + ½δᵀFδ s.t. δ_Q = −w_Q is computed for every one of the C(d, k) removal
sets; each method's mask is scored with the exact (CBS-U) update, and counts as
reaching the optimum when its objective is within 1e-9 (relative) of the best.

Methods: the joint L0 solver (``l0_solve``, default settings; from the OBS mask; from
both its default start and the OBS mask, best of the two), CBS-S (``cbs_select``
with the exact objective as its loss, started from magnitude at the Newton point
w̃ = w − F⁻¹ḡ, full rank window) + CBS-U, OBS selection (``woodfisher_select`` with
ḡ) + CBS-U, and magnitude + CBS-U.

    PYTHONPATH=src python benchmarks/l0_tiny_instances.py --instances 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "second_order"))

from second_order_reference import exhaustive_optimum  # noqa: E402
from second_order_reference import random_instance as instance  # noqa: E402

from prunekit.second_order import (  # noqa: E402
    cbs_select,
    cbs_update,
    l0_solve,
    magnitude_start,
    woodfisher_select,
)
from prunekit.second_order.local_model import newton_point  # noqa: E402


def exact_objective(w, fisher, removed, gradient) -> float:
    return cbs_update(w, fisher, removed, gradient=gradient).loss_change


def method_objectives(w, grads, fisher, gradient, k) -> dict[str, float]:
    newton = newton_point(w, fisher, gradient)
    d = len(w)

    def loss(removed):
        return exact_objective(w, fisher, removed, gradient)

    cbs = cbs_select(
        newton,
        grads,
        magnitude_start(newton, k),
        loss,
        blocks=fisher.blocks,
        swap_threshold=1e-12,
        rank_window=d,
        max_failures=d,
    )
    obs = woodfisher_select(w, fisher, k, gradient)
    default_start = l0_solve(w, fisher, k, gradient=gradient, max_iterations=0, max_swap_rounds=0)
    return {
        "l0_solve": l0_solve(w, fisher, k, gradient=gradient).objective,
        "l0_solve_from_obs": l0_solve(w, fisher, k, gradient=gradient, start=obs).objective,
        "l0_solve_two_starts": l0_solve(
            w, fisher, k, gradient=gradient, start=[default_start.removed, obs]
        ).objective,
        "cbs_s": loss(cbs.removed),
        "obs": loss(obs),
        "magnitude": loss(magnitude_start(w, k)),
    }


def reached_rates(instances: int, with_gradient: bool, rtol: float = 1e-9) -> dict[str, float]:
    hits: dict[str, int] = {}
    for seed in range(instances):
        w, grads, fisher, dense, gradient, k = instance(seed, with_gradient)
        _best_mask, best = exhaustive_optimum(dense, w, k, gradient)
        for name, value in method_objectives(w, grads, fisher, gradient, k).items():
            assert value >= best - rtol * abs(best) - 1e-12, (name, seed, value, best)
            hit = value <= best + rtol * abs(best) + 1e-12
            hits[name] = hits.get(name, 0) + int(hit)
    return {name: count / instances for name, count in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    began = time.perf_counter()
    results = {
        "without_gradient": reached_rates(args.instances, with_gradient=False),
        "with_gradient": reached_rates(args.instances, with_gradient=True),
    }
    results["instances"] = args.instances
    results["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
