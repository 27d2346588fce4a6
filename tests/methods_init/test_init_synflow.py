import copy

import pytest
import torch
from torch import nn

from prunekit.methods.init import synflow_scores


def test_matches_closed_form_path_products(relu_mlp_nobias):
    model = relu_mlp_nobias()
    w1, w2, w3 = (m.weight.detach().abs() for m in model if isinstance(m, nn.Linear))
    # R = 1ᵀ |W3||W2||W1| 1 and ∂R/∂|W_l|[i, j] = (1ᵀ Π_{>l})_i (Π_{<l} 1)_j
    expected = {
        "0.weight": w1 * torch.outer(torch.ones(3).double() @ w3 @ w2, torch.ones(6).double()),
        "2.weight": w2 * torch.outer(torch.ones(3).double() @ w3, w1 @ torch.ones(6).double()),
        "4.weight": w3 * torch.outer(torch.ones(3).double(), w2 @ w1 @ torch.ones(6).double()),
    }
    scores = synflow_scores(model, (6,))
    assert scores.remove == "lowest"
    for name, value in expected.items():
        torch.testing.assert_close(scores.values[name], value)


def test_conservation_at_every_hidden_neuron(relu_mlp_nobias):
    model = relu_mlp_nobias(seed=4)
    s = synflow_scores(model, (6,)).values
    # incoming weights of hidden neuron j are row j of W_l, outgoing are column j of W_{l+1}
    torch.testing.assert_close(s["0.weight"].sum(1), s["2.weight"].sum(0))
    torch.testing.assert_close(s["2.weight"].sum(1), s["4.weight"].sum(0))
    # and every layer carries the same total flow R
    totals = [float(v.sum()) for v in s.values()]
    assert totals == pytest.approx([totals[0]] * 3, rel=1e-12)


def test_batch_norm_uses_running_stats_and_model_unchanged(tanh_bn_convnet, model_state):
    snapshot, assert_unchanged = model_state
    model = tanh_bn_convnet().train()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    before = snapshot(model)
    scores = synflow_scores(model, (2, 5, 5))
    assert_unchanged(model, before)

    # independent: an abs'd float64 copy in eval mode, ones input, backward
    ref = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for tensor in ref.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    ref(torch.ones(1, 2, 5, 5, dtype=torch.float64)).sum().backward()
    for name, value in scores.values.items():
        param = ref.get_parameter(name)
        torch.testing.assert_close(value, (param * param.grad).abs())


def test_double_by_default_and_float32_option(relu_mlp_nobias):
    model = relu_mlp_nobias().float()
    assert synflow_scores(model, (6,)).values["0.weight"].dtype == torch.float64
    assert synflow_scores(model, (6,), double=False).values["0.weight"].dtype == torch.float32
