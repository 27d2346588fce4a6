"""Keeping removed weights exactly zero while an optimizer trains the model.

The enforcer works through optimizer hooks only: before each step it zeroes the
gradients of removed weights (so momentum, weight decay and Adam's moments never
see them), after each step it re-zeroes the removed weights (in case an optimizer
moves them through state left from before the mask). Nothing is added to the
module, so ``deepcopy``, ``state_dict`` keys and DistributedDataParallel are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.masks.mask import Mask


class MaskEnforcer:
    """Hold ``mask`` on ``model`` during training with one or more optimizers.

    Example::

        enforcer = MaskEnforcer(model, mask)      # zeroes removed weights now
        enforcer.attach(optimizer)                 # and after every optimizer.step()
    """

    def __init__(self, model: nn.Module, mask: Mask):
        mask.check_compatible(model)
        self.model = model
        self.mask = mask
        self._pairs: list[tuple[nn.Parameter, torch.Tensor]] = []
        for name, m in mask.items():
            param = model.get_parameter(name)
            self._pairs.append((param, m.to(param.device)))
        self._handles: list = []
        self.zero_weights()

    @torch.no_grad()
    def zero_weights(self) -> None:
        for param, m in self._pairs:
            param.masked_fill_(~m, 0.0)

    @torch.no_grad()
    def zero_gradients(self) -> None:
        for param, m in self._pairs:
            if param.grad is not None:
                param.grad.masked_fill_(~m, 0.0)

    @torch.no_grad()
    def zero_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero per-weight optimizer state (momentum, Adam moments) of removed weights."""
        for param, m in self._pairs:
            for value in optimizer.state.get(param, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    value.masked_fill_(~m, 0.0)

    def attach(self, optimizer: torch.optim.Optimizer) -> MaskEnforcer:
        self.zero_optimizer_state(optimizer)
        self._handles.append(optimizer.register_step_pre_hook(lambda *_: self.zero_gradients()))
        self._handles.append(optimizer.register_step_post_hook(lambda *_: self.zero_weights()))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
