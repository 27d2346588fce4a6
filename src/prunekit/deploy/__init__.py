"""Deploying pruned models: compact safetensors export, sparse CPU inference, timing.

May import ``prunekit.models`` and ``prunekit.masks``; never pipelines or the CLI.
"""

from prunekit.deploy.sparse import (
    DEFAULT_CROSSOVER,
    SparseConv2d,
    SparseLinear,
    density,
    sparse_layers,
    sparsify_for_inference,
)

__all__ = [
    "DEFAULT_CROSSOVER",
    "SparseConv2d",
    "SparseLinear",
    "density",
    "sparse_layers",
    "sparsify_for_inference",
]
