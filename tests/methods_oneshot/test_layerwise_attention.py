"""Layer-wise pruning of ``nn.MultiheadAttention`` projections (and so of the standard
transformer layers): exact counts, the q/k/v blocks of the packed input projection on
their own inputs, out_proj's inputs against an attention computed by hand with the
pruned input projection, bit-exact against ``F.multi_head_attention_forward``, the model
untouched by calibration, the carried forward against the recomputation, refusals."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot import LayerwiseSettings, prune_layerwise, prune_model
from prunekit.methods.oneshot.calibration import accumulate_inputs, forward_plan, pruned_layer

E, HEADS, T = 16, 4, 5
F64 = LayerwiseSettings(dtype="float64", batch_size=8, calibration_samples=24)
ENC = "enc.self_attn."


class Capture:
    """An accumulator that keeps the rows it is fed."""

    def __init__(self):
        self.rows = []

    def add_batch(self, x):
        self.rows.append(x)

    @property
    def x(self):
        return torch.cat(self.rows)


def captured(model, name, x):
    layer = pruned_layer(model, name)
    blocks = [Capture() for _ in range(layer.groups)]
    accumulate_inputs(model.eval(), layer, [x], blocks, calls=1)
    return [b.x for b in blocks]


class Encoder(nn.Module):
    """A TransformerEncoderLayer on (B, T, E) tokens (transposed in and out when not
    batch_first, with a causal mask then) and a classifier on the mean token."""

    def __init__(self, batch_first=True, causal=False):
        super().__init__()
        self.batch_first, self.causal = batch_first, causal
        self.enc = nn.TransformerEncoderLayer(
            E, HEADS, 32, batch_first=batch_first, dropout=0.0
        )
        self.head = nn.Linear(E, 3)

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)
        if self.causal:
            mask = nn.Transformer.generate_square_subsequent_mask(T, dtype=x.dtype)
            h = self.enc(x, src_mask=mask, is_causal=True)
        else:
            h = self.enc(x)
        if not self.batch_first:
            h = h.transpose(0, 1)
        return self.head(h.mean(1))


class SelfAttention(nn.Module):
    """An nn.MultiheadAttention called directly (traceable) and a Linear after it."""

    def __init__(self, **kwargs):
        super().__init__()
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=True, **kwargs)
        self.fc = nn.Linear(E, 3)

    def forward(self, x):
        return self.fc(self.attn(x, x, x, need_weights=False)[0] + x).mean(1)


class CrossAttention(nn.Module):
    """Cross-attention on a memory of other width (kdim = vdim = 8: separate q, k, v
    projections) and other length, with a key padding mask."""

    def __init__(self):
        super().__init__()
        self.memory = nn.Linear(E, 8)
        self.attn = nn.MultiheadAttention(E, HEADS, kdim=8, vdim=8, batch_first=True)
        self.fc = nn.Linear(E, 3)

    def forward(self, x):
        memory = self.memory(torch.cat([x, x[:, :2] * 2], 1))  # length T + 2
        last = torch.arange(T + 2) == T + 1  # the last key is padding
        padding = torch.zeros_like(memory[..., 0], dtype=torch.bool) | last
        return self.fc(self.attn(x, memory, memory, key_padding_mask=padding)[0]).mean(1)


class Decoder(nn.Module):
    """A TransformerDecoderLayer whose memory is a Linear of the input: its
    cross-attention's packed in_proj has q from the target and k, v from the memory."""

    def __init__(self):
        super().__init__()
        self.memory = nn.Linear(E, E)
        self.dec = nn.TransformerDecoderLayer(E, HEADS, 32, batch_first=True, dropout=0.0)
        self.head = nn.Linear(E, 3)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(T, dtype=x.dtype)
        return self.head(self.dec(x, self.memory(x), tgt_mask=mask, tgt_is_causal=True).mean(1))


def build(make, seed=0):
    torch.manual_seed(seed)
    return make().double().eval(), torch.randn(24, T, E, dtype=torch.float64)


