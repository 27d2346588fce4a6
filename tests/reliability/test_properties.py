"""Properties over random small models, scopes and sparsities (hypothesis, few examples):
exact removed counts, masks that no optimizer revives, save → load identity, and
bit-identical masks from the same seed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit.masks import MaskEnforcer, load_mask, prunable_parameters, save_mask
from prunekit.masks.ranking import count_to_remove, layerwise_counts
from prunekit.methods.init import score_and_mask
from prunekit.training import build_optimizer
from prunekit.utils.files import atomic_torch_save
from prunekit.utils.serialization import safe_torch_load

FEW = settings(max_examples=8, deadline=None)

widths = st.lists(st.integers(1, 9), min_size=1, max_size=3)
sparsities = st.floats(0.0, 0.97, allow_nan=False)
scopes = st.sampled_from(["global", "layerwise"])
methods = st.sampled_from(["random", "magnitude", "snip", "grasp"])
optimizers = st.sampled_from(
    [("sgd", 0.0, 0.0), ("sgd", 0.9, 5e-4), ("adam", 0.0, 1e-2), ("adamw", 0.0, 1e-2)]
)


def mlp(hidden: list[int], seed: int, conv: bool = False) -> nn.Module:
    """A random small network on 6-feature (or 1×4×4 with ``conv``) inputs, 3 classes."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 2, 3), nn.Flatten()] if conv else []
    width = 8 if conv else 6
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 3))


def data(seed: int, conv: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (12, 1, 4, 4) if conv else (12, 6)
    return torch.randn(shape, generator=g), torch.arange(12) % 3


def mask_for(method, model, sparsity, scope, x, y, seed):
    extra = {"generator": torch.Generator().manual_seed(seed)} if method == "random" else {}
    return score_and_mask(method, model, sparsity, data=(x, y), scope=scope, **extra)


@FEW
@given(widths, sparsities, scopes, methods, st.booleans(), st.integers(0, 2**16))
def test_exact_removed_count(hidden, sparsity, scope, method, conv, seed):
    model = mlp(hidden, seed, conv)
    mask = mask_for(method, model, sparsity, scope, *data(seed, conv), seed)
    sizes = [p.numel() for p in prunable_parameters(model).values()]
    assert mask.num_total == sum(sizes)
    if scope == "global":
        assert mask.num_removed == count_to_remove(sparsity, sum(sizes))
    else:
        expected = layerwise_counts(sparsity, sizes)
        assert [int((~m).sum()) for m in mask.values()] == expected


@FEW
@given(widths, sparsities, scopes, methods, st.booleans(), st.integers(0, 2**16))
def test_same_seed_gives_bit_identical_masks(hidden, sparsity, scope, method, conv, seed):
    masks = [
        mask_for(method, mlp(hidden, seed, conv), sparsity, scope, *data(seed, conv), seed)
        for _ in range(2)
    ]
    assert masks[0].equal(masks[1])


@FEW
@given(widths, st.floats(0.1, 0.95), optimizers, st.integers(0, 2**16))
def test_no_optimizer_revives_a_removed_weight(hidden, sparsity, optimizer, seed):
    name, momentum, decay = optimizer
    model = mlp(hidden, seed)
    x, y = data(seed, conv=False)
    mask = mask_for("random", model, sparsity, "global", x, y, seed)
    opt = build_optimizer(model.parameters(), name, lr=0.1, momentum=momentum, weight_decay=decay)
    enforcer = MaskEnforcer(model, mask).attach(opt)
    for _ in range(4):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    enforcer.detach()
    assert mask.holds_in(model)


@FEW
@given(widths, sparsities, st.booleans(), st.integers(0, 2**16))
def test_save_load_identity_of_masks_and_weights(hidden, sparsity, conv, seed):
    model = mlp(hidden, seed, conv)
    mask = mask_for("magnitude", model, sparsity, "global", *data(seed, conv), seed)
    with tempfile.TemporaryDirectory() as folder:
        loaded = load_mask(save_mask(mask, Path(folder) / "mask.pt"))
        state = safe_torch_load(atomic_torch_save(model.state_dict(), Path(folder) / "w.pt"))
    assert loaded.equal(mask) and list(loaded) == list(mask)
    assert list(state) == list(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
