"""Per-weight OBS saliency of a layer, normalised for ranking across layers."""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.second_order.layerwise.hessian import damped_inverse, prepare_hessian
from prunekit.second_order.layerwise.objective import check_layer


def layer_saliency(W: Tensor, H: Tensor, damp: float = 0.01) -> Tensor:
    """ρ_ij = w_ij² / (2 [H_damped⁻¹]_jj) / (trace(W H Wᵀ)/2)  (float32, d_out × d_in).

    The numerator is the error E added by removing w_ij alone with the optimal update of
    its row (OBS; the unit of ``layer_error``). The denominator is the layer's output
    energy ‖WX‖²_F / N = trace(W H Wᵀ)/2 on the undamped H, so ρ is the fraction of the
    layer's output removed and layers of different scales compare. Dead inputs score 0.
    A layer with zero output energy is left unnormalised."""
    check_layer(W, H)
    H_damped, dead = prepare_hessian(H, damp)
    inverse_diagonal = torch.diagonal(damped_inverse(H_damped))
    w = W.to(torch.float64)
    saliency = w * w / (2 * inverse_diagonal)
    saliency[:, dead] = 0.0
    energy = float(((w @ H.to(torch.float64)) * w).sum()) / 2
    if energy > 0:
        saliency /= energy
    return saliency.to(torch.float32)
