"""``all_finite`` reads G in its storage order (no copy of a weight-major G) and agrees
with ``isfinite(...).all()`` on any layout."""

import pytest
import torch

from prunekit.second_order.fisher import all_finite

LAYOUTS = [
    ("contiguous", lambda t: t),
    ("transposed", lambda t: t.transpose(0, 2)),
    ("strided", lambda t: t[:, ::2, :]),
    ("permuted and strided", lambda t: t.permute(2, 0, 1)[::2]),
]


@pytest.mark.parametrize("name,view", LAYOUTS)
@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), float("-inf")])
def test_all_finite_agrees_with_isfinite_on_every_layout(name, view, bad):
    for position in [(0, 0, 0), (8, 5, 4), (4, 2, 3), (3, 4, 1)]:
        storage = torch.randn(9, 6, 5, generator=torch.Generator().manual_seed(1))
        if bad is not None:
            storage[position] = bad
        values = view(storage)
        # a slab of one row at a time: the chunked path is exercised too
        for chunk in (1, 64 * 2**20):
            assert all_finite(values, chunk_bytes=chunk) == bool(torch.isfinite(values).all())


def test_weight_major_g_is_checked_without_a_copy(monkeypatch):
    """A reduction over the transposed view would first copy G: the check must reduce
    over the contiguous array itself."""
    storage = torch.randn(50, 7)  # (d, m), contiguous: G = storage.T
    seen = []
    real = torch.aminmax

    def spy(t, *args, **kwargs):
        seen.append(t.is_contiguous())
        return real(t, *args, **kwargs)

    monkeypatch.setattr(torch, "aminmax", spy)
    assert all_finite(storage.T)
    assert seen == [True]
