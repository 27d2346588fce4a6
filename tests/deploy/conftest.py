"""Masked models for the deploy tests: seeded random init, seeded random masks.

A ranking of VGG-19's 20M weights takes seconds; a Bernoulli mask is instant.
"""

import pytest
import torch

from prunekit.masks import Mask, prunable_parameters
from prunekit.models import create_model

# (model, small input shape): VGG-19 on 16x16 images keeps the tests fast.
MODEL_INPUTS = {
    "mlpnet": (1, 28, 28),
    "lenet_300_100": (1, 28, 28),
    "lenet5_caffe": (1, 28, 28),
    "vgg19": (3, 16, 16),
    "resnet20": (3, 32, 32),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Small models: one thread avoids OpenMP spin-waiting on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
