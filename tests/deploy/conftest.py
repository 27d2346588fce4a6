"""Masked models for the deploy tests: seeded random init, seeded random masks.

A ranking of VGG-19's 20M weights takes seconds; a Bernoulli mask is instant.
"""

import pytest
import torch
from deploy_models import MODEL_INPUTS  # noqa: F401  (the fixtures use it)

from prunekit.masks import Mask, prunable_parameters
from prunekit.models import create_model


def _perturb_batch_norm(model: torch.nn.Module, generator: torch.Generator) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(c, generator=generator))


@pytest.fixture
def masked_model():
    """``build(name, sparsity, seed)`` → (model with the mask applied, mask)."""

    def build(name: str, sparsity: float, seed: int = 0) -> tuple[torch.nn.Module, Mask]:
        torch.manual_seed(seed)
        model = create_model(name, num_classes=10)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            _perturb_batch_norm(model, generator)
        mask = Mask(
            {
                n: torch.rand(p.shape, generator=generator) >= sparsity
                for n, p in prunable_parameters(model).items()
            }
        )
        mask.apply(model)
        return model.eval(), mask

    return build
