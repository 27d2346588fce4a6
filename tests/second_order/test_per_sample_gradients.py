import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError
from prunekit.second_order.gradients import (
    gradients_from_batches,
    minibatch_gradients,
    per_sample_gradients,
)

NAMES = ["0.weight", "4.weight", "4.bias"]


def make_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 5 * 5, 4),
    ).double()
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    model.train()
    return model


def make_data(n):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2, 5, 5, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (n,), generator=generator)
    return x, y


def backward_gradient(model, x, y):
    """Reference: one ordinary backward pass in eval mode, flattened in NAMES order."""
    model.eval()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    params = dict(model.named_parameters())
    return torch.cat([params[name].grad.reshape(-1) for name in NAMES])


def test_per_sample_gradients_match_backward_loop():
    model, (x, y) = make_model(), make_data(7)
    grads = per_sample_gradients(model, NAMES, x, y, chunk_size=3)
    assert model.training and model[1].training  # mode restored
    expected = torch.stack([backward_gradient(model, x[n : n + 1], y[n : n + 1]) for n in range(7)])
    assert grads.shape == (7, 3 * 2 * 9 + 4 * 75 + 4)
    torch.testing.assert_close(grads, expected)


def test_minibatch_gradients_are_mean_gradients_with_short_last_batch():
    model, (x, y) = make_model(), make_data(7)
    grads = minibatch_gradients(model, NAMES, x, y, batch_size=3, chunk_size=4)
    expected = torch.stack(
        [backward_gradient(model, x[s : s + 3], y[s : s + 3]) for s in range(0, 7, 3)]
    )
    torch.testing.assert_close(grads, expected)


def test_gradients_from_batches():
    model, (x, y) = make_model(), make_data(8)
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    per_sample = gradients_from_batches(model, NAMES, batches, max_rows=6)
    torch.testing.assert_close(per_sample, per_sample_gradients(model, NAMES, x[:6], y[:6]))
    per_batch = gradients_from_batches(model, NAMES, batches, per_sample=False)
    expected = torch.stack([backward_gradient(model, bx, by) for bx, by in batches])
    torch.testing.assert_close(per_batch, expected)


def test_unknown_parameter_name():
    model, (x, y) = make_model(), make_data(2)
    with pytest.raises(ConfigError, match="nope"):
        per_sample_gradients(model, ["nope"], x, y)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_weight_major_gradients_are_the_same_matrix_held_per_weight(batch_size):
    # G as the transpose of a contiguous (d, n) array: the same values, and the Fisher
    # built on it makes no copy for its per-weight readers
    from prunekit.second_order import EmpiricalFisher

    model, (x, y) = make_model(), make_data(7)
    rows = minibatch_gradients(model, NAMES, x, y, batch_size=batch_size, chunk_size=2)
    held = minibatch_gradients(
        model, NAMES, x, y, batch_size=batch_size, chunk_size=2, weight_major=True
    )
    assert torch.equal(held, rows) and held.T.is_contiguous()
    fisher = EmpiricalFisher(held, 1e-2, dtype=torch.float64)
    assert fisher.grads.T.data_ptr() == held.T.data_ptr()
    every = torch.ones(held.shape[1], dtype=torch.bool)
    assert fisher.restricted_transposed(every) is fisher
