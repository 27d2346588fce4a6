"""The carried forward of sequential calibration (``ForwardCache``): bit-identical to
rerunning the forward for every layer, on chains, residual blocks, tokens and grouped
convs, with both allocations; every layer runs once per batch; it gives way to the
recomputation where it cannot replay the forward exactly or would not fit."""

import pytest
import torch
from torch import nn

from prunekit.methods.oneshot import LayerwiseSettings, prune_layerwise
from prunekit.methods.oneshot.calibration import ForwardCache, forward_plan, pruned_layer
from prunekit.models import create_model

SETTINGS = LayerwiseSettings(batch_size=8)


def weight_names(model):
    return [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]


def both(model, x, method="sparsegpt", sparsity=0.7, **kwargs):
    settings = kwargs.pop("settings", SETTINGS)
    names = weight_names(model)
    out = [
        prune_layerwise(
            model, names, method, sparsity, x, settings=settings, calibration_cache=cache,
            **kwargs,
        )
        for cache in (False, True)
    ]
    return out


def assert_identical(recomputed, cached):
    assert recomputed.weights.keys() == cached.weights.keys()
    for name in recomputed.weights:
        assert torch.equal(recomputed.weights[name], cached.weights[name]), name
        assert torch.equal(recomputed.mask[name], cached.mask[name]), name
    assert [r.error for r in recomputed.record.layers] == [r.error for r in cached.record.layers]


def grouped_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 6, 1),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5),
    )


CASES = {
    "lenet5_caffe": lambda: (create_model("lenet5_caffe"), torch.randn(20, 1, 28, 28)),
    "resnet20": lambda: (create_model("resnet20"), torch.randn(12, 3, 32, 32)),
    "vit": lambda: (create_model("vit"), torch.randn(12, 1, 28, 28)),
    "grouped_cnn": lambda: (grouped_cnn(), torch.randn(20, 4, 8, 8)),
}


@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_forward_is_bit_identical(case, allocation):
    torch.manual_seed(1)
    model, x = CASES[case]()
    settings = LayerwiseSettings(batch_size=8, allocation=allocation)
    recomputed, cached = both(model.eval(), x, settings=settings)
    assert_identical(recomputed, cached)
    assert recomputed.record.calibration_cache_bytes == 0
    assert cached.record.calibration_cache_bytes > 0


def test_cached_forward_with_bn_recalibration_and_nm():
    torch.manual_seed(2)
    model, x = create_model("resnet20").eval(), torch.randn(12, 3, 32, 32)
    settings = LayerwiseSettings(batch_size=8, bn_recalibration=True)
    recomputed, cached = both(model, x, method="sparsegpt", sparsity=None, pattern="2:4",
                              settings=settings)
    assert_identical(recomputed, cached)
    for name, value in recomputed.buffers.items():
        assert torch.equal(value, cached.buffers[name])


class CountingLinear(nn.Linear):
    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


def chain(depth=6, width=10):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [CountingLinear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


def test_every_layer_runs_once_per_batch():
    model, x = chain(), torch.randn(24, 10)  # 3 batches of 8
    names = weight_names(model)
    counts = {}
    for cache in (False, True):
        CountingLinear.calls = 0
        prune_layerwise(model, names, "sparsegpt", 0.5, x, settings=SETTINGS,
                        calibration_cache=cache)
        counts[cache] = CountingLinear.calls
    plan_forward = 6 * 1  # forward_plan: one batch through all six layers
    assert counts[True] == plan_forward + 5 * 3  # the last layer's call is never needed
    assert counts[False] == plan_forward + sum(range(6)) * 3  # layers before each one


class Shared(nn.Module):
    """One Linear called twice: its H sees both calls, the cache does not apply."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.inner(torch.relu(self.inner(x))))


class DataDependent(nn.Module):
    """Control flow on the data: not traceable."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        h = self.a(x)
        if h.sum() > 0:
            h = h * 2
        return self.b(h)


def hooked():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 3)))
    model[1].register_forward_hook(lambda _m, _i, out: out * 0.5)
    return model


@pytest.mark.parametrize("make", [Shared, DataDependent, hooked])
def test_falls_back_where_it_cannot_replay(make):
    torch.manual_seed(3)
    model, x = make(), torch.randn(20, 6)
    recomputed, cached = both(model, x, sparsity=0.5)
    assert_identical(recomputed, cached)
    assert cached.record.calibration_cache_bytes == 0


def test_build_refuses_a_layer_called_twice():
    model = Shared()
    layers = [pruned_layer(model, n) for n in weight_names(model)]
    plan = forward_plan(model, layers, torch.randn(4, 6))
    assert ForwardCache.build(model, plan, [torch.randn(4, 6)]) is None


def test_gives_way_when_it_would_not_fit():
    model, x = create_model("lenet5_caffe").eval(), torch.randn(20, 1, 28, 28)
    loose = both(model, x, settings=LayerwiseSettings(batch_size=8))[1]
    # room for the layers' own peak and a few bytes more: not for the carried values
    limit = (loose.record.peak_memory_bytes + 64) / 2**30
    recomputed, cached = both(
        model, x, settings=LayerwiseSettings(batch_size=8, memory_limit_gb=limit)
    )
    assert_identical(recomputed, cached)
    assert cached.record.calibration_cache_bytes == 0
    assert_identical(loose, cached)
