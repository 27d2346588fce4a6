import pytest
import torch
from second_order_reference import dense_fisher

from prunekit.errors import ConfigError, ResourceError
from prunekit.second_order.fisher import (
    EmpiricalFisher,
    choose_method,
    chunk_blocks,
    estimate_bytes,
    layer_blocks,
    one_block,
)

D = 16
BLOCKINGS = {
    "one": one_block(D),
    "layers": layer_blocks([5, 7, 4]),
    "chunks": chunk_blocks([9, 7], 4),
}


def make_grads(m, d=D, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(m, d, generator=generator, dtype=torch.float64)


def test_block_helpers():
    assert one_block(5) == [(0, 5)]
    assert layer_blocks([3, 2]) == [(0, 3), (3, 5)]
    assert chunk_blocks([10, 3], 4) == [(0, 4), (4, 8), (8, 10), (10, 13)]
    with pytest.raises(ConfigError):
        EmpiricalFisher(make_grads(4), 0.1, blocks=[(0, 5), (6, D)])
    with pytest.raises(ConfigError):
        EmpiricalFisher(make_grads(4), 0.1, blocks=[(0, 5)])


def test_choose_method_picks_cheaper():
    assert choose_method(block_size=10, m=100) == "explicit"
    assert choose_method(block_size=1000, m=100) == "woodbury"


@pytest.mark.parametrize("blocking", sorted(BLOCKINGS))
@pytest.mark.parametrize("m", [3, 40])  # fewer / more samples than the block sizes
@pytest.mark.parametrize("method", ["auto", "woodbury", "explicit"])
def test_factored_inverse_matches_dense_inverse(blocking, m, method):
    blocks = BLOCKINGS[blocking]
    grads, damp = make_grads(m), 0.05
    fisher = EmpiricalFisher(grads, damp, blocks, dtype=torch.float64, method=method)
    dense = dense_fisher(grads, damp, blocks)
    inverse = torch.linalg.inv(dense)
    v = torch.randn(D, 3, dtype=torch.float64)

    torch.testing.assert_close(fisher.inverse_diagonal(), inverse.diagonal(), rtol=1e-9, atol=0)
    torch.testing.assert_close(fisher.inverse_matvec(v), inverse @ v, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fisher.inverse_matvec(v[:, 0]), inverse @ v[:, 0])
    torch.testing.assert_close(fisher.matvec(v), dense @ v)
    torch.testing.assert_close(fisher.quadratic(v[:, 0]), v[:, 0] @ dense @ v[:, 0])
    rows, cols = torch.tensor([0, 3, 4, 9, 15]), torch.tensor([1, 4, 5, 9, 12, 14])
    torch.testing.assert_close(fisher.submatrix(rows, cols), dense[rows][:, cols])
    torch.testing.assert_close(
        fisher.inverse_submatrix(rows, cols), inverse[rows][:, cols], rtol=1e-9, atol=1e-12
    )


def test_auto_method_per_block():
    fisher = EmpiricalFisher(make_grads(6), 0.1, [(0, 4), (4, D)], dtype=torch.float64)
    assert fisher.methods == ["explicit", "woodbury"]


def test_float32_default_is_close_for_moderate_damping():
    grads, damp = make_grads(8), 0.1
    fisher = EmpiricalFisher(grads, damp)
    assert fisher.dtype == torch.float32
    reference = torch.linalg.inv(dense_fisher(grads, damp, one_block(D))).diagonal()
    torch.testing.assert_close(fisher.inverse_diagonal().double(), reference, rtol=1e-4, atol=0)


def test_memory_estimate_and_limit():
    blocks = chunk_blocks([1000, 500], 600)  # blocks of 600, 400, 500
    item = 8
    m = 50  # all three use Woodbury: stored m² each, temp m × block
    expected = (3 * m * m + m * 600) * item
    assert estimate_bytes(blocks, m, torch.float64) == expected
    assert estimate_bytes(blocks, m, torch.float64, include_grads=True) == expected + m * 1500 * 8
    explicit = (600**2 + 400**2 + 500**2 + 2 * 600**2) * item
    assert estimate_bytes(blocks, m, torch.float64, method="explicit") == explicit
    grads = torch.zeros(m, 1500, dtype=torch.float64)
    with pytest.raises(ResourceError, match="smaller blocks"):
        EmpiricalFisher(grads, 0.1, blocks, dtype=torch.float64, memory_limit=expected - 1)
    EmpiricalFisher(grads, 0.1, blocks, dtype=torch.float64, memory_limit=expected)


def test_invalid_arguments():
    with pytest.raises(ConfigError):
        EmpiricalFisher(make_grads(4), 0.0)
    with pytest.raises(ConfigError):
        EmpiricalFisher(make_grads(4), 0.1, method="lu")


@pytest.mark.parametrize("transposed", [False, True])
def test_gathered_columns_are_g_restricted_and_transposed_in_either_layout(transposed):
    from prunekit.second_order.fisher import gather_columns_transposed

    generator = torch.Generator().manual_seed(4)
    g = torch.randn(23, 101, generator=generator)
    if transposed:  # a restricted Fisher's G is the transpose of a (d, m) array
        g = g.T.contiguous().T
    keep = torch.rand(101, generator=generator) > 0.4
    out = gather_columns_transposed(g, keep, chunk=9)
    assert out.is_contiguous() and torch.equal(out, g[:, keep].T)
