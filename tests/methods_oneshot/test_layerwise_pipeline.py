"""Layer-wise pruning from a model and data to the solvers: exact counts for every
allocation, Linear on 3-D inputs, grouped and depthwise convolutions, sequential
calibration, fixed removals, N:M, the memory check, prune_model on a user's own module,
multi-stage and the ``prunekit prune`` command."""

import json
import math
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError, ResourceError
from prunekit.masks import check_nm, count_to_remove
from prunekit.masks.ranking import layerwise_counts
from prunekit.methods.oneshot import (
    FisherSettings,
    LayerwiseSettings,
    get_method,
    prune_layerwise,
    prune_model,
    prune_one_shot,
)
from prunekit.methods.oneshot import evidence as evidence_module
from prunekit.methods.oneshot.calibration import accumulate_inputs, pruned_layer
from prunekit.methods.oneshot.multistage import StageSettings, prune_in_stages
from prunekit.second_order.layerwise import HessianAccumulator, layer_error, layer_saliency

METHODS = ["lw_magnitude", "obc", "sparsegpt", "lw_l0"]
F64 = LayerwiseSettings(dtype="float64", batch_size=32)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(12, 17), nn.ReLU(), nn.Linear(17, 9), nn.ReLU(), nn.Linear(9, 5)
    ).double()


def grouped_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),  # depthwise
        nn.ReLU(),
        nn.Conv2d(8, 6, 1),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5),
    ).double()


def weight_names(model):
    return [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]


