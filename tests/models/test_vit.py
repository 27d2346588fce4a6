import pytest
import torch
import torch.nn.functional as F

from prunekit.errors import ConfigError
from prunekit.masks import prunable_parameters
from prunekit.models import classifier_name, create_model, input_shape_for, list_models


def test_vit_is_registered():
    assert "vit" in list_models()


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({}, (1, 28, 28)),
        ({"input_size": 32, "in_channels": 3}, (3, 32, 32)),
        ({"input_size": 32, "in_channels": 3, "pool": "mean", "patch_size": 8}, (3, 32, 32)),
    ],
)
def test_vit_output_shape(kwargs, shape):
    torch.manual_seed(0)
    model = create_model("vit", num_classes=7, **kwargs)
    assert input_shape_for(model) == shape
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


def test_vit_token_count_and_position_embedding():
    cls = create_model("vit")
    assert cls.pos_embed.shape == (1, 7 * 7 + 1, 64)
    mean = create_model("vit", input_size=32, in_channels=3, pool="mean")
    assert mean.pos_embed.shape == (1, 8 * 8, 64)
    assert mean.cls_token is None


def test_vit_prunable_parameters_include_attention_projections():
    model = create_model("vit", depth=2)
    names = list(prunable_parameters(model))
    for block in range(2):
        for proj in ("q", "k", "v", "out"):
            assert f"blocks.{block}.attn.{proj}.weight" in names
        assert f"blocks.{block}.mlp.fc1.weight" in names
        assert f"blocks.{block}.mlp.fc2.weight" in names
    assert names[0] == "patch_embed.weight"
    assert names[-1] == "head.weight"
    assert not any("norm" in n for n in names)
    assert "pos_embed" not in names and "cls_token" not in names
    assert classifier_name(model) == "head"


def test_vit_attention_matches_an_explicit_softmax():
    torch.manual_seed(0)
    attn = create_model("vit").blocks[0].attn
    x = torch.randn(2, 5, 64)
    q, k, v = (p(x).view(2, 5, 4, 16).transpose(1, 2) for p in (attn.q, attn.k, attn.v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / 16**0.5, dim=-1)
    expected = attn.out((weights @ v).transpose(1, 2).reshape(2, 5, 64))
    torch.testing.assert_close(attn(x), expected)


def test_vit_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = create_model("vit", depth=2)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    "kwargs",
    [{"input_size": 30}, {"heads": 3}, {"pool": "max"}, {"depth": 0}],
)
def test_vit_rejects_bad_options(kwargs):
    with pytest.raises(ConfigError):
        create_model("vit", **kwargs)
