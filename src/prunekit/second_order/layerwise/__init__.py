"""Layer-wise second-order pruning: pure linear algebra on one layer (docs/LAYERWISE.md).

A layer has weights W (d_out × d_in, rows = outputs) and calibration inputs X (d_in × N);
H = 2XXᵀ/N is shared by every row and the reconstruction error of Ŵ is
``layer_error(W, Ŵ, H)`` = Σ_rows (w − ŵ)H(w − ŵ)ᵀ/2 = ‖(W − Ŵ)X‖²_F / N. Every solver
removes exactly ``count`` weights (or follows an N:M ``pattern``) and returns a
``LayerPruneResult`` (weights, kept mask with True = kept, undamped error).
"""

from prunekit.second_order.layerwise.backsolve import least_squares_on_support
from prunekit.second_order.layerwise.hessian import (
    HessianAccumulator,
    damped_inverse,
    lambda_max,
    prepare_hessian,
    upper_cholesky_of_inverse,
)
from prunekit.second_order.layerwise.joint import joint_layer, joint_workspace_bytes
from prunekit.second_order.layerwise.magnitude import magnitude_layer
from prunekit.second_order.layerwise.obc import obc_layer, obc_workspace_bytes
from prunekit.second_order.layerwise.objective import LayerPruneResult, layer_error
from prunekit.second_order.layerwise.saliency import layer_saliency
from prunekit.second_order.layerwise.sparsegpt import sparsegpt_layer

__all__ = [
    "HessianAccumulator",
    "LayerPruneResult",
    "damped_inverse",
    "joint_layer",
    "joint_workspace_bytes",
    "lambda_max",
    "layer_error",
    "layer_saliency",
    "least_squares_on_support",
    "magnitude_layer",
    "obc_layer",
    "obc_workspace_bytes",
    "prepare_hessian",
    "sparsegpt_layer",
    "upper_cholesky_of_inverse",
]
