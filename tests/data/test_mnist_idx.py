import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.data import MNIST, get_dataset, read_idx
from prunekit.errors import DataNotFoundError, PrunekitError

REAL_MNIST = Path("/work/shared/data/mnist")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, formats, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = formats.write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array)
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_values_and_normalisation(tmp_path, formats, gz):
    arrays = formats.write_mnist(tmp_path, n_train=20, n_test=10, gz=gz)
    for train in (True, False):
        images, labels = arrays[train]
        dataset = MNIST(tmp_path, train=train)
        assert len(dataset) == len(labels)
        assert dataset.targets.dtype == torch.long
        assert dataset.targets.tolist() == labels.tolist()
        x, y = dataset[3]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32
        expected = (torch.from_numpy(images[3]).float() / 255 - 0.1307) / 0.3081
        torch.testing.assert_close(x[0], expected)
        assert y == int(labels[3])


def test_batched_access_matches_single(tmp_path, formats):
    formats.write_mnist(tmp_path)
    dataset = MNIST(tmp_path)
    batch = dataset.__getitems__([4, 0, 7])
    for (x, y), i in zip(batch, [4, 0, 7], strict=True):
        x_single, y_single = dataset[i]
        torch.testing.assert_close(x, x_single)
        assert y == y_single
    inputs, targets = dataset.tensors([4, 0, 7])
    torch.testing.assert_close(inputs, torch.stack([b[0] for b in batch]))


@pytest.mark.parametrize("layout", ["mnist", "MNIST/raw"])
def test_root_may_be_a_parent(tmp_path, formats, layout):
    formats.write_mnist(tmp_path / layout, gz=True)
    assert len(MNIST(tmp_path, train=False)) == 10


def test_data_root_from_environment(tmp_path, formats, monkeypatch):
    formats.write_mnist(tmp_path / "mnist")
    monkeypatch.setenv("PRUNEKIT_DATA", str(tmp_path))
    assert len(get_dataset("mnist", train=True)) == 20


def test_missing_files_message(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        MNIST(tmp_path, train=True)
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" in message
    assert str(tmp_path) in message and str(tmp_path / "MNIST" / "raw") in message
    assert "--download" in message


def _corrupt(tmp_path, formats, name, data):
    formats.write_mnist(tmp_path)
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def test_wrong_magic_names_file(tmp_path, formats):
    raw = formats.idx_bytes(np.zeros((20, 28, 28), np.uint8))
    bad = _corrupt(tmp_path, formats, "train-images-idx3-ubyte", b"\x12\x34" + raw[2:])
    with pytest.raises(PrunekitError, match="magic") as info:
        MNIST(tmp_path)
    assert str(bad) in str(info.value)


def test_truncated_file(tmp_path, formats):
    raw = formats.idx_bytes(np.zeros((20, 28, 28), np.uint8))
    bad = _corrupt(tmp_path, formats, "train-images-idx3-ubyte", raw[:-100])
    with pytest.raises(PrunekitError, match="truncated") as info:
        MNIST(tmp_path)
    assert str(bad) in str(info.value)
    _corrupt(tmp_path, formats, "train-images-idx3-ubyte", raw[:6])
    with pytest.raises(PrunekitError, match="truncated"):
        MNIST(tmp_path)


def test_truncated_gzip(tmp_path, formats):
    formats.write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(PrunekitError, match="train-images-idx3-ubyte.gz"):
        MNIST(tmp_path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(PrunekitError, match="train-images-idx3-ubyte.gz"):
        MNIST(tmp_path)


def test_wrong_dimension_count(tmp_path, formats):
    _corrupt(tmp_path, formats, "train-labels-idx1-ubyte", formats.idx_bytes(np.zeros((20, 2))))
    with pytest.raises(PrunekitError, match="dimensions"):
        MNIST(tmp_path)


def test_count_mismatch(tmp_path, formats):
    labels = formats.idx_bytes(np.zeros(19, np.uint8))
    _corrupt(tmp_path, formats, "train-labels-idx1-ubyte", labels)
    with pytest.raises(PrunekitError, match="19 labels"):
        MNIST(tmp_path)


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not available")
def test_real_mnist():
    train = MNIST(REAL_MNIST, train=True)
    test = get_dataset("mnist", root=REAL_MNIST.parent, train=False)
    assert len(train) == 60000 and len(test) == 10000
    counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(train.targets).tolist() == counts
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(test.targets).tolist() == test_counts
    assert train.data.dtype == torch.uint8 and train.data.shape == (60000, 1, 28, 28)
    # The first training digit is a 5; the normalised set has mean ~0 and std ~1.
    assert int(train.targets[0]) == 5
    inputs, _ = train.tensors(torch.arange(0, 60000, 6))
    assert abs(inputs.mean().item()) < 0.05 and abs(inputs.std().item() - 1) < 0.05
    with gzip.open(REAL_MNIST / "t10k-labels-idx1-ubyte.gz") as handle:
        assert handle.read()[8:18] == bytes(test.targets[:10].tolist())
