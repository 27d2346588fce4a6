"""``all_finite`` reads G in its storage order (no copy of a weight-major G) and agrees
with ``isfinite(...).all()`` on any layout; ``cholesky_or_raise(overwrite=True)``
factors in the matrix's own memory and gives the same factor."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.second_order.fisher import all_finite, cholesky_or_raise, solve_with_cholesky

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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cholesky_in_place_equals_the_plain_factor_in_the_same_memory(dtype):
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(40, 90, generator=generator, dtype=dtype)
    kernel = a @ a.T + 0.1 * torch.eye(40, dtype=dtype)
    expected = torch.linalg.cholesky(kernel)
    address = kernel.data_ptr()
    factor = cholesky_or_raise(kernel, "K", overwrite=True)
    assert factor.data_ptr() == address  # no second m×m array
    assert torch.equal(factor, expected)  # lower, the upper triangle zero
    rhs = torch.randn(40, 3, generator=generator, dtype=dtype)
    solved = torch.cholesky_solve(rhs, factor)
    torch.testing.assert_close(solved, torch.cholesky_solve(rhs, expected))
    torch.testing.assert_close(expected @ expected.T @ solved, rhs)


def test_cholesky_in_place_still_names_an_indefinite_matrix():
    matrix = torch.diag(torch.tensor([1.0, -1.0, 2.0]))
    with pytest.raises(ConfigError, match="factorisation of K failed"):
        cholesky_or_raise(matrix, "K", overwrite=True)
    # a non-contiguous matrix is factored out of place (nothing to overwrite safely)
    base = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    spd = base @ base.T + torch.eye(6, dtype=torch.float64)
    wide = torch.zeros(6, 12, dtype=torch.float64)
    wide[:, ::2] = spd
    view = wide[:, ::2]
    assert not view.is_contiguous()
    torch.testing.assert_close(
        cholesky_or_raise(view, "V", overwrite=True), torch.linalg.cholesky(spd)
    )


@pytest.mark.parametrize("overwrite", [False, True])  # a plain factor, or LAPACK's in-place one
def test_solve_with_cholesky_matches_a_dense_solve(overwrite):
    generator = torch.Generator().manual_seed(11)
    a = torch.randn(9, 5, generator=generator, dtype=torch.float64)
    system = a @ a.T + 0.5 * torch.eye(9, dtype=torch.float64)
    factor = cholesky_or_raise(system.clone(), "system", overwrite=overwrite)
    for b in (torch.randn(9, generator=generator, dtype=torch.float64),
              torch.randn(3, 9, generator=generator, dtype=torch.float64).T):  # fmt: skip
        torch.testing.assert_close(solve_with_cholesky(b, factor), torch.linalg.solve(system, b))
