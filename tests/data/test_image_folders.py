import sys

import numpy as np
import pytest
import torch

from prunekit.data import ImageFolderDataset, get_dataset
from prunekit.errors import DataNotFoundError, PrunekitError

Image = pytest.importorskip("PIL.Image")


def _save(path, value, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _tiny_imagenet(root, wnids=("n01", "n02", "n03")):
    root = root / "tiny-imagenet-200"
    (root / "wnids.txt").parent.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for label, wnid in enumerate(wnids):
        for i in range(2):
            _save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 40 * label + i, (64, 64))
    lines = []
    for i, wnid in enumerate(reversed(wnids)):
        _save(root / "val" / "images" / f"val_{i}.JPEG", 10 * i, (64, 64))
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_imagenet_layout(tmp_path):
    for split in ("train", "val"):
        for label, name in enumerate(["cat", "dog"]):
            for i in range(3):
                _save(tmp_path / split / name / f"{i}.png", 100 * label + i, (12, 10))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    dataset = ImageFolderDataset(
        tmp_path, train=False, image_size=8, resize=10, mean=(0, 0, 0), std=(1, 1, 1)
    )
    assert dataset.classes == ["cat", "dog"] and len(dataset) == 6
    assert dataset.targets.tolist() == [0, 0, 0, 1, 1, 1]
    x, y = dataset[4]
    assert x.shape == (3, 8, 8) and y == 1
    torch.testing.assert_close(x, torch.full((3, 8, 8), 101 / 255))
    train = ImageFolderDataset(tmp_path, train=True, image_size=8, resize=10)
    assert train.augment and len(train) == 6 and train[0][0].shape == (3, 8, 8)


def test_tiny_imagenet_validation_annotations(tmp_path):
    _tiny_imagenet(tmp_path)
    train = get_dataset("tiny_imagenet", root=tmp_path, train=True, augment=False)
    val = get_dataset("tiny_imagenet", root=tmp_path, train=False)
    assert train.classes == ["n01", "n02", "n03"] and len(train) == 6
    assert train.targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert val.targets.tolist() == [2, 1, 0] and not val.augment
    x, y = val[1]
    assert x.shape == (3, 64, 64) and y == 1
    mean = torch.tensor([0.4802, 0.4481, 0.3975])[:, None, None]
    std = torch.tensor([0.2302, 0.2265, 0.2262])[:, None, None]
    torch.testing.assert_close(x, ((10 / 255 - mean) / std).expand(3, 64, 64))


def test_missing_split_and_bad_annotation(tmp_path):
    with pytest.raises(DataNotFoundError, match="train"):
        get_dataset("imagefolder", root=tmp_path)
    root = _tiny_imagenet(tmp_path)
    (root / "val" / "val_annotations.txt").write_text("missing.JPEG\tn01\n")
    with pytest.raises(PrunekitError, match="do not exist"):
        get_dataset("tiny_imagenet", root=root, train=False)


def test_missing_pillow_message(tmp_path, monkeypatch):
    _tiny_imagenet(tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(PrunekitError, match=r"pip install 'prunekit\[images\]'"):
        get_dataset("tiny_imagenet", root=tmp_path)
