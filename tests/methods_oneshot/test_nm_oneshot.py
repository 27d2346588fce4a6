"""One-shot pruning to an N:M pattern: every method keeps exactly N of every M inputs of
each row (layers the pattern does not fit stay dense), CBS-S's search stays within the
groups and never raises its objective, and the updates keep the removed weights zero."""

import pytest
import torch
from test_prune_model_api import trained_net, users_data

from prunekit.errors import ConfigError
from prunekit.masks import check_nm, nm_groups
from prunekit.methods.oneshot import CBSSettings, FisherSettings, prune_model
from prunekit.second_order import SwapState, cbs_select

FISHER = FisherSettings(samples=60, damp=1e-2)


@pytest.mark.parametrize("method", ["magnitude", "woodfisher", "cbs", "snip", "snip+cbs_u"])
@pytest.mark.parametrize("pattern", ["2:4", "1:4"])
def test_every_method_gives_the_exact_pattern(method, pattern):
    net = trained_net()  # conv 1·3·3 = 9 inputs: stays dense; fc 144 inputs: patterned
    result = prune_model(
        net,
        method,
        None,
        users_data(),
        pattern=pattern,
        fisher=FISHER,
        settings=[CBSSettings(max_passes=4)],
        samples_per_class=2,
    )
    n, m = map(int, pattern.split(":"))
    assert check_nm(result.mask, n, m)
    assert bool(result.mask["conv.weight"].all()), "a layer the pattern does not fit is dense"
    assert result.mask.num_removed == result.record.removed == 5 * 144 * (m - n) // m
    for name, kept in result.mask.items():
        assert torch.all(result.weights[name][~kept] == 0)


def test_a_sparsity_that_disagrees_with_the_pattern_is_refused():
    with pytest.raises(ConfigError, match="2:4 pattern removes"):
        prune_model(trained_net(), "magnitude", 0.9, users_data(), pattern="2:4")
    with pytest.raises(ConfigError, match="N:M"):
        prune_model(trained_net(), "l0", None, users_data(), pattern="2:4", fisher=FISHER)


def test_group_search_keeps_the_pattern_and_lowers_the_objective():
    torch.manual_seed(0)
    shapes = [(6, 8), (3, 12)]
    d = 6 * 8 + 3 * 12
    w, grads = torch.randn(d, dtype=torch.float64), torch.randn(30, d, dtype=torch.float64)
    groups = nm_groups(shapes, 4)
    start = torch.zeros(d, dtype=torch.bool)
    for g in range(int(groups.max()) + 1):  # remove the first two of every group
        start[(groups == g).nonzero().flatten()[:2]] = True
    result = cbs_select(w, grads, start, groups=groups, swap_threshold=0.0)
    before, after = SwapState(w, grads, start).loss(), SwapState(w, grads, result.removed).loss()
    assert after <= before
    for g in range(int(groups.max()) + 1):
        assert int(result.removed[groups == g].sum()) == 2
    # no single within-group swap improves the result (a local optimum of the search)
    state = SwapState(w, grads, result.removed.clone())
    for i in result.removed.nonzero().flatten().tolist():
        kept = ((groups == groups[i]) & ~state.removed).nonzero().flatten()
        assert float(state.swap_delta(i, kept).min()) > -1e-9