def heads_by_hand(attention, w_in, query, key, value, mask=None):
    """softmax(QKᵀ/√d_h + mask)·V per head, heads concatenated, (B·L, E); inputs
    batch-major (B, L, ·), ``w_in`` the packed (or stacked q, k, v) input weights."""
    b_in = attention.in_proj_bias.detach()
    q, k, v = (
        inputs @ w.T + bias
        for inputs, w, bias in zip(
            (query, key, value), w_in.split(E), b_in.split(E), strict=True
        )
    )

    def split(y):
        return y.reshape(y.shape[0], y.shape[1], HEADS, E // HEADS).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(E // HEADS)
    if mask is not None:
        scores = scores.masked_fill(mask, -math.inf)
    out = torch.softmax(scores, -1) @ split(v)
    return out.transpose(1, 2).reshape(-1, E)


def error_of(w, w_hat, x):
    return float((((w - w_hat) @ x.T) ** 2).sum()) / x.shape[0]


# --- names ----------------------------------------------------------------------------------
def test_attention_projections_are_prunable_names():
    model, _ = build(Encoder)
    assert list(prunable_parameters(model)) == [
        ENC + "in_proj_weight",
        ENC + "out_proj.weight",
        "enc.linear1.weight",
        "enc.linear2.weight",
        "head.weight",
    ]
    separate, _ = build(CrossAttention)
    assert [n for n in prunable_parameters(separate) if n.startswith("attn.")] == [
        "attn.q_proj_weight",
        "attn.k_proj_weight",
        "attn.v_proj_weight",
        "attn.out_proj.weight",
    ]
    kept = prunable_parameters(model, exclude_module_types=[nn.MultiheadAttention])
    assert ENC + "in_proj_weight" not in kept


def test_the_packed_input_projection_is_three_blocks_before_out_proj():
    model, x = build(Encoder)
    names = [ENC + "out_proj.weight", ENC + "in_proj_weight"]  # out_proj named first
    layers = [pruned_layer(model, n) for n in names]
    assert [(x.groups, x.rows, x.d_in) for x in layers] == [(1, E, E), (3, E, E)]
    plan = forward_plan(model, layers, x[:4])
    assert [layer.name for layer in plan.layers] == names[::-1]
    assert plan.rows_per_sample == {names[0]: T, names[1]: T}


# --- counts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["sparsegpt", "obc", "lw_magnitude"])
@pytest.mark.parametrize("make", [Encoder, lambda: Encoder(batch_first=False, causal=True)])
def test_transformer_layers_prune_with_exact_counts(method, make):
    model, x = build(make)
    y = torch.randint(0, 3, (len(x),))
    result = prune_model(model, method, 0.5, (x, y), settings=[F64])
    names = list(prunable_parameters(model))
    assert [r.name for r in result.record.layers] == names
    for report in result.record.layers:
        kept = result.mask[report.name]
        assert report.removed == int((~kept).sum()) == round(0.5 * kept.numel())
        assert bool((result.weights[report.name][~kept] == 0).all())
    in_proj = result.mask[ENC + "in_proj_weight"]
    assert [int((~block).sum()) for block in in_proj.split(E)] == [E * E // 2] * 3
    assert result.record.removed == round(0.5 * sum(m.numel() for m in result.mask.values()))


def test_global_allocation_and_nm_on_attention():
    model, x = build(Encoder)
    names = list(prunable_parameters(model))
    glob = prune_layerwise(
        model, names, "sparsegpt", 0.5, x, settings=LayerwiseSettings(allocation="global")
    )
    total = sum(m.numel() for m in glob.mask.values())
    assert sum(int((~m).sum()) for m in glob.mask.values()) == round(0.5 * total)
    nm = prune_layerwise(model, names, "sparsegpt", None, x, pattern="2:4")
    for name in names:
        groups = nm.mask[name].reshape(-1, 4)
        assert bool((groups.sum(1) == 2).all()), name


# --- inputs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["sparsegpt", "obc"])
@pytest.mark.parametrize("batch_first,causal", [(True, False), (False, True)])
def test_out_proj_error_on_attention_computed_by_hand(method, batch_first, causal):
    model, x = build(lambda: Encoder(batch_first=batch_first, causal=causal))
    names = [ENC + "in_proj_weight", ENC + "out_proj.weight", "head.weight"]
    result = prune_layerwise(model, names, method, 0.5, x, settings=F64)
    attention = model.enc.self_attn
    reports = {r.name: r for r in result.record.layers}
    # in_proj, the first layer: each of q, k, v on the dense input rows
    w_in, w_in_hat = attention.in_proj_weight.detach(), result.weights[names[0]]
    rows = x.reshape(-1, E)
    expected = sum(
        error_of(w, w_hat, rows)
        for w, w_hat in zip(w_in.split(E), w_in_hat.split(E), strict=True)
    )
    assert reports[names[0]].calibration_rows == len(x) * T
    assert reports[names[0]].error == pytest.approx(expected, rel=1e-9)
    # out_proj: the heads of the attention with the *pruned* in_proj
    mask = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None
    heads = heads_by_hand(attention, w_in_hat, x, x, x, mask)
    w_out, w_out_hat = attention.out_proj.weight.detach(), result.weights[names[1]]
    assert reports[names[1]].calibration_rows == len(x) * T
    assert reports[names[1]].error == pytest.approx(error_of(w_out, w_out_hat, heads), rel=1e-9)
    dense = heads_by_hand(attention, w_in, x, x, x, mask)
    assert reports[names[1]].error != pytest.approx(error_of(w_out, w_out_hat, dense), rel=1e-6)


def test_cross_attention_blocks_see_their_own_inputs():
    model, x = build(CrossAttention)
    names = ["attn.q_proj_weight", "attn.k_proj_weight", "attn.v_proj_weight"]
    names += ["attn.out_proj.weight"]
    result = prune_layerwise(model, names, "sparsegpt", 0.5, x, settings=F64)
    reports = {r.name: r for r in result.record.layers}
    attention = model.attn
    memory = model.memory(torch.cat([x, x[:, :2] * 2], 1)).detach()
    for name, rows in zip(names[:3], (x, memory, memory), strict=True):
        w = attention.get_parameter(name.split(".")[1]).detach()
        report = reports[name]
        assert report.calibration_rows == rows.shape[0] * rows.shape[1]
        assert report.error == pytest.approx(
            error_of(w, result.weights[name], rows.reshape(-1, rows.shape[-1])), rel=1e-9
        )
    q = x @ result.weights[names[0]].T + attention.in_proj_bias.detach()[:E]
    k = memory @ result.weights[names[1]].T + attention.in_proj_bias.detach()[E : 2 * E]
    v = memory @ result.weights[names[2]].T + attention.in_proj_bias.detach()[2 * E :]

    def split(y):
        return y.reshape(y.shape[0], y.shape[1], HEADS, E // HEADS).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(E // HEADS)
    scores[..., -1] = -math.inf  # the padded key
    heads = (torch.softmax(scores, -1) @ split(v)).transpose(1, 2).reshape(-1, E)
    w_out = attention.out_proj.weight.detach()
    assert reports[names[3]].error == pytest.approx(
        error_of(w_out, result.weights[names[3]], heads), rel=1e-9
    )


def test_decoder_cross_attention_in_proj_blocks():
    model, x = build(Decoder)
    name = "dec.multihead_attn.in_proj_weight"
    q, k, v = captured(model, name, x)
    mask = nn.Transformer.generate_square_subsequent_mask(T, dtype=x.dtype)
    with torch.no_grad():
        memory = model.memory(x).reshape(-1, E)
        target = model.dec.norm1(x + model.dec._sa_block(x, mask, None, is_causal=True))
    torch.testing.assert_close(q, target.reshape(-1, E))
    assert torch.equal(k, memory) and torch.equal(v, memory)


@pytest.mark.parametrize(
    "kwargs", [{}, {"bias": False}, {"add_bias_kv": True, "add_zero_attn": True}]
)
@pytest.mark.parametrize("need_weights", [False, True])
def test_out_proj_inputs_are_bit_exact(kwargs, need_weights):
    torch.manual_seed(4)
    attention = nn.MultiheadAttention(E, HEADS, **kwargs).double().eval()  # (L, B, E)
    query, key = torch.randn(T, 3, E, dtype=torch.float64), torch.randn(7, 3, E).double()
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, -2:] = True
    call = {"key_padding_mask": padding, "need_weights": need_weights}

    class Call(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = attention

        def forward(self, x):
            return self.attn(x, key, key, **call)[0]

    model = Call()
    (heads,) = captured(model, "attn.out_proj.weight", query)
    with torch.no_grad():
        out, _ = F.multi_head_attention_forward(
            query, key, key, E, HEADS, attention.in_proj_weight, attention.in_proj_bias,
            attention.bias_k, attention.bias_v, attention.add_zero_attn, 0.0,
            attention.out_proj.weight, attention.out_proj.bias, training=False, **call,
        )
    assert torch.equal(attention.out_proj(heads).reshape(out.shape), out)


# --- the model, the carried forward ---------------------------------------------------------
def test_calibration_leaves_no_trace():
    model, x = build(Encoder)
    before = copy.deepcopy(model.state_dict())
    out = model(x)
    y = torch.randint(0, 3, (len(x),))
    result = prune_model(model, "sparsegpt", 0.5, (x, y), settings=[F64])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())
    assert torch.equal(model(x), out)
    loaded = copy.deepcopy(model)
    with torch.no_grad():
        for name, value in result.weights.items():
            loaded.get_parameter(name).copy_(value)
    applied = prune_model(model, "sparsegpt", 0.5, (x, y), settings=[F64], apply=True)
    assert all(torch.equal(applied.weights[n], result.weights[n]) for n in result.weights)
    assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize(
    "make,cached",
    [
        (SelfAttention, True),
        (lambda: SelfAttention(add_bias_kv=True), True),
        (CrossAttention, True),
        (Encoder, False),  # not traceable by torch.fx: the cache gives way
        (Decoder, False),
    ],
)
def test_carried_forward_equals_recomputation(make, cached, allocation):
    model, x = build(make)
    names = list(prunable_parameters(model))
    settings = LayerwiseSettings(dtype="float64", batch_size=8, allocation=allocation)
    recomputed, carried = (
        prune_layerwise(model, names, "sparsegpt", 0.5, x, settings=settings,
                        calibration_cache=cache)
        for cache in (False, True)
    )
    for name in names:
        assert torch.equal(recomputed.weights[name], carried.weights[name]), name
        assert torch.equal(recomputed.mask[name], carried.mask[name]), name
    assert [r.error for r in recomputed.record.layers] == [r.error for r in carried.record.layers]
    assert (carried.record.calibration_cache_bytes > 0) == cached


# --- refusals -------------------------------------------------------------------------------
def test_refusals_name_the_parameter():
    class Custom(nn.MultiheadAttention):
        def forward(self, query, key, value, **kwargs):
            return super().forward(query * 2, key, value, **kwargs)

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = Custom(E, HEADS, batch_first=True)

        def forward(self, x):
            return self.attn(x, x, x)[0]

    x = torch.randn(8, T, E)
    with pytest.raises(ConfigError, match=r"attn \(Custom\).*attn.out_proj.weight"):
        prune_layerwise(Holder(), ["attn.out_proj.weight"], "sparsegpt", 0.5, x)
    with pytest.raises(ConfigError, match="in_proj_bias"):
        prune_layerwise(SelfAttention(), ["attn.in_proj_bias"], "sparsegpt", 0.5, x)


@pytest.mark.filterwarnings("ignore::UserWarning")  # PyTorch's nested-tensor notices
def test_nested_tensors_of_the_encoder_fast_path_are_refused():
    class Padded(nn.Module):
        def __init__(self, nested):
            super().__init__()
            layer = nn.TransformerEncoderLayer(E, HEADS, 32, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=nested)

        def forward(self, x):
            padding = torch.zeros(x.shape[:2], dtype=torch.bool)
            padding[:, -1] = True
            return self.enc(x, src_key_padding_mask=padding)

    torch.manual_seed(0)
    x = torch.randn(8, T, E)
    name = "enc.layers.0.self_attn.in_proj_weight"
    with pytest.raises(ConfigError, match=rf"{name}.*enable_nested_tensor=False"):
        prune_layerwise(Padded(True).eval(), [name], "sparsegpt", 0.5, x)
    result = prune_layerwise(Padded(False).eval(), [name], "sparsegpt", 0.5, x)
    assert result.record.layers[0].removed == 3 * E * E // 2
