"""The CBS paper's trained models in /work/shared/checkpoints load into prunekit's models."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.checkpoints import load_pretrained, read_foreign_checkpoint

CHECKPOINTS = Path("/work/shared/checkpoints")
MLPNET = CHECKPOINTS / "mnist_25_epoch_93.97.ckpt"
RESNET20 = CHECKPOINTS / "resnet20_cifar10.pth.tar"
MNIST = Path("/work/shared/data/mnist")


def read_idx(path):
    """A gzipped IDX file as a numpy array (magic: 0, 0, type 0x08, number of dims)."""
    data = gzip.decompress(path.read_bytes())
    assert data[:3] == b"\x00\x00\x08"
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.mark.skipif(not MLPNET.exists(), reason=f"{MLPNET} is absent")
def test_mlpnet_checkpoint_loads():
    checkpoint = read_foreign_checkpoint(MLPNET)
    assert checkpoint.format == "woodfisher"
    assert checkpoint.mask is None  # the file's masks are all ones
    assert {k: tuple(v.shape) for k, v in checkpoint.state_dict.items()} == {
        "fc1.weight": (40, 784),
        "fc2.weight": (20, 40),
        "fc3.weight": (10, 20),
    }
    assert checkpoint.foreign_globals == [
        "torch.optim.lr_scheduler.ExponentialLR",
        "torch.optim.sgd.SGD",
    ]


@pytest.mark.skipif(
    not (MLPNET.exists() and (MNIST / "t10k-images-idx3-ubyte.gz").exists()),
    reason="MLPNet checkpoint or MNIST test set absent",
)
def test_mlpnet_reaches_its_stated_accuracy_on_mnist():
    model = load_pretrained("mlpnet", MLPNET).eval()
    images = torch.from_numpy(read_idx(MNIST / "t10k-images-idx3-ubyte.gz").copy())
    labels = torch.from_numpy(read_idx(MNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    x = ((images.float() / 255 - 0.1307) / 0.3081).reshape(len(images), -1)
    with torch.no_grad():
        logits = model(x)
    correct = int((logits.argmax(1) == labels).sum())
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert (correct, len(labels)) == (9397, 10000)
    assert loss == pytest.approx(0.2021, abs=5e-4)


@pytest.mark.skipif(not RESNET20.exists(), reason=f"{RESNET20} is absent")
def test_resnet20_checkpoint_loads():
    checkpoint = read_foreign_checkpoint(RESNET20)
    assert checkpoint.format == "pth.tar"
    assert checkpoint.metadata["best_top1"] == pytest.approx(91.96)
    assert not any(key.startswith("module.") for key in checkpoint.state_dict)

    model = load_pretrained("resnet20", RESNET20).eval()
    assert tuple(model.conv1.weight.shape) == (16, 3, 3, 3)
    assert tuple(model.fc.weight.shape) == (10, 64)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, checkpoint.state_dict[key])
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