class Attention(nn.Module):
    """Multi-head self-attention with its own q, k, v and output Linear layers."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        b, t, d = x.shape

        def split(y):
            return y.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """A pre-norm transformer block and a classifier on the mean token."""

    def __init__(self, dim=16, heads=4, classes=5):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return self.head(x.mean(1))


def removed_per_layer(result, names):
    return [int((~result.mask[n]).sum()) for n in names]


# --- registry -----------------------------------------------------------------------------
def test_layerwise_methods_resolve_without_a_fisher():
    for name in METHODS:
        spec = get_method(name)
        assert spec.layerwise and not spec.needs_fisher and spec.name == name
    assert not get_method("woodfisher").layerwise
    with pytest.raises(ConfigError, match="own weight update"):
        get_method("sparsegpt+cbs_u")
    model = mlp()
    with pytest.raises(ConfigError, match="layer-wise method"):
        prune_one_shot(model, weight_names(model), "sparsegpt", 0.5)
    with pytest.raises(ConfigError, match="not a layer-wise method"):
        prune_layerwise(model, weight_names(model), "woodfisher", 0.5, torch.randn(8, 12))


# --- counts -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_uniform_counts_are_exact_per_layer_and_in_total(method):
    model, x = mlp(), torch.randn(96, 12, dtype=torch.float64)
    names = weight_names(model)
    sizes = [model.get_parameter(n).numel() for n in names]
    result = prune_layerwise(model, names, method, 0.37, x, settings=F64)
    assert removed_per_layer(result, names) == layerwise_counts(0.37, sizes)
    assert (
        result.record.removed
        == count_to_remove(0.37, sum(sizes))
        == sum(removed_per_layer(result, names))
    )
    for n in names:
        assert bool((result.weights[n][~result.mask[n]] == 0).all())
    assert [r.removed for r in result.record.layers] == removed_per_layer(result, names)
    # the model is not changed
    assert bool((mlp().get_parameter(names[0]) == model.get_parameter(names[0])).all())


def dense_saliency_counts(model, names, x, damp, sparsity=0.6, min_density=0.0):
    """Per-layer counts of the global allocation, computed independently: each layer's
    H from the dense network's inputs to it; the global order walked weight by weight,
    a layer skipped once it keeps only its floor max(1, ⌊min_density·(1 − s)·d_ℓ⌋)."""
    inputs = {}
    hooks = [
        model.get_submodule(n.rpartition(".")[0]).register_forward_pre_hook(
            lambda _m, args, n=n: inputs.__setitem__(n, args[0].detach())
        )
        for n in names
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    scores = []
    for n in names:
        X = inputs[n]
        H = 2 * X.T @ X / X.shape[0]
        scores.append(layer_saliency(model.get_parameter(n).detach(), H, damp).double().flatten())
    flat = torch.cat(scores)
    layer_of = torch.cat([torch.full((s.numel(),), i) for i, s in enumerate(scores)])
    sizes = [s.numel() for s in scores]
    caps = [
        d - (max(1, math.floor(min_density * (1 - sparsity) * d)) if min_density else 0)
        for d in sizes
    ]
    counts, k = [0] * len(sizes), count_to_remove(sparsity, flat.numel())
    for index in torch.sort(flat, stable=True).indices.tolist():
        if sum(counts) == k:
            break
        if counts[layer_of[index]] < caps[layer_of[index]]:
            counts[layer_of[index]] += 1
    return counts


def test_global_allocation_follows_the_dense_saliency_ranking():
    model, x = mlp(), torch.randn(128, 12, dtype=torch.float64)
    names = weight_names(model)
    settings = LayerwiseSettings(dtype="float64", batch_size=32, min_layer_density=0.0)
    result = prune_layerwise(
        model, names, "sparsegpt", 0.6, x, settings=settings, allocation="global"
    )
    expected = dense_saliency_counts(model, names, x, F64.damp)
    assert removed_per_layer(result, names) == expected
    assert sum(expected) == count_to_remove(0.6, sum(p.numel() for p in result.weights.values()))
    assert result.record.allocation == "global"
    uniform = layerwise_counts(0.6, [model.get_parameter(n).numel() for n in names])
    assert expected != uniform  # the test tells the two apart


def test_global_allocation_keeps_every_layers_floor():
    # a wide first layer of low-saliency weights: unfloored, the global ranking removes
    # it whole at 0.95 (the MLPNet collapse); with the floor it keeps ⌊0.25·0.05·d⌋
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(200, 4), nn.ReLU(), nn.Linear(4, 25), nn.ReLU(), nn.Linear(25, 3)
    ).double()
    x = torch.randn(64, 200, dtype=torch.float64)
    names = weight_names(model)
    unfloored = dense_saliency_counts(model, names, x, F64.damp, 0.95)
    assert unfloored[0] == 800  # the test case collapses without the floor
    for density in (0.0, 0.25, 1.0):
        settings = LayerwiseSettings(dtype="float64", batch_size=32, min_layer_density=density)
        result = prune_layerwise(
            model, names, "sparsegpt", 0.95, x, settings=settings, allocation="global"
        )
        expected = dense_saliency_counts(model, names, x, F64.damp, 0.95, density)
        assert removed_per_layer(result, names) == expected
        assert sum(expected) == count_to_remove(0.95, 975)
        if density:
            floor = max(1, math.floor(density * 0.05 * 800))
            assert expected[0] == 800 - floor  # the floor binds on the wide layer
    with pytest.raises(ConfigError, match="min_layer_density"):
        LayerwiseSettings(min_layer_density=1.5)


def test_explicit_per_layer_targets():
    model, x = mlp(), torch.randn(64, 12, dtype=torch.float64)
    names = weight_names(model)
    settings = LayerwiseSettings(dtype="float64", layer_sparsities={"0.weight": 0.8})
    result = prune_layerwise(model, names, "obc", 0.3, x, settings=settings)
    sizes = [model.get_parameter(n).numel() for n in names]
    assert removed_per_layer(result, names) == [
        count_to_remove(0.8, sizes[0]),
        count_to_remove(0.3, sizes[1]),
        count_to_remove(0.3, sizes[2]),
    ]
    assert result.record.allocation == "explicit"
    with pytest.raises(ConfigError, match="not pruned"):
        prune_layerwise(model, names, "obc", 0.3, x, allocation={"nope.weight": 0.5})


# --- layer types --------------------------------------------------------------------------
def test_grouped_and_depthwise_convs_match_their_reconstruction_error():
    """Each layer's reported error is ‖conv(X_in, W − Ŵ)‖²/N with X_in the input from the
    already pruned earlier layers: unfolding, groups and sequential calibration at once."""
    model = grouped_cnn()
    x = torch.randn(24, 4, 8, 8, dtype=torch.float64)
    names = weight_names(model)
    result = prune_layerwise(model, names, "sparsegpt", 0.5, x, settings=F64)
    pruned = grouped_cnn()
    with torch.no_grad():
        for n, value in result.weights.items():
            pruned.get_parameter(n).copy_(value)
    layer_input = x
    for index, name, report in zip((0, 2, 4), names, result.record.layers, strict=False):
        conv = model[index]
        delta = conv.weight.detach() - result.weights[name]
        out = F.conv2d(layer_input, delta, None, conv.stride, conv.padding, 1, conv.groups)
        rows = out.shape[0] * out.shape[2] * out.shape[3]
        assert report.error == pytest.approx(float((out**2).sum()) / rows, rel=1e-6)
        assert report.blocks == conv.groups and report.calibration_rows == rows
        # each group loses its share of the layer's count
        groups = (~result.mask[name]).reshape(conv.groups, -1).sum(1)
        assert int(groups.max() - groups.min()) <= 1
        layer_input = pruned[: index + 2](x).detach()
    assert result.record.removed == count_to_remove(
        0.5, sum(p.numel() for p in result.weights.values())
    )


def test_linear_layers_on_token_inputs_of_a_transformer_block():
    torch.manual_seed(0)
    model = Block().double()
    x = torch.randn(10, 7, 16, dtype=torch.float64)
    names = weight_names(model)
    result = prune_layerwise(model, names, "sparsegpt", 0.5, x, settings=F64)
    order = [r.name for r in result.record.layers]
    assert order == names  # reports in the order of the names
    q = result.record.layers[names.index("attention.q.weight")]
    X = model.norm1(x).reshape(-1, 16).detach()  # the first layer: dense inputs
    delta = model.attention.q.weight.detach() - result.weights["attention.q.weight"]
    assert q.calibration_rows == 70
    assert q.error == pytest.approx(float(((X @ delta.T) ** 2).sum()) / 70, rel=1e-6)


def test_a_layer_the_forward_never_calls_is_named():
    class Spare(nn.Sequential):
        def __init__(self):
            super().__init__(nn.Linear(4, 4), nn.Linear(4, 4))
            self.spare = nn.Linear(4, 4)

        def forward(self, x):
            return self[1](self[0](x))

    model = Spare()
    with pytest.raises(ConfigError, match="spare.weight"):
        prune_layerwise(model, ["0.weight", "spare.weight"], "sparsegpt", 0.5, torch.randn(8, 4))
    with pytest.raises(ConfigError, match="Linear and Conv2d"):
        prune_layerwise(model, ["0.bias"], "sparsegpt", 0.5, torch.randn(8, 4))


# --- sequential calibration ---------------------------------------------------------------
def hessian_of(model, name, x):
    layer = pruned_layer(model, name)
    accumulator = HessianAccumulator(layer.d_in, dtype=torch.float64)
    accumulate_inputs(model, layer, [x], [accumulator], calls=1)
    return accumulator.hessian


def test_layer_two_is_calibrated_on_the_pruned_layer_one():
    model, x = mlp(), torch.randn(80, 12, dtype=torch.float64)
    names = weight_names(model)
    result = prune_layerwise(model, names[:2], "sparsegpt", 0.6, x, settings=F64)
    dense_h = hessian_of(model, names[1], x)
    after_first = mlp()
    with torch.no_grad():
        after_first.get_parameter(names[0]).copy_(result.weights[names[0]])
    sequential_h = hessian_of(after_first, names[1], x)
    assert not torch.allclose(dense_h, sequential_h)  # pruning layer 1 changed layer 2's H
    W2, W2_hat = model.get_parameter(names[1]).detach(), result.weights[names[1]]
    reported = result.record.layers[1].error
    assert reported == pytest.approx(float(layer_error(W2, W2_hat, sequential_h)), rel=1e-9)
    assert reported != pytest.approx(float(layer_error(W2, W2_hat, dense_h)), rel=1e-6)


# --- fixed removals, N:M, errors ----------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_fixed_removals_stay_removed(method, allocation):
    model, x = mlp(1), torch.randn(64, 12, dtype=torch.float64)
    names = weight_names(model)
    flat = torch.cat([model.get_parameter(n).detach().flatten() for n in names])
    fixed = torch.rand(flat.numel(), generator=torch.Generator().manual_seed(3)) < 0.2
    with torch.no_grad():  # an earlier stage's removals are zero in the model
        start = 0
        for n in names:
            p = model.get_parameter(n)
            p.view(-1)[fixed[start : start + p.numel()]] = 0.0
            start += p.numel()
    result = prune_layerwise(
        model, names, method, 0.5, x, settings=F64, allocation=allocation, fixed_removed=fixed
    )
    removed = torch.cat([~result.mask[n].flatten() for n in names])
    assert bool(removed[fixed].all())
    assert int(removed.sum()) == count_to_remove(0.5, flat.numel())
    with pytest.raises(ConfigError, match="already removed"):
        prune_layerwise(model, names, method, 0.1, x, settings=F64, fixed_removed=fixed)


@pytest.mark.parametrize("method", METHODS)
def test_fixed_removals_hold_where_the_solver_would_keep_them(method):
    """Fixed removals on the largest weights (which every solver keeps): the solver's
    removals are merged with them and the count restored, per N:M group with a pattern."""
    model, x = mlp(2), torch.randn(64, 12, dtype=torch.float64)
    names = weight_names(model)
    flat = torch.cat([model.get_parameter(n).detach().flatten() for n in names])
    fixed = torch.zeros(flat.numel(), dtype=torch.bool)
    fixed[torch.argsort(flat.abs(), descending=True)[:30]] = True
    result = prune_layerwise(model, names, method, 0.5, x, settings=F64, fixed_removed=fixed)
    removed = torch.cat([~result.mask[n].flatten() for n in names])
    assert bool(removed[fixed].all()) and int(removed.sum()) == count_to_remove(0.5, flat.numel())
    assert all(bool((result.weights[n][~result.mask[n]] == 0).all()) for n in names)
    assert math.isfinite(result.record.reconstruction_error)
    # N:M: one fixed removal in every group of 4 of the first layer, on its largest weight
    first = model.get_parameter(names[0]).detach()
    groups = first.abs().reshape(-1, 4)
    nm_fixed = torch.zeros_like(groups, dtype=torch.bool)
    nm_fixed[torch.arange(len(groups)), groups.argmax(1)] = True
    fixed = torch.cat(
        [nm_fixed.flatten(), torch.zeros(flat.numel() - first.numel(), dtype=torch.bool)]
    )
    result = prune_layerwise(
        model, names[:1] + names[2:], method, None, x, settings=F64, pattern="2:4",
        fixed_removed=torch.cat([fixed[: first.numel()], fixed[-45:]]),
    )  # fmt: skip
    assert check_nm(result.mask, 2, 4)
    assert bool((~result.mask[names[0]]).flatten()[nm_fixed.flatten()].all())


def test_nm_pattern_goes_through_the_solvers():
    model, x = grouped_cnn(), torch.randn(16, 4, 8, 8, dtype=torch.float64)
    names = weight_names(model)
    result = prune_layerwise(model, names, "sparsegpt", None, x, settings=F64, pattern="2:4")
    assert check_nm(result.mask, 2, 4)
    assert bool(result.mask["2.weight"].all())  # depthwise rows of 9 inputs stay dense
    with pytest.raises(ConfigError, match="uniform"):
        prune_layerwise(model, names, "sparsegpt", None, x, pattern="2:4", allocation="global")


def test_memory_refusal_names_the_layer_and_the_figure():
    model = grouped_cnn()
    settings = LayerwiseSettings(memory_limit_gb=1e-6)
    x = torch.randn(8, 4, 8, 8, dtype=torch.float64)
    with pytest.raises(ResourceError, match=r"layer-wise pruning of \S+weight .*GiB"):
        prune_layerwise(model, weight_names(model), "sparsegpt", 0.5, x, settings=settings)
    result = prune_layerwise(model, weight_names(model), "sparsegpt", 0.5, x, settings=F64)
    assert result.record.peak_memory_bytes > 0 and result.record.peak_memory_layer


def test_memory_estimate_counts_the_solvers_workspace():
    # OBC holds one H⁻¹ copy per row of a chunk (float64 d_in × d_in each), lw_l0 its
    # backsolve systems: the estimate adds them to the shared Hessian/batch figure
    model, x = mlp(), torch.randn(64, 12, dtype=torch.float64)
    names = weight_names(model)
    peaks = {
        method: prune_layerwise(model, names, method, 0.5, x, settings=F64).record
        for method in ("sparsegpt", "obc", "lw_l0", "lw_magnitude")
    }
    base = peaks["sparsegpt"].peak_memory_bytes
    assert peaks["lw_magnitude"].peak_memory_bytes == base
    # layer 1 (17 rows, d_in 12) vs layer 2 (9 rows, d_in 17): 17·12² < 9·17², so the
    # workspace makes the second layer the peak for OBC
    obc = peaks["obc"]
    assert obc.peak_memory_layer == "2.weight"
    assert obc.peak_memory_bytes >= 8 * 9 * 17 * 17 and obc.peak_memory_bytes > base
    assert peaks["lw_l0"].peak_memory_bytes >= 2 * 8 * 9 * 17 * 17
    limit = (base + 8 * 9 * 17 * 17 / 2) / 2**30  # fits sparsegpt, not OBC's copies
    settings = LayerwiseSettings(dtype="float64", batch_size=32, memory_limit_gb=limit)
    prune_layerwise(model, names, "sparsegpt", 0.5, x, settings=settings)
    with pytest.raises(ResourceError, match="layer-wise pruning of 2.weight"):
        prune_layerwise(model, names, "obc", 0.5, x, settings=settings)


@pytest.mark.parametrize("model_fn", [mlp, grouped_cnn])
def test_second_order_errors_never_above_magnitude(model_fn):
    model = model_fn()
    x = torch.randn(48, *((12,) if model_fn is mlp else (4, 8, 8)), dtype=torch.float64)
    first = weight_names(model)[:1]  # one layer: every method sees the same H
    errors = {
        m: prune_layerwise(model, first, m, 0.6, x, settings=F64).record.reconstruction_error
        for m in METHODS
    }
    for method in ("obc", "sparsegpt", "lw_l0"):
        assert errors[method] <= errors["lw_magnitude"] * (1 + 1e-9), errors


# --- prune_model on a user's own module ---------------------------------------------------
class BnCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("make", [Block, BnCnn])
def test_prune_model_on_a_users_module(make, monkeypatch):
    torch.manual_seed(0)
    model = make()
    shape = (7, 16) if make is Block else (3, 8, 8)
    x, y = torch.randn(64, *shape), torch.randint(0, 4, (64,))
    monkeypatch.setattr(  # no Fisher is formed for a layer-wise method
        evidence_module, "estimate_fisher", lambda *a, **k: pytest.fail("a Fisher was formed")
    )
    result = prune_model(model, "sparsegpt", 0.5, (x, y), apply=True)
    d = sum(model.get_parameter(n).numel() for n in result.mask)
    assert result.record.removed == count_to_remove(0.5, d)
    assert result.record.calibration_samples == 64  # min(1024, n) when not asked
    assert (
        sum(int((model.get_parameter(n) == 0).sum()) for n in result.mask) >= result.record.removed
    )
    assert torch.isfinite(model(x)).all()


def test_batchnorm_recalibration_is_recorded_and_applied():
    torch.manual_seed(0)
    model = BnCnn()
    model.train()
    x, y = torch.randn(64, 3, 8, 8), torch.randint(0, 4, (64,))
    with torch.no_grad():
        model(x)  # running statistics away from their defaults
    model.eval()
    settings = [LayerwiseSettings(calibration_samples=48, bn_recalibration=True)]
    result = prune_model(model, "obc", 0.5, (x, y), settings=settings, apply=True)
    assert result.record.bn_recalibrated and result.record.calibration_samples == 48
    assert set(result.buffers) >= {"bn1.running_mean", "bn2.running_var"}
    assert torch.equal(model.bn2.running_var, result.buffers["bn2.running_var"])
    with pytest.raises(ConfigError, match="calibration"):
        prune_model(model, "obc", 0.5, (x, y), settings=[LayerwiseSettings(calibration_samples=65)])


def test_layerwise_in_stages_keeps_earlier_removals():
    model, x = mlp(), torch.randn(96, 12, dtype=torch.float64)
    y = torch.randint(0, 5, (96,))
    names = weight_names(model)
    staged = prune_in_stages(
        model,
        names,
        "sparsegpt",
        0.8,
        torch.utils.data.TensorDataset(x, y),
        stages=StageSettings(count=3),
        fisher=FisherSettings(samples=8),
        loss_samples=32,
        settings=[LayerwiseSettings(calibration_samples=64, dtype="float64")],
    )
    counts = [s.removed for s in staged.stages]
    assert counts == sorted(counts) and counts[-1] == count_to_remove(0.8, 12 * 17 + 17 * 9 + 45)
    assert staged.result.record.removed == counts[-1]


# --- the command line ---------------------------------------------------------------------
def idx_file(path, array):
    head = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(head + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def test_prune_command_with_layerwise_methods(tmp_path):
    from prunekit.cli.main import main
    from prunekit.models import create_model

    rng = np.random.default_rng(0)
    data = tmp_path / "mnist"
    data.mkdir()
    for prefix, n in (("train", 80), ("t10k", 20)):
        idx_file(data / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        idx_file(data / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    torch.manual_seed(0)
    checkpoint = tmp_path / "mlpnet.pt"
    torch.save(create_model("mlpnet").state_dict(), checkpoint)
    run_dir = tmp_path / "run"
    args = ["prune", "--model", "mlpnet", "--dataset", "mnist", "--data-dir", str(data),
            "--checkpoint", str(checkpoint), "--methods", "sparsegpt", "lw_magnitude",
            "--sparsities", "0.5", "--validation-size", "16", "--no-progress",
            "--layerwise-calibration-samples", "48", "--run-dir", str(run_dir)]  # fmt: skip
    assert main(args) == 0
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} == {"sparsegpt", "lw_magnitude"}
    for record in records:
        assert record["removed"] == count_to_remove(0.5, record["prunable"])
        assert record["calibration_samples"] == 48 and record["fisher_samples_used"] is None
        assert math.isfinite(record["top1"]) and len(record["layers"]) == 3
    folder = run_dir / "sparsegpt" / "sparsity-0.5" / "seed-0"
    (cell,) = folder.glob("settings-*")
    settings = json.loads((cell / "settings.json").read_text())["settings"]
    assert settings["layerwise"]["calibration_samples"] == 48 and "fisher" not in settings
    # the layer-wise settings are part of the cell's hash
    assert main([*args, "--layerwise-damp", "0.05"]) == 0
    assert len(list(folder.glob("settings-*"))) == 2
