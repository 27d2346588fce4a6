"""Calibration inputs of the projections of ``nn.MultiheadAttention``.

The attention module applies its projections through its parameters inside
``F.multi_head_attention_forward``: its ``out_proj`` Linear is never called, and its
input projection is a raw parameter. Their inputs are therefore read from the call of
the attention module itself (a forward pre-hook on it, which changes nothing):

- ``in_proj_weight`` (3E × E): three blocks of E rows, the q, k and v projections, each
  with its own H, on the rows of ``query``, ``key`` and ``value`` (all the same in
  self-attention); every position counts, padding included, as for a Linear on tokens.
- ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight`` (kdim or vdim ≠ E): one block
  each, on ``query``, ``key``, ``value``.
- ``out_proj.weight``: one block on the heads' outputs concatenated, the input of the
  output projection. It is recomputed from the module's call by
  ``F.multi_head_attention_forward`` itself, with the module's current (possibly
  pruned) input projection, the call's masks, ``is_causal`` and ``need_weights`` path,
  bias_k/bias_v and add_zero_attn, and an identity output projection without bias
  (x·I is exact): bit for bit the rows that function feeds its output projection, in
  its order (target position major, then batch).

PyTorch's fused inference kernel (``torch._native_multi_head_attention``, taken for
self-attention in eval mode without gradients) computes the same heads' outputs with
other kernels; they may differ from the recomputed ones in rounding.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import ConfigError

OUT_PROJECTION = "out_proj.weight"

# the attention's parameter → the call arguments feeding its blocks, in row order
PROJECTION_INPUTS: dict[str, tuple[str, ...]] = {
    "in_proj_weight": ("query", "key", "value"),
    "q_proj_weight": ("query",),
    "k_proj_weight": ("key",),
    "v_proj_weight": ("value",),
}

_SIGNATURE = inspect.signature(nn.MultiheadAttention.forward)


def attention_parameter(model: nn.Module, name: str) -> tuple[nn.MultiheadAttention, str] | None:
    """``(attention, attribute)`` when parameter ``name`` of ``model`` is a projection of
    an ``nn.MultiheadAttention`` (``attribute`` one of ``PROJECTION_INPUTS`` or
    ``out_proj.weight``), else None. ConfigError for a subclass with its own forward."""
    parts = name.split(".")
    for depth, attribute in ((1, parts[-1]), (2, ".".join(parts[-2:]))):
        if len(parts) < depth or attribute not in (*PROJECTION_INPUTS, OUT_PROJECTION):
            continue
        owner = ".".join(parts[:-depth])
        module = model.get_submodule(owner) if owner else model
        if not isinstance(module, nn.MultiheadAttention):
            continue
        if type(module).forward is not nn.MultiheadAttention.forward:
            raise ConfigError(
                f"{owner or 'the model'} ({type(module).__name__}) overrides "
                "nn.MultiheadAttention.forward, so the inputs of its projections cannot be "
                f"read from its call: leave {name} out of the names"
            )
        return module, attribute
    return None


def block_shape(attention: nn.MultiheadAttention, attribute: str) -> tuple[int, int, int]:
    """``(groups, rows, d_in)`` of the projection ``attribute``: the packed input
    projection is three blocks (q, k, v) of embed_dim rows."""
    weight = attention.get_parameter(attribute)
    groups = len(PROJECTION_INPUTS.get(attribute, ("heads",)))
    return groups, weight.shape[0] // groups, weight.shape[1]


def _arguments(attention: nn.MultiheadAttention, args: tuple, kwargs: dict, name: str) -> dict:
    bound = _SIGNATURE.bind(attention, *args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    del arguments["self"]
    if any(arguments[k].is_nested for k in ("query", "key", "value")):
        raise ConfigError(
            f"the nn.MultiheadAttention of {name} got nested tensors (the fast path of "
            "nn.TransformerEncoder with a padding mask): build the encoder with "
            "enable_nested_tensor=False for layer-wise pruning"
        )
    return arguments


def _heads_output(attention: nn.MultiheadAttention, arguments: dict) -> Tensor:
    """The concatenated heads' output, ``(target length, batch, E)`` (or ``(L, E)``
    unbatched), as ``nn.MultiheadAttention.forward`` would feed its output projection."""
    query, key, value = arguments["query"], arguments["key"], arguments["value"]
    if attention.batch_first and query.dim() == 3:  # transposed as the module does
        if key is value:
            if query is key:
                query = key = value = query.transpose(1, 0)
            else:
                query, key = (x.transpose(1, 0) for x in (query, key))
                value = key
        else:
            query, key, value = (x.transpose(1, 0) for x in (query, key, value))
    out_weight = attention.out_proj.weight
    identity = torch.eye(attention.embed_dim, dtype=out_weight.dtype, device=out_weight.device)
    separate = attention.in_proj_weight is None  # kdim or vdim ≠ E: q, k, v apart
    heads, _ = F.multi_head_attention_forward(
        query,
        key,
        value,
        attention.embed_dim,
        attention.num_heads,
        attention.in_proj_weight,
        attention.in_proj_bias,
        attention.bias_k,
        attention.bias_v,
        attention.add_zero_attn,
        attention.dropout,
        identity,
        None,
        training=attention.training,
        key_padding_mask=arguments["key_padding_mask"],
        need_weights=arguments["need_weights"],
        attn_mask=arguments["attn_mask"],
        use_separate_proj_weight=separate,
        q_proj_weight=attention.q_proj_weight,
        k_proj_weight=attention.k_proj_weight,
        v_proj_weight=attention.v_proj_weight,
        average_attn_weights=arguments["average_attn_weights"],
        is_causal=arguments["is_causal"],
    )
    return heads


@torch.no_grad()
def projection_inputs(
    attention: nn.MultiheadAttention, attribute: str, args: tuple, kwargs: dict, name: str = ""
) -> list[Tensor]:
    """The inputs ``(n, d_in)`` of each block of the projection ``attribute`` (parameter
    ``name``, for messages) in one call ``attention(*args, **kwargs)`` (see the module's
    docstring)."""
    arguments = _arguments(attention, args, kwargs, name or attribute)
    if attribute == OUT_PROJECTION:
        heads = _heads_output(attention, arguments)
        return [heads.reshape(-1, attention.embed_dim).detach()]
    return [
        arguments[source].detach().reshape(-1, arguments[source].shape[-1])
        for source in PROJECTION_INPUTS[attribute]
    ]


def rows_per_sample(
    attention: nn.MultiheadAttention, attribute: str, args: tuple, kwargs: dict, name: str = ""
) -> int:
    """Input rows one sample gives a block of ``attribute`` (the most over its blocks):
    the target length for ``query`` and ``out_proj``, the source length otherwise."""
    arguments = _arguments(attention, args, kwargs, name or attribute)
    sources = PROJECTION_INPUTS.get(attribute, ("query",))
    dim = 1 if attention.batch_first else 0
    return max(
        arguments[s].shape[dim] if arguments[s].dim() == 3 else arguments[s].shape[0]
        for s in sources
    )
