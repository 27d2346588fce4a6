import pytest
import torch

from prunekit.data import dataset_info, get_dataset, list_datasets, make_loader
from prunekit.data.paths import resolve_data_root
from prunekit.errors import ConfigError, DataNotFoundError


def test_names():
    names = list_datasets()
    for name in ("mnist", "cifar10", "cifar100", "imagefolder", "tiny_imagenet"):
        assert name in names
    assert "digits" in names and "synthetic" in names


def test_unknown_name_lists_names():
    with pytest.raises(ConfigError, match="cifar10.*mnist"):
        get_dataset("mnsit")
    with pytest.raises(ConfigError, match="unknown dataset"):
        dataset_info("imagenet21k")


def test_info():
    assert dataset_info("mnist").input_shape == (1, 28, 28)
    assert dataset_info("CIFAR-100").num_classes == 100
    assert dataset_info("tiny-imagenet").input_shape == (3, 64, 64)
    assert dataset_info("digits", flatten=True).input_shape == (64,)
    info = dataset_info("synthetic", input_shape=(3, 5), num_classes=4, num_samples=9)
    assert info.input_shape == (3, 5) and info.num_classes == 4


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    assert str(resolve_data_root()) == "data"
    monkeypatch.setenv("PRUNEKIT_DATA", str(tmp_path))
    assert resolve_data_root() == tmp_path
    assert str(resolve_data_root("elsewhere")) == "elsewhere"


def test_missing_without_download(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        get_dataset("cifar10", root=tmp_path)
    with pytest.raises(ConfigError, match="cannot be downloaded"):
        get_dataset("tiny_imagenet", root=tmp_path, download=True)


def test_augment_on_a_dataset_without_augmentation():
    with pytest.raises(ConfigError, match="no augmentation"):
        get_dataset("digits", augment=True)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        get_dataset("digits", colour=True)


def test_digits():
    train, test = get_dataset("digits"), get_dataset("digits", train=False)
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.input_shape == (1, 8, 8) and train.num_classes == 10
    counts = torch.bincount(test.targets).tolist()
    assert min(counts) >= 35 and max(counts) <= 37  # stratified 20%
    x, y = train[0]
    assert x.shape == (1, 8, 8) and isinstance(y, int)
    inputs, _ = train.tensors()
    assert abs(inputs.mean().item()) < 0.05 and abs(inputs.std().item() - 1) < 0.05
    assert torch.equal(get_dataset("digits").targets, train.targets)
    assert not torch.equal(get_dataset("digits", seed=1).targets, train.targets)
    big = get_dataset("digits", image_size=28, flatten=True)
    assert big[0][0].shape == (784,) and big.input_shape == (784,)
    assert big.tensors([0, 1])[0].shape == (2, 784)


def test_synthetic_is_deterministic():
    a = get_dataset("synthetic", num_samples=50, input_shape=(3, 4, 4), num_classes=5, seed=1)
    b = get_dataset("synthetic", num_samples=50, input_shape=(3, 4, 4), num_classes=5, seed=1)
    test = get_dataset("synthetic", train=False, num_samples=50, input_shape=(3, 4, 4),
                       num_classes=5, seed=1)  # fmt: skip
    assert torch.equal(a.data, b.data) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.data, test.data)
    assert torch.bincount(a.targets).tolist() == [10] * 5
    assert a[0][0].shape == (3, 4, 4) and a.input_shape == (3, 4, 4)


def test_loader_order_is_seeded():
    dataset = get_dataset("synthetic", num_samples=64, input_shape=(2,), num_classes=4)

    def order(seed):
        loader = make_loader(dataset, batch_size=16, shuffle=True, seed=seed)
        return torch.cat([y for _, y in loader]), next(iter(loader))[0]

    (t1, x1), (t2, x2), (t3, _) = order(0), order(0), order(1)
    assert torch.equal(t1, t2) and torch.equal(x1, x2)
    assert not torch.equal(t1, t3)
    batch_x, batch_y = next(iter(make_loader(dataset, batch_size=8)))
    assert batch_x.shape == (8, 2) and batch_y.dtype == torch.long
    torch.testing.assert_close(batch_x, dataset.data[:8])
