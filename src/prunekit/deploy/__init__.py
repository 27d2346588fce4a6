"""Deploying pruned models: compact safetensors export, sparse CPU inference, timing.

May import ``prunekit.models`` and ``prunekit.masks``; never pipelines or the CLI.
"""

from prunekit.deploy.export import (
    FORMAT_VERSION,
    ExportedModel,
    dense_size_bytes,
    export_pruned,
    is_exported,
    load_exported,
    read_exported,
)
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
    "FORMAT_VERSION",
    "ExportedModel",
    "SparseConv2d",
    "SparseLinear",
    "density",
    "dense_size_bytes",
    "export_pruned",
    "is_exported",
    "load_exported",
    "read_exported",
    "sparse_layers",
    "sparsify_for_inference",
]
