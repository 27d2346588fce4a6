"""The one mask type of prunekit: parameter name → bool tensor (True = kept)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError


class Mask(dict[str, Tensor]):
    """Masks for prunable parameters, keyed by qualified parameter name.

    A value is a bool tensor of the parameter's shape: ``True`` keeps a weight,
    ``False`` removes it. Numeric tensors are accepted only when every value is 0 or 1.
    Sparsity is the fraction of the masked (prunable) weights
    that are removed, counted over whole tensors.
    """

    def __init__(self, entries: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] = ()):
        super().__init__()
        for name, value in dict(entries).items():
            self[name] = value

    def __setitem__(self, name: str, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise ConfigError(f"mask for {name!r} must be a tensor, got {type(value).__name__}")
        value = value.detach()
        if value.dtype != torch.bool and not bool(((value == 0) | (value == 1)).all()):
            odd = [round(float(v), 4) for v in value[(value != 0) & (value != 1)].flatten()[:3]]
            raise ConfigError(
                f"mask for {name!r} holds values other than 0/1 (e.g. {odd}): a mask is "
                "True/1 for a kept weight and False/0 for a removed one"
            )
        super().__setitem__(name, value.to(dtype=torch.bool))

    @classmethod
    def dense(cls, parameters: Mapping[str, Tensor]) -> Mask:
        """A mask that keeps every weight of the given parameters."""
        return cls({n: torch.ones_like(p, dtype=torch.bool) for n, p in parameters.items()})

    # counts -----------------------------------------------------------------
    @property
    def num_total(self) -> int:
        return sum(m.numel() for m in self.values())

    @property
    def num_kept(self) -> int:
        return sum(int(m.sum()) for m in self.values())

    @property
    def num_removed(self) -> int:
        return self.num_total - self.num_kept

    @property
    def sparsity(self) -> float:
        """Fraction of masked weights removed (0 for an empty mask)."""
        total = self.num_total
        return self.num_removed / total if total else 0.0

    # combination --------------------------------------------------------------
    def __and__(self, other: Mask) -> Mask:
        """Keep a weight only where both masks keep it (names must agree)."""
        if set(self) != set(other):
            raise ConfigError("cannot combine masks over different parameters")
        return Mask({n: self[n] & other[n] for n in self})

    def equal(self, other: Mask) -> bool:
        return set(self) == set(other) and all(torch.equal(self[n], other[n]) for n in self)

    def to(self, device: torch.device | str) -> Mask:
        return Mask({n: m.to(device) for n, m in self.items()})

    def flat(self) -> Tensor:
        """All entries concatenated in key order (True = kept)."""
        return torch.cat([m.reshape(-1) for m in self.values()])

    @classmethod
    def from_flat(cls, flat: Tensor, like: Mapping[str, Tensor]) -> Mask:
        """Inverse of :meth:`flat`: cut a flat bool tensor into tensors shaped like ``like``."""
        out, start = {}, 0
        for name, ref in like.items():
            out[name] = flat[start : start + ref.numel()].reshape(ref.shape)
            start += ref.numel()
        if start != flat.numel():
            raise ConfigError(f"flat mask has {flat.numel()} entries, expected {start}")
        return cls(out)

    # model interaction --------------------------------------------------------
    def check_compatible(self, model: nn.Module) -> None:
        """Raise a ConfigError unless every entry names a parameter of matching shape."""
        params = dict(model.named_parameters())
        for name, m in self.items():
            if name not in params:
                raise ConfigError(
                    f"mask entry {name!r} is not a parameter of the model "
                    f"(is this mask for another model?)"
                )
            if tuple(params[name].shape) != tuple(m.shape):
                raise ConfigError(
                    f"mask entry {name!r} has shape {tuple(m.shape)} but the parameter has "
                    f"shape {tuple(params[name].shape)}"
                )

    @torch.no_grad()
    def apply(self, model: nn.Module) -> nn.Module:
        """Zero the removed weights of ``model`` in place and return it."""
        self.check_compatible(model)
        for name, m in self.items():
            param = model.get_parameter(name)
            param.mul_(m.to(device=param.device, dtype=param.dtype))
        return model

    def holds_in(self, model: nn.Module) -> bool:
        """True when every removed weight of ``model`` is exactly zero."""
        for name, m in self.items():
            param = model.get_parameter(name).detach()
            if bool((param[~m.to(param.device)] != 0).any()):
                return False
        return True
