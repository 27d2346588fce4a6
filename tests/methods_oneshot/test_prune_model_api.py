"""The one-call API on a user's own module (BatchNorm, biases): exact counts, the model
untouched unless asked, and the same result as assembling the pieces by hand."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.errors import ConfigError
from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot import CBSSettings, FisherSettings, prune_model, prune_one_shot
from prunekit.methods.oneshot.training_loss import weights_loss
from prunekit.second_order import EmpiricalFisher, per_sample_gradients


class UsersNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def users_data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=g), torch.randint(0, 5, (n,), generator=g)


def trained_net():
    torch.manual_seed(0)
    net = UsersNet()
    net.bn.running_mean.uniform_(-0.1, 0.1)  # non-trivial buffers, as after training
    return net.eval()


@pytest.mark.parametrize("method", ["magnitude", "woodfisher", "cbs", "snip+cbs_u"])
def test_exact_count_and_model_untouched(method):
    net = trained_net()
    before = copy.deepcopy(net.state_dict())
    result = prune_model(
        net,
        method,
        0.7,
        users_data(),
        fisher=FisherSettings(samples=60, damp=1e-2),
        settings=[CBSSettings(rmp_trials=2, max_passes=3)],
        samples_per_class=2,
    )
    d = sum(p.numel() for _, p in prunable_parameters(net).items())
    assert result.mask.num_removed == round(0.7 * d) == result.record.removed
    assert set(result.weights) == {"conv.weight", "fc.weight"}  # biases and BN untouched
    for name, value in before.items():
        assert torch.equal(net.state_dict()[name], value)


def test_apply_writes_the_pruned_weights():
    net = trained_net()
    result = prune_model(net, "woodfisher", 0.5, users_data(), apply=True)
    assert result.mask.holds_in(net)
    for name, value in result.weights.items():
        assert torch.equal(net.get_parameter(name), value)


def test_same_result_as_the_pieces_assembled_by_hand():
    net = trained_net()
    x, y = users_data()
    fisher_settings = FisherSettings(samples=80, damp=1e-2)
    result = prune_model(net, "magnitude+cbs_u", 0.6, (x, y), fisher=fisher_settings, seed=3)
    names = list(prunable_parameters(net))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    fisher = EmpiricalFisher(per_sample_gradients(net, names, x[order[:80]], y[order[:80]]), 1e-2)
    by_hand = prune_one_shot(
        net,
        names,
        "magnitude+cbs_u",
        0.6,
        fisher=fisher,
        training_loss=weights_loss(net, names, x[order], y[order]),
    )
    for name in names:
        torch.testing.assert_close(result.weights[name], by_hand.weights[name])


def test_dataloader_and_dataset_are_accepted_and_bad_data_is_refused():
    net = trained_net()
    x, y = users_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    from_loader = prune_model(net, "woodfisher", 0.5, loader, seed=1)
    from_tensors = prune_model(net, "woodfisher", 0.5, (x, y), seed=1)
    assert from_loader.mask.equal(from_tensors.mask)
    with pytest.raises(ConfigError, match="differ in length"):
        prune_model(net, "magnitude", 0.5, (x, y[:10]))
    with pytest.raises(ConfigError, match="only 120 are available"):
        prune_model(net, "woodfisher", 0.5, (x, y), fisher=FisherSettings(samples=500))
    with pytest.raises(ConfigError, match="unknown one-shot selection"):
        prune_model(net, "magnitud", 0.5, (x, y))


def test_unknown_parameter_names_are_refused_naming_the_real_ones():
    net = trained_net()
    with pytest.raises(ConfigError, match="no parameter.*fc9.weight.*conv.weight"):
        prune_one_shot(net, ["fc9.weight"], "magnitude", 0.5)


def test_a_fisher_too_large_is_refused_before_any_gradient(monkeypatch):
    # the global second-order methods hold m × d gradients: past the memory they stop
    # at once with the figure and the way out (a layer-wise method), not in an allocator
    from prunekit.errors import ResourceError
    from prunekit.methods.oneshot import evidence, layerwise
    from prunekit.second_order import fisher as fisher_module

    net, (x, y) = UsersNet(), users_data(1200)
    d = sum(net.get_parameter(n).numel() for n in prunable_parameters(net))
    g_bytes = 1000 * d * 4  # G of m = 1,000 float32 gradients: 3.0 MB
    monkeypatch.setattr(fisher_module, "available_memory_bytes", lambda device="cpu": g_bytes)
    monkeypatch.setattr(layerwise, "available_memory_bytes", lambda device="cpu": g_bytes)
    for name in ("per_sample_gradients", "minibatch_gradients"):
        monkeypatch.setattr(evidence, name, lambda *a, **k: pytest.fail("gradients computed"))
    with pytest.raises(ResourceError, match=r"m = 1,000 gradients .*layer-wise method"):
        prune_model(net, "cbs", 0.5, (x, y), fisher=FisherSettings(samples=1000))
    prune_model(net, "sparsegpt", 0.5, (x, y))  # the layer-wise way still fits
