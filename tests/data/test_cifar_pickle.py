import os
import pickle

import numpy as np
import pytest
import torch

from prunekit.data import CIFAR10, CIFAR100, get_dataset, safe_load_pickle
from prunekit.data.cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD
from prunekit.errors import DataNotFoundError, PrunekitError


def _expected(row: np.ndarray, mean, std) -> torch.Tensor:
    image = torch.from_numpy(row.copy()).reshape(3, 32, 32).float() / 255
    return (image - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def test_cifar10_reads_all_batches(tmp_path, formats):
    _, arrays = formats.write_cifar10(tmp_path, per_batch=6)
    train = CIFAR10(tmp_path, train=True, augment=False)
    test = CIFAR10(tmp_path, train=False)
    assert len(train) == 30 and len(test) == 6
    assert train.classes[3] == "class3" and train.num_classes == 10
    train_labels = [label for _, labels in arrays[True] for label in labels]
    assert train.targets.tolist() == train_labels
    data_batch_2 = arrays[True][1][0]
    x, y = train[6 + 4]  # fifth image of data_batch_2
    assert x.shape == (3, 32, 32)
    torch.testing.assert_close(x, _expected(data_batch_2[4], CIFAR10_MEAN, CIFAR10_STD))
    assert y == arrays[True][1][1][4]
    assert not test.augment and train.input_shape == (3, 32, 32)


def test_cifar10_root_may_be_the_batch_folder(tmp_path, formats):
    folder, _ = formats.write_cifar10(tmp_path)
    assert len(CIFAR10(folder, train=False)) == 6


def test_cifar100_fine_labels(tmp_path, formats):
    _, arrays = formats.write_cifar100(tmp_path, n=8)
    for train in (True, False):
        dataset = get_dataset("cifar100", root=tmp_path, train=train, augment=False)
        data, fine = arrays[train]
        assert dataset.targets.tolist() == fine and dataset.num_classes == 100
        torch.testing.assert_close(dataset[5][0], _expected(data[5], CIFAR100_MEAN, CIFAR100_STD))


def test_augmentation_crops_and_flips(tmp_path, formats):
    formats.write_cifar10(tmp_path)
    plain = CIFAR10(tmp_path, train=True, augment=False)
    augmented = get_dataset("cifar10", root=tmp_path, train=True)  # default: on for train
    assert augmented.augment
    torch.manual_seed(0)
    x = augmented.__getitems__(range(30))
    x = torch.stack([item[0] for item in x])
    reference, _ = plain.tensors()
    assert x.shape == reference.shape
    black = ((0 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD))[:, None, None]
    # Every augmented image is a shifted window of the padded original, maybe mirrored.
    for image, original in zip(x, reference, strict=True):
        padded = torch.nn.functional.pad(original - black, (4, 4, 4, 4)) + black
        candidates = [
            padded[:, top : top + 32, left : left + 32] for top in range(9) for left in range(9)
        ]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.allclose(image, c, atol=1e-5) for c in candidates)
    assert not torch.allclose(x, reference)


def test_missing_cifar_names_files(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        CIFAR10(tmp_path)
    message = str(info.value)
    assert "data_batch_1" in message and "cifar-10-batches-py" in message
    with pytest.raises(DataNotFoundError, match="test"):
        CIFAR100(tmp_path, train=False)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_restricted_unpickler_refuses_code(tmp_path, formats, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder, _ = formats.write_cifar10(tmp_path)
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Exploit()}
    (folder / "test_batch").write_bytes(pickle.dumps(evil))
    with pytest.raises(PrunekitError, match="system") as info:
        CIFAR10(tmp_path, train=False)
    assert "test_batch" in str(info.value)
    assert not (tmp_path / "pwned").exists()
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"evil{protocol}"
        path.write_bytes(pickle.dumps([_Exploit()], protocol=protocol))
        with pytest.raises(PrunekitError, match="refused"):
            safe_load_pickle(path)
    path = tmp_path / "eval"
    path.write_bytes(pickle.dumps(eval))
    with pytest.raises(PrunekitError, match="refused"):
        safe_load_pickle(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_arrays_load_under_every_protocol(tmp_path, protocol):
    array = np.arange(24, dtype=np.uint8).reshape(2, 12)
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": array, "labels": [1, 2]}, protocol=protocol))
    loaded = safe_load_pickle(path)
    np.testing.assert_array_equal(loaded["data"], array)


def test_numpy_1_module_names_load(tmp_path):
    # Official batches name numpy.core.multiarray; numpy 2 calls it numpy._core.
    raw = pickle.dumps({"data": np.ones((2, 3), np.uint8)}, protocol=2)
    raw = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"numpy.core.multiarray" in raw
    (tmp_path / "batch").write_bytes(raw)
    np.testing.assert_array_equal(safe_load_pickle(tmp_path / "batch")["data"], np.ones((2, 3)))


def test_bad_batches(tmp_path, formats):
    folder, _ = formats.write_cifar10(tmp_path)
    bad = {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(PrunekitError, match="count mismatch"):
        CIFAR10(tmp_path, train=False)
    too_short = {b"data": np.zeros((1, 10), np.uint8), b"labels": [0]}
    (folder / "test_batch").write_bytes(pickle.dumps(too_short))
    with pytest.raises(PrunekitError, match="3072"):
        CIFAR10(tmp_path, train=False)
    (folder / "test_batch").write_bytes(pickle.dumps(bad)[:50])
    with pytest.raises(PrunekitError, match="test_batch"):
        CIFAR10(tmp_path, train=False)
    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": [0]}))
    with pytest.raises(PrunekitError, match="no 'data' entry"):
        CIFAR10(tmp_path, train=False)


def test_codecs_encode_only_for_latin1_bytes(tmp_path):
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1").
    (tmp_path / "ok").write_bytes(pickle.dumps({b"key": b"\x00\xff"}, protocol=2))
    assert safe_load_pickle(tmp_path / "ok") == {b"key": b"\x00\xff"}
    import codecs

    class Rot13:
        def __reduce__(self):
            return (codecs.encode, ("abc", "rot13"))

    (tmp_path / "bad").write_bytes(pickle.dumps(Rot13(), protocol=2))
    with pytest.raises(PrunekitError, match="refused"):
        safe_load_pickle(tmp_path / "bad")
