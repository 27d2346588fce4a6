"""The WoodFisher/CBS ResNet20 checkpoint loads into ``resnet20`` with strict key matching."""

from pathlib import Path

import pytest
import torch

from prunekit.models import create_model

CHECKPOINT = Path("/work/shared/checkpoints/resnet20_cifar10.pth.tar")


@pytest.mark.skipif(not CHECKPOINT.exists(), reason=f"{CHECKPOINT} is absent")
def test_resnet20_loads_the_woodfisher_checkpoint_strictly():
    # The tensors were saved on a GPU: map them to the CPU.
    checkpoint = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}

    model = create_model("resnet20", num_classes=10)
    model.load_state_dict(state, strict=True)

    for key, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, state[key])
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
