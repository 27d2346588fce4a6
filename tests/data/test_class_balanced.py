import pytest
import torch

from prunekit.data import Synthetic, class_balanced_batches, class_balanced_indices
from prunekit.errors import PrunekitError


def test_exact_counts_and_interleaving():
    labels = torch.arange(10).repeat_interleave(30)  # class-ordered, the GraSP trap
    indices = class_balanced_indices(labels, samples_per_class=6, seed=0)
    assert indices.dtype == torch.long and len(indices) == 60
    assert len(set(indices.tolist())) == 60
    chosen = labels[indices]
    assert torch.bincount(chosen).tolist() == [6] * 10
    # Both halves (and every block of 10) hold every class.
    for block in chosen.split(10):
        assert sorted(block.tolist()) == list(range(10))
    assert torch.equal(indices, class_balanced_indices(labels, 6, seed=0))
    assert not torch.equal(indices, class_balanced_indices(labels, 6, seed=1))
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(indices, class_balanced_indices(labels, 6, generator=generator))


def test_too_few_examples():
    labels = torch.tensor([0, 0, 0, 1])
    with pytest.raises(PrunekitError, match="class 1 has 1"):
        class_balanced_indices(labels, 2, seed=0)


def test_batches_hold_every_class():
    dataset = Synthetic(num_samples=200, input_shape=(4,), num_classes=5, seed=3)
    chunks = class_balanced_batches(dataset, samples_per_class=3, num_iters=4, seed=0)
    assert len(chunks) == 4
    seen = set()
    for inputs, targets in chunks:
        assert inputs.shape == (15, 4) and targets.dtype == torch.long
        assert torch.bincount(targets, minlength=5).tolist() == [3] * 5
        for x, y in zip(inputs, targets, strict=True):
            match = torch.nonzero((dataset.data == x).all(dim=1)).flatten()
            assert dataset.targets[match].tolist() == [int(y)]
            seen.add(int(match))
    assert len(seen) == 60  # all distinct


def test_batches_without_targets_attribute():
    base = Synthetic(num_samples=40, input_shape=(2,), num_classes=4)
    subset = torch.utils.data.Subset(base, list(range(20)))
    ((inputs, targets),) = class_balanced_batches(subset, 2, 1, seed=0)
    assert torch.bincount(targets).tolist() == [2, 2, 2, 2]
