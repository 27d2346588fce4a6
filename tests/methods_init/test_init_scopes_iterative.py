import dataclasses
import math

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.masks import Mask, count_to_remove, exponential_schedule, scores_to_mask
from prunekit.methods.init import (
    INIT_METHODS,
    get_init_method,
    prune_iteratively,
    random_scores,
    score_and_mask,
)
from prunekit.methods.scores import Scores

METHODS = ["random", "magnitude", "snip", "grasp", "synflow"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rounds", [1, 3])
def test_exact_counts_at_every_scope(tanh_bn_convnet, batches, method, rounds):
    model = tanh_bn_convnet()
    data = batches(2, 6, (2, 5, 5))
    shapes = {n: p.numel() for n, p in model.named_parameters() if n.endswith("weight")}
    shapes.pop("1.weight")  # batch norm is not prunable
    total = sum(shapes.values())

    mask = score_and_mask(method, model, 0.7, data=data, rounds=rounds)
    assert mask.num_removed == count_to_remove(0.7, total)

    mask = score_and_mask(method, model, 0.7, data=data, rounds=rounds, scope="layerwise")
    # each layer removes floor or ceil of s·d_l, as prunekit.masks apportions them
    reference = scores_to_mask({n: torch.zeros(d) for n, d in shapes.items()}, 0.7, "layerwise")
    for name, size in shapes.items():
        removed = int((~mask[name]).sum())
        assert removed == int((~reference[name]).sum())
        assert math.floor(0.7 * size) <= removed <= math.ceil(0.7 * size)

    per_layer = {"0.weight": 0.5, "6.weight": 0.25}
    mask = score_and_mask(method, model, per_layer, data=data, rounds=rounds, scope="per_layer")
    assert int((~mask["0.weight"]).sum()) == count_to_remove(0.5, shapes["0.weight"])
    assert int((~mask["3.weight"]).sum()) == 0
    assert int((~mask["6.weight"]).sum()) == count_to_remove(0.25, shapes["6.weight"])


def test_rounds_follow_schedule_and_pruned_weights_stay_pruned(relu_mlp_nobias, model_state):
    snapshot, assert_unchanged = model_state
    model = relu_mlp_nobias()
    before = snapshot(model)
    seen: list[Mask] = []
    generator = torch.Generator().manual_seed(0)

    def adversarial(scoring_model, names):
        # record which weights the scoring copy has zeroed, then score removed weights
        # highest so that, without `previous`, they would come back
        seen.append(Mask({n: scoring_model.get_parameter(n).detach() != 0 for n in names}))
        scores = random_scores(scoring_model, names, generator=generator)
        for n in names:
            scores.values[n][~seen[-1][n]] = 10.0
        return scores

    rounds, sparsity = 4, 0.9
    final = prune_iteratively(adversarial, model, sparsity, rounds)
    assert_unchanged(model, before)
    d = final.num_total
    schedule = exponential_schedule(sparsity, rounds)
    assert seen[0].num_removed == 0
    for j in range(1, rounds):
        assert seen[j].num_removed == count_to_remove(schedule[j - 1], d)
        for n in seen[j]:
            assert not bool((seen[j][n] & ~seen[j - 1][n]).any()), "a pruned weight came back"
    for n in final:
        assert not bool((final[n] & ~seen[-1][n]).any())
    assert final.num_removed == count_to_remove(sparsity, d)


def test_synflow_defaults_to_100_rounds(relu_mlp_nobias, monkeypatch):
    calls = []
    synflow = INIT_METHODS["synflow"]

    def counting(*args, **kwargs):
        calls.append(1)
        return synflow.score(*args, **kwargs)

    monkeypatch.setitem(INIT_METHODS, "synflow", dataclasses.replace(synflow, score=counting))
    model = relu_mlp_nobias()
    many = score_and_mask("synflow", model, 0.8, input_shape=(6,))
    assert len(calls) == 100
    one = score_and_mask("synflow", model, 0.8, rounds=1, input_shape=(6,))
    assert len(calls) == 101
    assert one.num_removed == many.num_removed == count_to_remove(0.8, one.num_total)


@pytest.mark.parametrize("sparsity", [0.9, 0.97])
def test_many_rounds_layerwise_on_small_layers(relu_mlp_nobias, sparsity):
    # steps of the schedule smaller than one weight per layer must not trip the
    # "already removed more than the target" check at any round
    model = relu_mlp_nobias()
    mask = score_and_mask(
        "synflow", model, sparsity, rounds=100, scope="layerwise", input_shape=(6,)
    )
    sizes = {n: m.numel() for n, m in mask.items()}
    reference = scores_to_mask({n: torch.zeros(d) for n, d in sizes.items()}, sparsity, "layerwise")
    for name in sizes:
        assert int((~mask[name]).sum()) == int((~reference[name]).sum())


def test_registry_names_and_typos():
    assert set(INIT_METHODS) == set(METHODS)
    assert get_init_method("GraSP").name == "grasp"
    with pytest.raises(ConfigError, match="known: random, magnitude, snip, grasp, synflow"):
        get_init_method("grsp")
    with pytest.raises(ConfigError, match="did you mean 'grasp'"):
        get_init_method("grsp")


def test_data_methods_need_data(relu_mlp_nobias):
    with pytest.raises(ConfigError, match="data"):
        score_and_mask("snip", relu_mlp_nobias(), 0.5)


def test_score_fn_must_cover_every_parameter(relu_mlp_nobias):
    def partial(model, names):
        return Scores({names[0]: torch.zeros_like(model.get_parameter(names[0]))})

    with pytest.raises(ConfigError, match="no scores"):
        prune_iteratively(partial, relu_mlp_nobias(), 0.5, rounds=2)
