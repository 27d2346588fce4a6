"""The layer Hessian H = 2XXᵀ/N: streamed accumulation, dampening, dead inputs, inverses.

Convention (docs/LAYERWISE.md): X is d_in × N (N = samples × positions), the layer's
reconstruction error of Ŵ is ‖(W − Ŵ)X‖²_F / N = Σ_rows (w − ŵ) H (w − ŵ)ᵀ / 2 with
H = 2XXᵀ/N, one H shared by every output row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.errors import ConfigError, DataError, NonFiniteError


class HessianAccumulator:
    """Streams H = 2XXᵀ/N over batches of inputs; never holds X.

    ``add_batch(x)`` takes x of shape (n, d_in), rows = samples or positions (any leading
    shape is flattened to rows), and adds 2xᵀx to the sum and n to ``count``.

    >>> acc = HessianAccumulator(3)
    >>> acc.add_batch(torch.ones(4, 3))
    >>> acc.hessian[0, 0].item()
    2.0
    """

    def __init__(self, d_in: int, *, dtype: torch.dtype = torch.float64, device="cpu"):
        if d_in < 1:
            raise ConfigError(f"d_in must be at least 1, got {d_in}")
        self.d_in = d_in
        self._sum = torch.zeros(d_in, d_in, dtype=dtype, device=device)
        self.count = 0

    def add_batch(self, x: Tensor) -> None:
        if x.shape[-1] != self.d_in:
            raise DataError(f"inputs have {x.shape[-1]} features, the layer has {self.d_in}")
        x = x.detach().reshape(-1, self.d_in).to(self._sum)
        if not torch.isfinite(x).all():
            raise NonFiniteError("calibration inputs contain NaN or Inf (Hessian accumulation)")
        self._sum.addmm_(x.T, x, alpha=2.0)
        self.count += x.shape[0]

    @property
    def hessian(self) -> Tensor:
        """H = 2XXᵀ/N (d_in × d_in) over the ``count`` rows seen so far."""
        if self.count == 0:
            raise DataError("no calibration inputs were accumulated: the Hessian is undefined")
        return self._sum / self.count


def check_hessian(H: Tensor, d_in: int) -> None:
    if H.dim() != 2 or H.shape != (d_in, d_in):
        raise DataError(f"H must be {d_in} × {d_in} (d_in × d_in), got {tuple(H.shape)}")
    if not torch.isfinite(H).all():
        raise NonFiniteError("the layer Hessian contains NaN or Inf")


def prepare_hessian(H: Tensor, damp: float = 0.01) -> tuple[Tensor, Tensor]:
    """Return (H_damped, dead) in float64.

    ``dead`` (bool, d_in) marks inputs with H_ii = 0: they never vary, so their weights
    are free removals; their rows and columns are zeroed and H_ii set to 1. Dampening
    adds λ·mean(diag H)·I with λ = ``damp`` a fraction and the mean taken over the
    diagonal of the given H (dead inputs count as 0 in it). A zero H becomes I."""
    if damp < 0:
        raise ConfigError(f"damp is a non-negative fraction of mean(diag H), got {damp}")
    check_hessian(H, H.shape[0])
    H = H.to(torch.float64).clone()
    H = (H + H.T) / 2
    diagonal = torch.diagonal(H)
    dead = diagonal <= 0
    mean_diagonal = diagonal.clamp_min(0).mean()
    H[dead, :] = 0.0
    H[:, dead] = 0.0
    torch.diagonal(H)[dead] = 1.0
    torch.diagonal(H).add_(damp * mean_diagonal)
    return H, dead


def robust_cholesky(H: Tensor) -> Tensor:
    """Lower Cholesky factor of a symmetric H (float64); when H is not numerically
    positive definite (collinear inputs without dampening), jitter of growing size
    (1e-10 … 1e-2 of mean diag) is added until the factorisation succeeds."""
    H = H.to(torch.float64)
    factor, info = torch.linalg.cholesky_ex(H)
    if int(info.max()) == 0:
        return factor
    scale = torch.diagonal(H, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-30)
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    for exponent in range(-10, -1):
        jitter = (10.0**exponent * scale)[..., None, None] * eye
        factor, info = torch.linalg.cholesky_ex(H + jitter)
        if int(info.max()) == 0:
            return factor
    raise NonFiniteError("the layer Hessian is not positive definite even with jitter 1e-2")


def damped_inverse(H_damped: Tensor) -> Tensor:
    """H⁻¹ (float64) of an already damped H, through its Cholesky factor."""
    return torch.cholesky_inverse(robust_cholesky(H_damped))


def upper_cholesky_of_inverse(H_damped: Tensor) -> Tensor:
    """SparseGPT's factor: upper-triangular U with H⁻¹ = UᵀU (float64).

    U_jj² = [(H_{F,F})⁻¹]_jj for F = {j, …, d−1}, and row j of U, scaled by 1/U_jj, is
    the OBS update direction for column j with the columns before j already fixed."""
    return robust_cholesky(damped_inverse(H_damped)).mT.contiguous()


def lambda_max(H: Tensor, iterations: int = 200) -> float:
    """Largest eigenvalue of a symmetric positive semi-definite H: exact (eigvalsh) up
    to d = 2048, else power iteration overestimated by 1% so that 1/λ stays a safe step."""
    H = H.to(torch.float64)
    if H.shape[0] <= 2048:
        return float(torch.linalg.eigvalsh(H)[-1])
    generator = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(H.shape[0], dtype=H.dtype, generator=generator).to(H.device)
    v /= v.norm()
    value = 0.0
    for _ in range(iterations):
        u = H @ v
        norm = float(u.norm())
        if norm == 0.0:
            return 0.0
        previous, value = value, float(v @ u)
        v = u / norm
        if abs(value - previous) <= 1e-6 * abs(value):
            break
    return max(value, float((H @ v).norm())) * 1.01
