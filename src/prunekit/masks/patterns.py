"""N:M semi-structured masks: in every group of M consecutive weights, N are kept.

Groups run along the input dimension of each output row: a Linear ``weight[out, in]``
is cut into groups of M along ``in``; a Conv weight ``[out, in, kh, kw]`` is flattened
to ``[out, in·kh·kw]`` first (row-major, so a group spans kernel positions and input
channels in that order). In each group the N best weights by score are kept:
``remove="lowest"`` removes the M − N lowest scores, ``remove="highest"`` the M − N
highest. Ties are broken by position, as in :mod:`prunekit.masks.ranking`: the earlier
weight is removed first.

A tensor whose row length is not a multiple of M (e.g. LeNet-5's first conv,
1·5·5 = 25 inputs), or that has fewer than 2 dimensions, cannot carry the pattern
and is **kept dense**; :func:`nm_patterned` says which tensors are patterned. The
sparsity of the patterned tensors is then exactly 1 − N/M.

>>> mask = nm_mask({"fc.weight": torch.randn(8, 16)}, "2:4")
>>> check_nm(mask, 2, 4)
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.masks.mask import Mask
from prunekit.masks.ranking import RemoveEnd

_PATTERN = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_pattern(pattern: str | tuple[int, int]) -> tuple[int, int]:
    """``"2:4"`` → ``(2, 4)``; ConfigError unless 1 ≤ N < M."""
    if isinstance(pattern, tuple) and len(pattern) == 2:
        n, m = pattern
    else:
        match = _PATTERN.match(str(pattern))
        if match is None:
            raise ConfigError(f"N:M pattern must look like '2:4', got {pattern!r}")
        n, m = int(match.group(1)), int(match.group(2))
    if not (isinstance(n, int) and isinstance(m, int)) or not 1 <= n < m:
        raise ConfigError(f"N:M pattern needs 1 <= N < M (keep N of every M), got {n}:{m}")
    return n, m


def nm_patterned(shape: Sequence[int], m: int) -> bool:
    """True when a tensor of ``shape`` can carry an N:M pattern (rows a multiple of M)."""
    if len(shape) < 2:
        return False
    row = 1
    for size in shape[1:]:
        row *= int(size)
    return row % m == 0 and row > 0


def nm_keep(scores: Tensor, n: int, m: int, remove: RemoveEnd = "lowest") -> Tensor:
    """Bool tensor shaped like ``scores`` (True = kept) with the N:M pattern.

    ``scores`` must be patternable (see :func:`nm_patterned`); ConfigError otherwise.
    """
    if remove not in ("lowest", "highest"):
        raise ConfigError(f"remove must be 'lowest' or 'highest', got {remove!r}")
    if not nm_patterned(scores.shape, m):
        raise ConfigError(
            f"a tensor of shape {tuple(scores.shape)} cannot carry an N:M pattern with M={m}: "
            "its input dimension (in·kh·kw) must be a multiple of M"
        )
    values = scores.detach().cpu().double()
    if torch.isnan(values).any():
        raise ConfigError("scores contain NaN: the scoring method diverged on this model/data")
    groups = values.reshape(-1, m)
    keyed = groups if remove == "lowest" else -groups
    first_removed = torch.sort(keyed, dim=1, stable=True).indices[:, : m - n]
    keep = torch.ones_like(groups, dtype=torch.bool)
    keep.scatter_(1, first_removed, False)
    return keep.reshape(scores.shape)


def nm_mask(
    scores: Mapping[str, Tensor],
    pattern: str | tuple[int, int],
    remove: RemoveEnd = "lowest",
) -> Mask:
    """Mask keeping the N best of every M consecutive weights of each row of each tensor.

    Tensors that cannot carry the pattern (rows not a multiple of M) are kept dense.
    """
    n, m = parse_pattern(pattern)
    if not scores:
        raise ConfigError("no scores given: the model has no prunable parameter")
    out = Mask()
    for name, values in scores.items():
        if nm_patterned(values.shape, m):
            out[name] = nm_keep(values, n, m, remove)
        else:
            out[name] = torch.ones(values.shape, dtype=torch.bool)
    if not any(nm_patterned(v.shape, m) for v in scores.values()):
        raise ConfigError(
            f"no parameter can carry the {n}:{m} pattern (no input dimension is a multiple "
            f"of {m}); choose another M"
        )
    return out


def nm_flat_keep(
    flat_scores: Tensor,
    shapes: Sequence[Sequence[int]],
    pattern: str | tuple[int, int],
    remove: RemoveEnd = "lowest",
) -> Tensor:
    """N:M keep mask (True = kept) on a flat vector of concatenated weights.

    ``shapes`` are the layers' shapes in the order of ``flat_scores``, as the one-shot
    methods flatten them. The removal set is ``~result``; an OBS/CBS update is the exact
    update for any removal set, so applying it to this set keeps the pattern.
    """
    n, m = parse_pattern(pattern)
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    if sum(sizes) != flat_scores.numel():
        raise ConfigError(
            f"{flat_scores.numel()} scores given but the shapes hold {sum(sizes)} weights"
        )
    pieces = []
    for chunk, shape in zip(flat_scores.reshape(-1).split(sizes), shapes, strict=True):
        if nm_patterned(shape, m):
            pieces.append(nm_keep(chunk.reshape(shape), n, m, remove).reshape(-1))
        else:
            pieces.append(torch.ones(chunk.numel(), dtype=torch.bool))
    return torch.cat(pieces)


def check_nm(mask: Mask | Mapping[str, Tensor] | Tensor, n: int, m: int) -> bool:
    """True when every patternable tensor keeps exactly N of every M weights.

    Tensors that cannot carry the pattern must be dense. ConfigError naming the first
    tensor that breaks the pattern otherwise.
    """
    n, m = parse_pattern((n, m))
    tensors = {"mask": mask} if isinstance(mask, Tensor) else dict(mask)
    for name, keep in tensors.items():
        keep = keep.detach().to(dtype=torch.bool, device="cpu")
        if not nm_patterned(keep.shape, m):
            if isinstance(mask, Tensor) or not bool(keep.all()):
                raise ConfigError(
                    f"{name} of shape {tuple(keep.shape)} cannot carry a {n}:{m} pattern "
                    "and is not dense"
                )
            continue
        counts = keep.reshape(-1, m).sum(dim=1)
        bad = (counts != n).nonzero()
        if bad.numel():
            group = int(bad[0, 0])
            raise ConfigError(
                f"{name} breaks the {n}:{m} pattern: group {group} keeps "
                f"{int(counts[group])} of {m} weights"
            )
    return True


def nm_groups(shapes: Sequence[Sequence[int]], m: int) -> Tensor:
    """The N:M group of every weight of the flat concatenation of tensors of ``shapes``:
    consecutive group numbers for patterned tensors, -1 for weights of tensors that stay
    dense. Weights i and j may swap roles under the pattern only when their groups match."""
    pieces, next_group = [], 0
    for shape in shapes:
        size = int(torch.Size(shape).numel())
        if nm_patterned(shape, m):
            pieces.append(torch.arange(size) // m + next_group)
            next_group += size // m
        else:
            pieces.append(torch.full((size,), -1, dtype=torch.long))
    return torch.cat(pieces) if pieces else torch.empty(0, dtype=torch.long)


def nm_removed_count(shapes: Sequence[Sequence[int]], pattern: str | tuple[int, int]) -> int:
    """How many weights the N:M pattern removes from tensors of ``shapes``."""
    n, m = parse_pattern(pattern)
    patterned = sum(int(torch.Size(s).numel()) for s in shapes if nm_patterned(s, m))
    return patterned // m * (m - n)
